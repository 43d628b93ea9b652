from robustcert.workflow import start_log
from robustcert.workflow.bilevel import poison_bilevel_radius

start_log(snakemake.log[0])
poison_bilevel_radius(
    split_path=snakemake.input.split,
    output=snakemake.output.poison,
    objective_output=snakemake.output.objective,
    plot_prefix=snakemake.output.png.removesuffix(".png"),
    spec=snakemake.params.attack,
    seed=snakemake.params.seed,
    device=snakemake.params.device,
    threads=snakemake.threads,
)
