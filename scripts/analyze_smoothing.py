from robustcert.smoothing_steps import analyze_smoothing
from robustcert.steps import start_log

start_log(snakemake.log[0])
analyze_smoothing(
    certify_paths=snakemake.input.certify,
    sigmas=snakemake.params.sigmas,
    radii=snakemake.params.radii,
    title=f"{snakemake.wildcards.dataset} · {snakemake.wildcards.attack} · {snakemake.wildcards.defense}",
    table_output=snakemake.output.table,
    plot_prefix=snakemake.output.png.removesuffix(".png"),
)
