from robustcert.steps import partition_training_set, start_log

start_log(snakemake.log[0])
partition_training_set(
    split_path=snakemake.input.split,
    poison_path=snakemake.input.poison,
    output=snakemake.output.partition,
    defense=snakemake.params.defense,
)
