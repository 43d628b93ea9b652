from robustcert.workflow import start_log
from robustcert.workflow.bilevel import tabulate_transfer

start_log(snakemake.log[0])
tabulate_transfer(row_paths=snakemake.input.rows, output=snakemake.output.table)
