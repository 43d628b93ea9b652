from robustcert.workflow import start_log
from robustcert.workflow.detection import evaluate_robust_model

start_log(snakemake.log[0])
evaluate_robust_model(
    split_path=snakemake.input.split,
    model_path=snakemake.input.model,
    output=snakemake.output.adversarial,
    adversary=snakemake.params.adversary,
    seed=snakemake.params.seed,
    device=snakemake.params.device,
    threads=snakemake.threads,
)
