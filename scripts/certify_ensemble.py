from robustcert.workflow import start_log
from robustcert.workflow.aggregation import certify_ensemble

start_log(snakemake.log[0])
certify_ensemble(
    scores_path=snakemake.input.scores,
    partition_path=snakemake.input.partition,
    certificate=snakemake.wildcards.certificate,
    clean_output=snakemake.output.clean,
    triggered_output=snakemake.output.triggered,
)
