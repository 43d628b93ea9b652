from robustcert.steps import gather_shards, start_log

start_log(snakemake.log[0])
gather_shards(shard_paths=snakemake.input.shards, output=snakemake.output.tsv)
