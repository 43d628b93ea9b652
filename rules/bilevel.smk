# Clean-label bilevel poisoning against randomized smoothing (Mehra et al. 2021): an attack of type
# bilevel_radius makes its poisons here, in the backbone's poison format, so that they flow into
# every defense; and each smoothing defense evaluates them as the reference does.


ruleorder: poison_bilevel_radius > poison_training_set


rule poison_bilevel_radius:
    input:
        split=rules.split_dataset.output.split,
    output:
        poison="results/poison/{dataset}/{attack}.npz",
        objective="results/poison/{dataset}/{attack}.objective.tsv",
        png=report(
            "results/plots/{dataset}/bilevel_{attack}_objective.png",
            caption="../report/bilevel_objective.rst",
            category="{dataset}",
            subcategory="bilevel poisoning",
            labels={"attack": "{attack}", "item": "surrogate objective per outer step"},
        ),
        pdf="results/plots/{dataset}/bilevel_{attack}_objective.pdf",
    wildcard_constraints:
        attack=BILEVEL_ATTACKS,
    params:
        attack=get_attack,
        device=config["device"],
    threads: config["threads"]
    resources:
        gpu=1,
    conda:
        "../envs/robustcert.yaml"
    log:
        "results/logs/poison_bilevel_radius/{dataset}/{attack}.log",
    benchmark:
        "results/benchmarks/poison_bilevel_radius/{dataset}/{attack}.tsv"
    script:
        "../scripts/poison_bilevel_radius.py"


rule evaluate_bilevel_radius:
    input:
        clean_model=get_clean_victim,
        poisoned_model="results/smoothing/{dataset}/{attack}/{defense}/sigma_{sigma}/model.pt",
        split=rules.split_dataset.output.split,
    output:
        row="results/tables/rows/{dataset}/{attack}/{defense}/bilevel_sigma_{sigma}.tsv",
    wildcard_constraints:
        attack=BILEVEL_ATTACKS,
    params:
        describe=describe_bilevel,
        attack=get_attack,
        defense=get_defense,
        sigma=get_sigma,
        radii=config["report"]["radii"],
        device=config["device"],
    threads: config["threads"]
    resources:
        gpu=1,
    conda:
        "../envs/robustcert.yaml"
    log:
        "results/logs/evaluate_bilevel_radius/{dataset}/{attack}/{defense}/sigma_{sigma}.log",
    benchmark:
        "results/benchmarks/evaluate_bilevel_radius/{dataset}/{attack}/{defense}/sigma_{sigma}.tsv"
    script:
        "../scripts/evaluate_bilevel_radius.py"
