from robustcert.smoothing_steps import summarize_smoothing
from robustcert.steps import start_log

start_log(snakemake.log[0])
summarize_smoothing(
    certify_path=snakemake.input.certify,
    predict_path=snakemake.input.predict,
    output=snakemake.output.row,
    describe=snakemake.params.describe,
    defense=snakemake.params.defense,
    n_test=snakemake.params.n_test,
    radii=snakemake.params.radii,
)
