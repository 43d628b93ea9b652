from robustcert.workflow import start_log
from robustcert.workflow.detection import plot_detection

start_log(snakemake.log[0])
plot_detection(
    embedding_path=snakemake.input.embedding,
    gallery_path=snakemake.input.gallery,
    clusters_path=snakemake.input.clusters,
    scores_path=snakemake.input.scores,
    title=snakemake.params.title,
    cluster_outputs=[snakemake.output.clusters_png, snakemake.output.clusters_pdf],
    gallery_outputs=[snakemake.output.gallery_png, snakemake.output.gallery_pdf],
)
