# robustcert: certified robustness against data poisoning, as one workflow.
# split → poison → partition → train (per shard) → score → certify → plots and results/tables/all.tsv

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/split.smk"
include: "rules/poison.smk"
include: "rules/bilevel.smk"
include: "rules/partition.smk"
include: "rules/train.smk"
include: "rules/score.smk"
include: "rules/certify.smk"
include: "rules/smoothing.smk"
include: "rules/plot.smk"
include: "rules/table.smk"


rule all:
    default_target: True
    input:
        get_final_output(),
