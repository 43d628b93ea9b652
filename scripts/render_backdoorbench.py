from robustcert.workflow import start_log
from robustcert.workflow.table import render_backdoorbench

start_log(snakemake.log[0])
render_backdoorbench(table_path=snakemake.input.table, output=snakemake.output.html)
