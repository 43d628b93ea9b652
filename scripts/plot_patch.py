from robustcert.workflow import start_log
from robustcert.workflow.patch import plot_patch

start_log(snakemake.log[0])
plot_patch(
    certify_paths=snakemake.input.certificates,
    curves=snakemake.params.curves,
    intervals=snakemake.params.intervals,
    title=f"{snakemake.wildcards.dataset} · {snakemake.wildcards.defense}: certified accuracy against patches",
    outputs=[snakemake.output.png, snakemake.output.pdf],
)
