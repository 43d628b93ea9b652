# No defense (robustcert.workflow.undefended): one model on the whole (poisoned) training set, trained
# and scored by the ensemble rules; its clean accuracy and attack success rate.

from robustcert.workflow import undefended

UNDEFENDED = undefended.Plan(config)
ENSEMBLE.register(undefended.METHOD, undefended.layout)
RESULT_ROWS[undefended.METHOD] = UNDEFENDED.rows()


rule summarize_undefended:
    input:
        scores=rules.score_ensemble.output.scores,
    output:
        rows=undefended.ROW,
    params:
        code=code_of("scripts/summarize_undefended.py"),
        names=UNDEFENDED.row_keys,
        params=UNDEFENDED.row_params,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/summarize_undefended/{dataset}/seed_{seed}/{attack}/{defense}.log",
    benchmark:
        "<results>/benchmarks/summarize_undefended/{dataset}/seed_{seed}/{attack}/{defense}.tsv"
    script:
        "../scripts/summarize_undefended.py"
