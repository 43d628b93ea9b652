from robustcert.workflow import start_log
from robustcert.workflow.undefended import summarize_undefended

start_log(snakemake.log[0])
summarize_undefended(
    scores_path=snakemake.input.scores,
    output=snakemake.output.rows,
    keys=snakemake.params.names,
    params=snakemake.params.params,
)
