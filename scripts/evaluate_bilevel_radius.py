from robustcert.bilevel_steps import evaluate_bilevel_radius
from robustcert.steps import start_log

start_log(snakemake.log[0])
evaluate_bilevel_radius(
    clean_model=snakemake.input.clean_model,
    poisoned_model=snakemake.input.poisoned_model,
    split_path=snakemake.input.split,
    output=snakemake.output.row,
    describe=snakemake.params.describe,
    spec=snakemake.params.attack,
    defense=snakemake.params.defense,
    sigma=snakemake.params.sigma,
    radii=snakemake.params.radii,
    device=snakemake.params.device,
    threads=snakemake.threads,
)
