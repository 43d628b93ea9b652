from robustcert.workflow import start_log
from robustcert.workflow.detection import tabulate_detection

start_log(snakemake.log[0])
tabulate_detection(
    row_paths=snakemake.input.rows,
    output=snakemake.output.table,
    confusion_output=snakemake.output.confusion,
)
