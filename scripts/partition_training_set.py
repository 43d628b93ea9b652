from robustcert.workflow import start_log
from robustcert.workflow.ensemble import partition_training_set

start_log(snakemake.log[0])
partition_training_set(
    split_path=snakemake.input.split,
    poison_path=snakemake.input.poison,
    output=snakemake.output.partition,
    **snakemake.params.layout,
    seed=snakemake.params.seed,
)
