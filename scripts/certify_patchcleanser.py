from robustcert.workflow import start_log
from robustcert.workflow.patchcleanser import certify_patchcleanser

start_log(snakemake.log[0])
certify_patchcleanser(
    model_path=snakemake.input.model,
    split_path=snakemake.input.split,
    poison_path=snakemake.input.poison,
    output=snakemake.output.tsv,
    settings=snakemake.params.settings,
    shard=int(snakemake.wildcards.shard),
    device=snakemake.params.device,
    threads=snakemake.threads,
)
