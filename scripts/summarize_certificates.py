from robustcert.steps import start_log, summarize_certificates

start_log(snakemake.log[0])
summarize_certificates(
    scores_path=snakemake.input.scores,
    poison_path=snakemake.input.poison,
    clean_path=snakemake.input.clean,
    triggered_path=snakemake.input.triggered,
    output=snakemake.output.row,
    describe=snakemake.params.describe,
    budgets=snakemake.params.budgets,
)
