from robustcert.workflow import start_log
from robustcert.workflow.smoothing import certify_smoothed

start_log(snakemake.log[0])
certify_smoothed(
    model_path=snakemake.input.model,
    split_path=snakemake.input.split,
    output=snakemake.output.tsv,
    settings=snakemake.params.settings,
    sigma=snakemake.params.sigma,
    seed=snakemake.params.seed,
    shard=int(snakemake.wildcards.shard),
    device=snakemake.params.device,
    threads=snakemake.threads,
)
