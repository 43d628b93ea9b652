from robustcert.smoothing_model_steps import train_smoothed
from robustcert.steps import start_log

start_log(snakemake.log[0])
train_smoothed(
    split_path=snakemake.input.split,
    poison_path=snakemake.input.poison,
    output=snakemake.output.model,
    defense=snakemake.params.defense,
    sigma=snakemake.params.sigma,
    device=snakemake.params.device,
    threads=snakemake.threads,
)
