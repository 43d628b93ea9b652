from robustcert.workflow import start_log
from robustcert.workflow.split import split_dataset

start_log(snakemake.log[0])
split_dataset(
    output=snakemake.output.split,
    spec=snakemake.params.dataset,
    data_root=snakemake.params.data_root,
    seed=snakemake.params.seed,
)
