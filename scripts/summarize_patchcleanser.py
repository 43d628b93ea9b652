from robustcert.workflow import start_log
from robustcert.workflow.patchcleanser import summarize_patchcleanser

start_log(snakemake.log[0])
summarize_patchcleanser(
    certify_path=snakemake.input.certify,
    poison_path=snakemake.input.poison,
    attack_paths=snakemake.input.attack,
    output=snakemake.output.rows,
    keys=snakemake.params.names,
    params=snakemake.params.params,
    patch_sizes=snakemake.params.patch_sizes,
)
