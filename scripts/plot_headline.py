from robustcert.workflow import start_log
from robustcert.workflow.table import plot_headline

start_log(snakemake.log[0])
plot_headline(table_path=snakemake.input.table, outputs=[snakemake.output.png, snakemake.output.pdf])
