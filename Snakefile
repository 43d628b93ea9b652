# robustcert: certified robustness against data poisoning, backdoors and patches, as one workflow.
# split → poison → (ensemble: partition → train per shard → score) or (smoothing: train per σ) →
# certify → results rows → results/tables/all.tsv, a wide table per method, and plots.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


# the landing text of `snakemake --report` (what the run did, how to read it)
report: "report/workflow.rst"


# The include order is the registration order: common.smk defines FINAL_OUTPUT and RESULT_ROWS,
# each method file adds its plots and rows, table.smk (last) adds the tables.
include: "rules/common.smk"
include: "rules/split.smk"
include: "rules/poison.smk"
include: "rules/ensemble.smk"
include: "rules/aggregation.smk"
include: "rules/smoothing.smk"
include: "rules/bilevel.smk"  # after smoothing: its victims are smoothing's models
include: "rules/undefended.smk"
include: "rules/detection.smk"
include: "rules/patch.smk"
include: "rules/patchcleanser.smk"  # after patch: its curves join the patch figure
include: "rules/rab.smk"
include: "rules/table.smk"
include: "rules/claims.smk"  # after table: it reads all.tsv


rule all:
    default_target: True
    input:
        get_final_output(),
