from robustcert.workflow import start_log
from robustcert.workflow.patchcleanser import train_patchcleanser

start_log(snakemake.log[0])
train_patchcleanser(
    split_path=snakemake.input.split,
    poison_path=snakemake.input.poison,
    output=snakemake.output.model,
    recipe=snakemake.params.recipe,
    seed=snakemake.params.seed,
    device=snakemake.params.device,
    threads=snakemake.threads,
)
