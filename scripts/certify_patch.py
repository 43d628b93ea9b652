from robustcert.workflow import start_log
from robustcert.workflow.patch import certify_patch

start_log(snakemake.log[0])
certify_patch(
    model_path=snakemake.input.model,
    split_path=snakemake.input.split,
    poison_path=snakemake.input.poison,
    output=snakemake.output.tsv,
    settings=snakemake.params.settings,
    seed=snakemake.params.seed,
    shard=int(snakemake.wildcards.shard),
    device=snakemake.params.device,
    threads=snakemake.threads,
)
