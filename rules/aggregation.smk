# Partition aggregation, methods dpa and fa (robustcert.workflow.aggregation): the ensemble of the
# pixel-sum hash, every certificate a defense lists from its one score matrix, a results row per
# certificate, and the poisoning-budget plot of each dataset.

from robustcert.workflow import aggregation

AGGREGATION = aggregation.Plan(config)
for aggregation_method in aggregation.METHODS:
    ENSEMBLE.register(aggregation_method, aggregation.layout)
    RESULT_ROWS[aggregation_method] = AGGREGATION.rows(aggregation_method)
FINAL_OUTPUT += AGGREGATION.plots()


rule certify_ensemble:
    input:
        scores=rules.score_ensemble.output.scores,
        partition=rules.partition_training_set.output.partition,
    output:
        clean=aggregation.CERTIFY,
        triggered=aggregation.CERTIFY.replace(".tsv", ".triggered.tsv"),
    wildcard_constraints:
        certificate=AGGREGATION.certificate_constraint(),
    params:
        code=code_of("scripts/certify_ensemble.py"),
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/certify_ensemble/{dataset}/seed_{seed}/{attack}/{defense}/{certificate}.log",
    benchmark:
        "<results>/benchmarks/certify_ensemble/{dataset}/seed_{seed}/{attack}/{defense}/{certificate}.tsv"
    script:
        "../scripts/certify_ensemble.py"


rule summarize_certificates:
    input:
        scores=rules.score_ensemble.output.scores,
        poison=rules.poison_training_set.output.poison,
        clean=rules.certify_ensemble.output.clean,
        triggered=rules.certify_ensemble.output.triggered,
    output:
        rows=aggregation.ROW,
    wildcard_constraints:
        certificate=AGGREGATION.certificate_constraint(),
    params:
        code=code_of("scripts/summarize_certificates.py"),
        names=AGGREGATION.row_keys,
        params=AGGREGATION.row_params,
        budgets=config["report"]["budgets"],
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/summarize_certificates/{dataset}/seed_{seed}/{attack}/{defense}/{certificate}.log",
    benchmark:
        "<results>/benchmarks/summarize_certificates/{dataset}/seed_{seed}/{attack}/{defense}/{certificate}.tsv"
    script:
        "../scripts/summarize_certificates.py"


rule plot_poison_budget:
    input:
        certificates=AGGREGATION.dataset_certificates,
        undefended=AGGREGATION.dataset_undefended,
        budgets=AGGREGATION.dataset_budgets,
    output:
        png=report(
            aggregation.PLOT.replace("{ext}", "png"),
            caption="../report/poison_budget.rst",
            category=report_category("dpa"),
            subcategory="{dataset}",
            labels={"item": "certified accuracy vs poisoning budget"},
        ),
        pdf=aggregation.PLOT.replace("{ext}", "pdf"),
    params:
        code=code_of("scripts/plot_poison_budget.py"),
        curves=AGGREGATION.dataset_curves,
        intervals=config["report"]["intervals"],
        colors=AGGREGATION.dataset_colors,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/plot_poison_budget/{dataset}.log",
    benchmark:
        "<results>/benchmarks/plot_poison_budget/{dataset}.tsv"
    script:
        "../scripts/plot_poison_budget.py"
