from robustcert.workflow import start_log
from robustcert.workflow.ensemble import score_ensemble

start_log(snakemake.log[0])
score_ensemble(
    split_path=snakemake.input.split,
    poison_path=snakemake.input.poison,
    partition_path=snakemake.input.partition,
    shard_paths=snakemake.input.models,
    output=snakemake.output.scores,
    device=snakemake.params.device,
    test_noise=snakemake.params.test_noise,
    purpose=snakemake.params.purpose,
    threads=snakemake.threads,
)
