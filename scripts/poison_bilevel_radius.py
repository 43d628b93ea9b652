from robustcert.bilevel_steps import poison_bilevel_radius
from robustcert.steps import start_log

start_log(snakemake.log[0])
poison_bilevel_radius(
    split_path=snakemake.input.split,
    output=snakemake.output.poison,
    objective_output=snakemake.output.objective,
    plot_prefix=snakemake.output.png.removesuffix(".png"),
    spec=snakemake.params.attack,
    device=snakemake.params.device,
    threads=snakemake.threads,
)
