from robustcert.workflow import start_log
from robustcert.workflow.smoothing import analyze_smoothing

start_log(snakemake.log[0])
analyze_smoothing(
    certify_paths=snakemake.input.certify,
    sigmas=snakemake.params.sigmas,
    radii=snakemake.params.radii,
    title=f"{snakemake.wildcards.dataset} · {snakemake.wildcards.attack} · {snakemake.wildcards.defense}",
    table_output=snakemake.output.table,
    plot_prefix=snakemake.output.png.removesuffix(".png"),
)
