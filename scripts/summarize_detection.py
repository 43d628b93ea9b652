from robustcert.workflow import start_log
from robustcert.workflow.detection import summarize_detection

start_log(snakemake.log[0])
summarize_detection(
    scores_path=snakemake.input.scores,
    adversarial_path=snakemake.input.adversarial,
    clusters_path=snakemake.input.clusters,
    output=snakemake.output.rows,
    keys=snakemake.params.names,
    params=snakemake.params.params,
    threshold=snakemake.params.threshold,
)
