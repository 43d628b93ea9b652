from robustcert.steps import certify_ensemble, start_log

start_log(snakemake.log[0])
certify_ensemble(
    scores_path=snakemake.input.scores,
    partition_path=snakemake.input.partition,
    variant=snakemake.wildcards.variant,
    clean_output=snakemake.output.clean,
    triggered_output=snakemake.output.triggered,
)
