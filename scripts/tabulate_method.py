from robustcert.workflow import start_log
from robustcert.workflow.table import tabulate_method

start_log(snakemake.log[0])
tabulate_method(row_paths=snakemake.input.rows, method=snakemake.wildcards.method,
                wide_output=snakemake.output.table, compact_output=snakemake.output.compact,
                html_output=snakemake.output.html)
