from robustcert.workflow import start_log
from robustcert.workflow.rab import summarize_rab

start_log(snakemake.log[0])
summarize_rab(
    split_path=snakemake.input.split,
    poison_path=snakemake.input.poison,
    scores_path=snakemake.input.scores,
    clean_path=snakemake.input.clean,
    triggered_path=snakemake.input.triggered,
    output=snakemake.output.rows,
    keys=snakemake.params.names,
    params=snakemake.params.params,
    radii=snakemake.params.radii,
    certificate=snakemake.wildcards.certificate,
    certify=snakemake.params.certify,
)
