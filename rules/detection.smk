# Backdoor detection in robust models (robustcert.workflow.detection; Soremekun et al.): the one
# model of a detection defense is trained by the ensemble rules with PGD adversarial training; here
# its adversarial accuracy, the translation of validation images into every label with the
# clustering of their features, the figures, its results rows, and the verdicts over all models
# (per model, and against the truth).

from robustcert.workflow import detection

DETECTION = detection.Plan(config)
ENSEMBLE.register(detection.METHOD, detection.layout, detection.recipe)
RESULT_ROWS[detection.METHOD] = DETECTION.rows()
FINAL_OUTPUT += DETECTION.plots()


rule evaluate_robust_model:
    input:
        split=get_split,
        model=DETECTION.model,
    output:
        adversarial=detection.ADVERSARIAL,
    params:
        code=code_of("scripts/evaluate_robust_model.py"),
        adversary=DETECTION.adversary_params,
        seed=get_seed,
        device=config["device"],
    threads: config["threads"]
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=60,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/evaluate_robust_model/{dataset}/seed_{seed}/{attack}/{defense}.log",
    benchmark:
        "<results>/benchmarks/evaluate_robust_model/{dataset}/seed_{seed}/{attack}/{defense}.tsv"
    script:
        "../scripts/evaluate_robust_model.py"


rule detect_backdoor:
    input:
        split=get_split,
        model=DETECTION.model,
    output:
        clusters=detection.CLUSTERS,
        embedding=detection.EMBEDDING,
        gallery=detection.GALLERY,
    params:
        code=code_of("scripts/detect_backdoor.py"),
        probe=DETECTION.probe_params,
        seed=get_seed,
        device=config["device"],
    threads: config["threads"]
    resources:
        gpu=1,
        mem_mb=32000,
        runtime=240,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/detect_backdoor/{dataset}/seed_{seed}/{attack}/{defense}.log",
    benchmark:
        "<results>/benchmarks/detect_backdoor/{dataset}/seed_{seed}/{attack}/{defense}.tsv"
    script:
        "../scripts/detect_backdoor.py"


rule plot_detection:
    input:
        embedding=rules.detect_backdoor.output.embedding,
        gallery=rules.detect_backdoor.output.gallery,
        clusters=rules.detect_backdoor.output.clusters,
        scores=rules.score_ensemble.output.scores,
    output:
        clusters_png=report(
            detection.CLUSTER_PLOT.replace("{ext}", "png"),
            caption="../report/detection_clusters.rst",
            category=report_category("detection"),
            subcategory="{dataset}",
            labels={"attack": "{attack}", "defense": "{defense}", "seed": "{seed}", "item": "clusters per label"},
        ),
        clusters_pdf=detection.CLUSTER_PLOT.replace("{ext}", "pdf"),
        gallery_png=report(
            detection.GALLERY_PLOT.replace("{ext}", "png"),
            caption="../report/detection_gallery.rst",
            category=report_category("detection"),
            subcategory="{dataset}",
            labels={"attack": "{attack}", "defense": "{defense}", "seed": "{seed}", "item": "translated images"},
        ),
        gallery_pdf=detection.GALLERY_PLOT.replace("{ext}", "pdf"),
    params:
        code=code_of("scripts/plot_detection.py"),
        title=DETECTION.title,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/plot_detection/{dataset}/seed_{seed}/{attack}/{defense}.log",
    benchmark:
        "<results>/benchmarks/plot_detection/{dataset}/seed_{seed}/{attack}/{defense}.tsv"
    script:
        "../scripts/plot_detection.py"


rule summarize_detection:
    input:
        scores=rules.score_ensemble.output.scores,
        adversarial=rules.evaluate_robust_model.output.adversarial,
        clusters=rules.detect_backdoor.output.clusters,
    output:
        rows=detection.ROW,
    params:
        code=code_of("scripts/summarize_detection.py"),
        names=DETECTION.row_keys,
        params=DETECTION.row_params,
        threshold=DETECTION.threshold,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/summarize_detection/{dataset}/seed_{seed}/{attack}/{defense}.log",
    benchmark:
        "<results>/benchmarks/summarize_detection/{dataset}/seed_{seed}/{attack}/{defense}.tsv"
    script:
        "../scripts/summarize_detection.py"


rule tabulate_detection:
    input:
        rows=DETECTION.rows(),
    output:
        table=report(
            detection.VERDICTS,
            caption="../report/detection_verdicts.rst",
            category=report_category("detection"),
            subcategory="tables",
            labels={"table": "verdicts"},
        ),
        confusion=report(
            detection.CONFUSION,
            caption="../report/detection_confusion.rst",
            category=report_category("detection"),
            subcategory="tables",
            labels={"table": "confusion"},
        ),
    params:
        code=code_of("scripts/tabulate_detection.py"),
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/tabulate_detection.log",
    benchmark:
        "<results>/benchmarks/tabulate_detection.tsv"
    script:
        "../scripts/tabulate_detection.py"
