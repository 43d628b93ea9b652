from robustcert.steps import plot_certificates, start_log

start_log(snakemake.log[0])
plot_certificates(
    tsv_paths=snakemake.input.certificates,
    labels=snakemake.params.labels,
    title=f"{snakemake.wildcards.dataset}: certified accuracy under poisoning",
    outputs=[snakemake.output.png, snakemake.output.pdf],
)
