from robustcert.smoothing_model_steps import predict_smoothed
from robustcert.steps import start_log

start_log(snakemake.log[0])
predict_smoothed(
    model_path=snakemake.input.model,
    split_path=snakemake.input.split,
    output=snakemake.output.tsv,
    defense=snakemake.params.defense,
    sigma=snakemake.params.sigma,
    shard=int(snakemake.wildcards.shard),
    device=snakemake.params.device,
    threads=snakemake.threads,
)
