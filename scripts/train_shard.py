from robustcert.workflow import start_log
from robustcert.workflow.ensemble import train_shard

start_log(snakemake.log[0])
train_shard(
    split_path=snakemake.input.split,
    poison_path=snakemake.input.poison,
    partition_path=snakemake.input.partition,
    output=snakemake.output.models,
    subsets=snakemake.params.subsets,
    recipe=snakemake.params.recipe,
    seed=snakemake.params.seed,
    device=snakemake.params.device,
    threads=snakemake.threads,
)
