# Randomized smoothing (Cohen, Rosenfeld, Kolter 2019; robustcert.workflow.smoothing): one base
# classifier per σ trained under that noise on the (poisoned) training set (Gaussian augmentation,
# MACER or SmoothAdv), or imported from a released checkpoint; CERTIFY and PREDICT on a subset of
# the test set, sharded across jobs and gathered; results rows per σ; a table and a plot per defense.

from robustcert.workflow import smoothing
from robustcert.workflow.common import one_of

SMOOTHING = smoothing.Plan(config)
RESULT_ROWS["smoothing"] = SMOOTHING.rows()
FINAL_OUTPUT += SMOOTHING.plots()
FINAL_OUTPUT += SMOOTHING.radius_plots()
FINAL_OUTPUT += SMOOTHING.noisy_examples()


rule train_smoothed:
    input:
        split=get_split,
        poison=rules.poison_training_set.output.poison,
    output:
        model=smoothing.MODEL,
    wildcard_constraints:
        defense=one_of(SMOOTHING.trained()),
    params:
        code=code_of("scripts/train_smoothed.py"),
        recipe=SMOOTHING.recipe,
        seed=get_seed,
        device=config["device"],
    threads: config["threads"]
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=480,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/train_smoothed/{dataset}/seed_{seed}/{attack}/{defense}/sigma_{sigma}.log",
    benchmark:
        "<results>/benchmarks/train_smoothed/{dataset}/seed_{seed}/{attack}/{defense}/sigma_{sigma}.tsv"
    script:
        "../scripts/train_smoothed.py"


rule import_released_model:
    input:
        checkpoint=SMOOTHING.released_checkpoint,
        split=get_split,
    output:
        model=smoothing.MODEL,
    wildcard_constraints:
        defense=one_of(SMOOTHING.released()),
    params:
        code=code_of("scripts/import_released_model.py"),
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/import_released_model/{dataset}/seed_{seed}/{attack}/{defense}/sigma_{sigma}.log",
    script:
        "../scripts/import_released_model.py"


rule certify_smoothed:
    input:
        model=rules.train_smoothed.output.model,
        split=get_split,
    output:
        tsv=smoothing.SHARD.replace("{algorithm}", "certify"),
    params:
        code=code_of("scripts/certify_smoothed.py"),
        settings=SMOOTHING.monte_carlo,
        sigma=get_sigma,
        seed=get_seed,
        device=config["device"],
    threads: config["threads"]
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=240,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/certify_smoothed/{dataset}/seed_{seed}/{attack}/{defense}/sigma_{sigma}/shard_{shard}.log",
    benchmark:
        "<results>/benchmarks/certify_smoothed/{dataset}/seed_{seed}/{attack}/{defense}/sigma_{sigma}/shard_{shard}.tsv"
    script:
        "../scripts/certify_smoothed.py"


rule predict_smoothed:
    input:
        model=rules.train_smoothed.output.model,
        split=get_split,
    output:
        tsv=smoothing.SHARD.replace("{algorithm}", "predict"),
    params:
        code=code_of("scripts/predict_smoothed.py"),
        settings=SMOOTHING.predict_settings,
        sigma=get_sigma,
        seed=get_seed,
        device=config["device"],
    threads: config["threads"]
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=120,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/predict_smoothed/{dataset}/seed_{seed}/{attack}/{defense}/sigma_{sigma}/shard_{shard}.log",
    benchmark:
        "<results>/benchmarks/predict_smoothed/{dataset}/seed_{seed}/{attack}/{defense}/sigma_{sigma}/shard_{shard}.tsv"
    script:
        "../scripts/predict_smoothed.py"


rule gather_smoothed:
    input:
        shards=SMOOTHING.shards,
    output:
        tsv=smoothing.GATHERED,
    params:
        code=code_of("scripts/gather_smoothed.py"),
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/gather_smoothed/{dataset}/seed_{seed}/{attack}/{defense}/sigma_{sigma}/{algorithm}.log",
    script:
        "../scripts/gather_smoothed.py"


rule summarize_smoothing:
    input:
        certify=smoothing.GATHERED.replace("{algorithm}", "certify"),
        predict=smoothing.GATHERED.replace("{algorithm}", "predict"),
    output:
        rows=smoothing.ROW,
    params:
        code=code_of("scripts/summarize_smoothing.py"),
        names=SMOOTHING.row_keys,
        params=SMOOTHING.row_params,
        radii=config["report"]["radii"],
        points=SMOOTHING.point_count,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/summarize_smoothing/{dataset}/seed_{seed}/{attack}/{defense}/sigma_{sigma}.log",
    benchmark:
        "<results>/benchmarks/summarize_smoothing/{dataset}/seed_{seed}/{attack}/{defense}/sigma_{sigma}.tsv"
    script:
        "../scripts/summarize_smoothing.py"


rule analyze_smoothing:
    input:
        certify=SMOOTHING.certificates,
    output:
        table=report(
            "<results>/tables/smoothing/{dataset}/seed_{seed}/{attack}/{defense}.tsv",
            caption="../report/smoothing_table.rst",
            category=report_category("smoothing"),
            subcategory="{dataset}",
            labels={"defense": "{defense}", "attack": "{attack}", "seed": "{seed}", "item": "table"},
        ),
        png=report(
            smoothing.PLOT.replace("{ext}", "png"),
            caption="../report/smoothing.rst",
            category=report_category("smoothing"),
            subcategory="{dataset}",
            labels={"defense": "{defense}", "attack": "{attack}", "seed": "{seed}", "item": "certified accuracy vs L2 radius"},
        ),
        pdf=smoothing.PLOT.replace("{ext}", "pdf"),
    params:
        code=code_of("scripts/analyze_smoothing.py"),
        sigmas=lambda wildcards: SMOOTHING.sigmas(wildcards.defense),
        radii=config["report"]["radii"],
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/analyze_smoothing/{dataset}/seed_{seed}/{attack}/{defense}.log",
    benchmark:
        "<results>/benchmarks/analyze_smoothing/{dataset}/seed_{seed}/{attack}/{defense}.tsv"
    script:
        "../scripts/analyze_smoothing.py"


rule plot_noisy_examples:
    input:
        split=rules.split_dataset.output.split,  # the pictures show the shared split
    output:
        png=report(
            smoothing.NOISY_EXAMPLES.replace("{ext}", "png"),
            caption="../report/noisy_examples.rst",
            category=report_category("smoothing"),
            subcategory="{dataset}",
            labels={"item": "test images under Gaussian noise"},
        ),
        pdf=smoothing.NOISY_EXAMPLES.replace("{ext}", "pdf"),
    params:
        code=code_of("scripts/plot_noisy_examples.py"),
        settings=SMOOTHING.noisy_example_settings,
        seed=config["seed"],
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/plot_noisy_examples/{dataset}.log",
    benchmark:
        "<results>/benchmarks/plot_noisy_examples/{dataset}.tsv"
    script:
        "../scripts/plot_noisy_examples.py"


rule plot_smoothing_radius:
    input:
        certificates=SMOOTHING.dataset_certificates,
        undefended=SMOOTHING.dataset_undefended,
    output:
        png=report(
            smoothing.RADIUS_PLOT.replace("{ext}", "png"),
            caption="../report/smoothing_radius.rst",
            category=report_category("smoothing"),
            subcategory="{dataset}",
            labels={"item": "certified accuracy vs radius, every attack"},
        ),
        pdf=smoothing.RADIUS_PLOT.replace("{ext}", "pdf"),
    params:
        code=code_of("scripts/plot_smoothing_radius.py"),
        curves=SMOOTHING.dataset_curves,
        intervals=config["report"]["intervals"],
        colors=SMOOTHING.dataset_colors,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/plot_smoothing_radius/{dataset}.log",
    benchmark:
        "<results>/benchmarks/plot_smoothing_radius/{dataset}.tsv"
    script:
        "../scripts/plot_smoothing_radius.py"
