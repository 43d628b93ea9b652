from robustcert.workflow import start_log
from robustcert.workflow.rab import plot_l2_budget

start_log(snakemake.log[0])
plot_l2_budget(
    tsv_paths=snakemake.input.certificates,
    curves=snakemake.params.curves,
    intervals=snakemake.params.intervals,
    undefended_rows=snakemake.input.undefended,
    colors=snakemake.params.colors,
    title=f"{snakemake.wildcards.dataset}: RAB certified accuracy against the trigger's L2 norm",
    outputs=[snakemake.output.png, snakemake.output.pdf],
)
