from robustcert.workflow import start_log
from robustcert.workflow.detection import detect_backdoor

start_log(snakemake.log[0])
detect_backdoor(
    split_path=snakemake.input.split,
    model_path=snakemake.input.model,
    clusters_output=snakemake.output.clusters,
    embedding_output=snakemake.output.embedding,
    gallery_output=snakemake.output.gallery,
    probe=snakemake.params.probe,
    seed=snakemake.params.seed,
    device=snakemake.params.device,
    threads=snakemake.threads,
)
