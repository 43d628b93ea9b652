from robustcert.model_steps import train_shard
from robustcert.steps import start_log

start_log(snakemake.log[0])
train_shard(
    split_path=snakemake.input.split,
    poison_path=snakemake.input.poison,
    partition_path=snakemake.input.partition,
    output=snakemake.output.models,
    subsets=snakemake.params.subsets,
    defense=snakemake.params.defense,
    device=snakemake.params.device,
    threads=snakemake.threads,
)
