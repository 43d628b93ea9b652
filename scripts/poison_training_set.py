from robustcert.workflow import start_log
from robustcert.workflow.poison import poison_training_set

start_log(snakemake.log[0])
poison_training_set(
    split_path=snakemake.input.split,
    output=snakemake.output.poison,
    spec=snakemake.params.attack,
    seed=snakemake.params.seed,
)
