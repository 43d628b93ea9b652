# RAB, randomized smoothing of the training set (robustcert.workflow.rab; Weber et al.): N models
# trained by the ensemble rules, each on the whole (poisoned) training set plus its own fixed noise
# draw, scored on test inputs plus its own fixed test-time noise; here the certificate of the mean
# softmax score against backdoors of bounded L2 norm, its rows and the plot per dataset.

from robustcert.workflow import rab

RAB = rab.Plan(config)
ENSEMBLE.register(rab.METHOD, rab.layout, rab.recipe, rab.scoring_sigma)
RESULT_ROWS[rab.METHOD] = RAB.rows()
FINAL_OUTPUT += RAB.plots()


rule certify_rab:
    input:
        scores=rules.score_ensemble.output.scores,
    output:
        clean=rab.CERTIFY,
        triggered=rab.CERTIFY.replace(".tsv", ".triggered.tsv"),
    wildcard_constraints:
        certificate=RAB.certificate_constraint(),
    params:
        code=code_of("scripts/certify_rab.py"),
        certify=RAB.certify_params,
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/certify_rab/{dataset}/seed_{seed}/{attack}/{defense}/{certificate}.log",
    benchmark:
        "<results>/benchmarks/certify_rab/{dataset}/seed_{seed}/{attack}/{defense}/{certificate}.tsv"
    script:
        "../scripts/certify_rab.py"


rule summarize_rab:
    input:
        split=get_split,
        poison=rules.poison_training_set.output.poison,
        scores=rules.score_ensemble.output.scores,
        clean=rules.certify_rab.output.clean,
        triggered=rules.certify_rab.output.triggered,
    output:
        rows=rab.ROW,
    wildcard_constraints:
        certificate=RAB.certificate_constraint(),
    params:
        code=code_of("scripts/summarize_rab.py"),
        names=RAB.row_keys,
        params=RAB.row_params,
        radii=RAB.radii,
        certify=RAB.certify_params,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/summarize_rab/{dataset}/seed_{seed}/{attack}/{defense}/{certificate}.log",
    benchmark:
        "<results>/benchmarks/summarize_rab/{dataset}/seed_{seed}/{attack}/{defense}/{certificate}.tsv"
    script:
        "../scripts/summarize_rab.py"


rule plot_rab:
    input:
        certificates=RAB.dataset_certificates,
        undefended=RAB.dataset_undefended,
    output:
        png=report(
            rab.PLOT.replace("{ext}", "png"),
            caption="../report/rab_l2_budget.rst",
            category=report_category("rab"),
            subcategory="{dataset}",
            labels={"item": "certified accuracy vs trigger L2 norm"},
        ),
        pdf=rab.PLOT.replace("{ext}", "pdf"),
    params:
        code=code_of("scripts/plot_rab.py"),
        curves=RAB.dataset_curves,
        intervals=config["report"]["intervals"],
        colors=RAB.dataset_colors,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/plot_rab/{dataset}.log",
    benchmark:
        "<results>/benchmarks/plot_rab/{dataset}.tsv"
    script:
        "../scripts/plot_rab.py"
