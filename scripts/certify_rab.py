from robustcert.workflow import start_log
from robustcert.workflow.rab import certify_rab

start_log(snakemake.log[0])
certify_rab(
    scores_path=snakemake.input.scores,
    certificate=snakemake.wildcards.certificate,
    **snakemake.params.certify,
    clean_output=snakemake.output.clean,
    triggered_output=snakemake.output.triggered,
)
