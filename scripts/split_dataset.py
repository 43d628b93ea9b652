from robustcert.steps import split_dataset, start_log

start_log(snakemake.log[0])
split_dataset(
    output=snakemake.output.split,
    spec=snakemake.params.dataset,
    data_root=snakemake.params.data_root,
    seed=snakemake.params.seed,
)
