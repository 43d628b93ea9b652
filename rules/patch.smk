# (De)randomized smoothing against adversarial patches (Levine & Feizi 2020; robustcert.workflow.patch):
# one base classifier per ablation trained on ablated inputs of the (poisoned) training set;
# certification over every position on a subset of the test set (and its triggered copies), sharded
# across jobs and gathered; results rows per ablation and voting rule. The patch figure of a dataset
# (plot_patch) draws every plan in PATCH_FIGURE: patch smoothing's, and each patch defense that adds its own
# (rules/patchcleanser.smk), with the undefended model under the patch attack.

from robustcert.workflow import patch

PATCH = patch.Plan(config)
PATCH_FIGURE = [PATCH]
RESULT_ROWS[patch.METHOD] = PATCH.rows()
FINAL_OUTPUT += PATCH.plots()


wildcard_constraints:
    ablation=patch.ABLATION_LABEL,


rule train_patch:
    input:
        split=get_split,
        poison=rules.poison_training_set.output.poison,
    output:
        model=patch.MODEL,
    params:
        code=code_of("scripts/train_patch.py"),
        recipe=PATCH.recipe,
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
        "<results>/logs/train_patch/{dataset}/seed_{seed}/{attack}/{defense}/{ablation}.log",
    benchmark:
        "<results>/benchmarks/train_patch/{dataset}/seed_{seed}/{attack}/{defense}/{ablation}.tsv"
    script:
        "../scripts/train_patch.py"


rule certify_patch:
    input:
        model=rules.train_patch.output.model,
        split=get_split,
        poison=rules.poison_training_set.output.poison,
    output:
        tsv=patch.SHARD,
    params:
        code=code_of("scripts/certify_patch.py"),
        settings=PATCH.settings,
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
        "<results>/logs/certify_patch/{dataset}/seed_{seed}/{attack}/{defense}/{ablation}/shard_{shard}.log",
    benchmark:
        "<results>/benchmarks/certify_patch/{dataset}/seed_{seed}/{attack}/{defense}/{ablation}/shard_{shard}.tsv"
    script:
        "../scripts/certify_patch.py"


rule gather_patch:
    input:
        shards=PATCH.shards,
    output:
        tsv=patch.GATHERED,
    params:
        code=code_of("scripts/gather_patch.py"),
        checks=PATCH.checks,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/gather_patch/{dataset}/seed_{seed}/{attack}/{defense}/{ablation}.log",
    script:
        "../scripts/gather_patch.py"


rule attack_patch:
    input:
        model=rules.train_patch.output.model,
        split=get_split,
        undefended=PATCH.undefended_model,
    output:
        tsv=patch.ATTACK,
    params:
        code=code_of("scripts/attack_patch.py"),
        settings=PATCH.attack_settings,
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
        "<results>/logs/attack_patch/{dataset}/seed_{seed}/{attack}/{defense}/{ablation}.log",
    benchmark:
        "<results>/benchmarks/attack_patch/{dataset}/seed_{seed}/{attack}/{defense}/{ablation}.tsv"
    script:
        "../scripts/attack_patch.py"


rule summarize_patch:
    input:
        certify=rules.gather_patch.output.tsv,
        poison=rules.poison_training_set.output.poison,
        attack=PATCH.attack_results,
    output:
        rows=patch.ROW,
    params:
        code=code_of("scripts/summarize_patch.py"),
        names=PATCH.row_keys,
        params=PATCH.row_params,
        rules=PATCH.rule_params,
        patch_sizes=PATCH.patch_sizes,
        checks=PATCH.checks,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/summarize_patch/{dataset}/seed_{seed}/{attack}/{defense}/{ablation}.log",
    benchmark:
        "<results>/benchmarks/summarize_patch/{dataset}/seed_{seed}/{attack}/{defense}/{ablation}.tsv"
    script:
        "../scripts/summarize_patch.py"


rule plot_patch:
    input:
        tables=lambda wildcards: [path for _, path in patch.figure_parts(PATCH_FIGURE, wildcards)],
    output:
        png=report(
            patch.PLOT.replace("{ext}", "png"),
            caption="../report/patch.rst",
            category=report_category("patch"),
            subcategory="{dataset}",
            labels={"item": "accuracy vs patch size"},
        ),
        pdf=patch.PLOT.replace("{ext}", "pdf"),
    params:
        code=code_of("scripts/plot_patch.py"),
        curves=lambda wildcards: [spec for spec, _ in patch.figure_parts(PATCH_FIGURE, wildcards)],
        intervals=config["report"]["intervals"],
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/plot_patch/{dataset}.log",
    benchmark:
        "<results>/benchmarks/plot_patch/{dataset}.tsv"
    script:
        "../scripts/plot_patch.py"
