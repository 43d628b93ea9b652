from robustcert.workflow import start_log
from robustcert.workflow.patch import train_patch

start_log(snakemake.log[0])
train_patch(
    split_path=snakemake.input.split,
    poison_path=snakemake.input.poison,
    output=snakemake.output.model,
    recipe=snakemake.params.recipe,
    seed=snakemake.params.seed,
    device=snakemake.params.device,
    threads=snakemake.threads,
)
