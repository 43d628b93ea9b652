from robustcert.workflow import start_log
from robustcert.workflow.patch import summarize_patch

start_log(snakemake.log[0])
summarize_patch(
    certify_path=snakemake.input.certify,
    poison_path=snakemake.input.poison,
    attack_paths=snakemake.input.attack,
    output=snakemake.output.rows,
    keys=snakemake.params.names,
    params=snakemake.params.params,
    rule_params=snakemake.params.rules,
    patch_sizes=snakemake.params.patch_sizes,
    checks=snakemake.params.checks,
)
