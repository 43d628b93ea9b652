from robustcert.workflow import start_log
from robustcert.workflow.patch import gather_patch

start_log(snakemake.log[0])
gather_patch(shard_paths=snakemake.input.shards, output=snakemake.output.tsv, checks=snakemake.params.checks)
