from robustcert.workflow import start_log
from robustcert.workflow.smoothing import import_released

start_log(snakemake.log[0])
import_released(
    checkpoint_path=snakemake.input.checkpoint,
    split_path=snakemake.input.split,
    output=snakemake.output.model,
)
