from robustcert.workflow import start_log
from robustcert.workflow.claims import tabulate_claims

start_log(snakemake.log[0])
tabulate_claims(table_path=snakemake.input.table, claims=snakemake.params.claims, output=snakemake.output.table,
                html_output=snakemake.output.html)
