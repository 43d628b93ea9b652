from robustcert.workflow import start_log
from robustcert.workflow.table import render_method_table

start_log(snakemake.log[0])
render_method_table(row_paths=snakemake.input.rows, method=snakemake.wildcards.method, output=snakemake.output.html)
