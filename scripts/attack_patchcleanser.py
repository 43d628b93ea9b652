from robustcert.workflow import start_log
from robustcert.workflow.patchcleanser import attack_patchcleanser

start_log(snakemake.log[0])
attack_patchcleanser(
    model_path=snakemake.input.model,
    split_path=snakemake.input.split,
    undefended_paths=snakemake.input.undefended,
    output=snakemake.output.tsv,
    settings=snakemake.params.settings,
    seed=snakemake.params.seed,
    device=snakemake.params.device,
    threads=snakemake.threads,
)
