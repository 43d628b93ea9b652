from robustcert.workflow import start_log
from robustcert.workflow.aggregation import plot_poison_budget

start_log(snakemake.log[0])
plot_poison_budget(
    tsv_paths=snakemake.input.certificates,
    labels=snakemake.params.labels,
    title=f"{snakemake.wildcards.dataset}: certified accuracy under poisoning",
    outputs=[snakemake.output.png, snakemake.output.pdf],
)
