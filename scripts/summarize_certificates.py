from robustcert.workflow import start_log
from robustcert.workflow.aggregation import summarize_certificates

start_log(snakemake.log[0])
summarize_certificates(
    scores_path=snakemake.input.scores,
    poison_path=snakemake.input.poison,
    clean_path=snakemake.input.clean,
    triggered_path=snakemake.input.triggered,
    output=snakemake.output.rows,
    keys=snakemake.params.names,
    params=snakemake.params.params,
    budgets=snakemake.params.budgets,
)
