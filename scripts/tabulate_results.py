from robustcert.workflow import start_log
from robustcert.workflow.table import tabulate_results

start_log(snakemake.log[0])
tabulate_results(row_paths=snakemake.input.rows, output=snakemake.output.table)
