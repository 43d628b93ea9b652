from robustcert.workflow import start_log
from robustcert.workflow.patchcleanser import gather_patchcleanser

start_log(snakemake.log[0])
gather_patchcleanser(shard_paths=snakemake.input.shards, output=snakemake.output.tsv)
