from robustcert.workflow import start_log
from robustcert.workflow.poison import summarize_attack

start_log(snakemake.log[0])
summarize_attack(split_path=snakemake.input.split, poison_path=snakemake.input.poison, output=snakemake.output.rows,
                 keys=snakemake.params.names, params=snakemake.params.budget)
