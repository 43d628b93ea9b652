from robustcert.workflow import start_log
from robustcert.workflow.smoothing import plot_noisy_examples

start_log(snakemake.log[0])
plot_noisy_examples(
    split_path=snakemake.input.split,
    settings=snakemake.params.settings,
    seed=snakemake.params.seed,
    title=f"{snakemake.wildcards.dataset}: test images under Gaussian noise of σ (pixels in [0, 1])",
    outputs=[snakemake.output.png, snakemake.output.pdf],
)
