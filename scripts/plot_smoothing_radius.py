from robustcert.workflow import start_log
from robustcert.workflow.smoothing import plot_radius

start_log(snakemake.log[0])
plot_radius(
    tsv_paths=snakemake.input.certificates,
    curves=snakemake.params.curves,
    intervals=snakemake.params.intervals,
    undefended_rows=snakemake.input.undefended,
    colors=snakemake.params.colors,
    title=f"{snakemake.wildcards.dataset}: randomized smoothing, certified accuracy against the L2 radius",
    outputs=[snakemake.output.png, snakemake.output.pdf],
)
