from robustcert.workflow import start_log
from robustcert.workflow.smoothing import gather_shards

start_log(snakemake.log[0])
gather_shards(shard_paths=snakemake.input.shards, output=snakemake.output.tsv, algorithm=snakemake.wildcards.algorithm)
