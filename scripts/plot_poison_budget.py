from robustcert.workflow import start_log
from robustcert.workflow.aggregation import plot_poison_budget

start_log(snakemake.log[0])
plot_poison_budget(
    tsv_paths=snakemake.input.certificates,
    curves=snakemake.params.curves,
    intervals=snakemake.params.intervals,
    undefended_rows=snakemake.input.undefended,
    budget_rows=snakemake.input.budgets,
    colors=snakemake.params.colors,
    title=f"{snakemake.wildcards.dataset}: certified accuracy under poisoning",
    outputs=[snakemake.output.png, snakemake.output.pdf],
)
