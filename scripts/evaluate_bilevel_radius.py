from robustcert.workflow import start_log
from robustcert.workflow.bilevel import evaluate_bilevel_radius

start_log(snakemake.log[0])
evaluate_bilevel_radius(
    clean_model=snakemake.input.clean_model,
    poisoned_model=snakemake.input.poisoned_model,
    split_path=snakemake.input.split,
    output=snakemake.output.rows,
    keys=snakemake.params.names,
    params=snakemake.params.params,
    settings=snakemake.params.settings,
    sigma=snakemake.params.sigma,
    radii=snakemake.params.radii,
    seed=snakemake.params.seed,
    device=snakemake.params.device,
    threads=snakemake.threads,
)
