from robustcert.workflow import start_log
from robustcert.workflow.patch import plot_patch

start_log(snakemake.log[0])
plot_patch(
    paths=snakemake.input.tables,
    curves=snakemake.params.curves,
    intervals=snakemake.params.intervals,
    title=f"{snakemake.wildcards.dataset}: accuracy against patches, every patch defense",
    outputs=[snakemake.output.png, snakemake.output.pdf],
)
