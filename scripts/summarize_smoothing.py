from robustcert.workflow import start_log
from robustcert.workflow.smoothing import summarize_smoothing

start_log(snakemake.log[0])
summarize_smoothing(
    certify_path=snakemake.input.certify,
    predict_path=snakemake.input.predict,
    output=snakemake.output.rows,
    keys=snakemake.params.names,
    params=snakemake.params.params,
    radii=snakemake.params.radii,
    points=snakemake.params.points,
)
