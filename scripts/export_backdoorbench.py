from robustcert.workflow import start_log
from robustcert.workflow.table import export_backdoorbench

start_log(snakemake.log[0])
export_backdoorbench(table_path=snakemake.input.table, output=snakemake.output.summary)
