# Randomized smoothing (Cohen, Rosenfeld, Kolter 2019): one base classifier per σ, trained with
# Gaussian augmentation on the (poisoned) training set; CERTIFY and PREDICT on a subset of the
# test set, sharded across jobs and gathered; a row of all.tsv per σ; a table and a plot per defense.


rule train_smoothed:
    input:
        split=rules.split_dataset.output.split,
        poison=rules.poison_training_set.output.poison,
    output:
        model="results/smoothing/{dataset}/{attack}/{defense}/sigma_{sigma}/model.pt",
    params:
        defense=get_defense,
        sigma=get_sigma,
        device=config["device"],
    threads: config["threads"]
    resources:
        gpu=1,
    conda:
        "../envs/robustcert.yaml"
    log:
        "results/logs/train_smoothed/{dataset}/{attack}/{defense}/sigma_{sigma}.log",
    benchmark:
        "results/benchmarks/train_smoothed/{dataset}/{attack}/{defense}/sigma_{sigma}.tsv"
    script:
        "../scripts/train_smoothed.py"


rule certify_smoothed:
    input:
        model=rules.train_smoothed.output.model,
        split=rules.split_dataset.output.split,
    output:
        tsv="results/smoothing/{dataset}/{attack}/{defense}/sigma_{sigma}/certify/shard_{shard}.tsv",
    params:
        defense=get_defense,
        sigma=get_sigma,
        device=config["device"],
    threads: config["threads"]
    resources:
        gpu=1,
    conda:
        "../envs/robustcert.yaml"
    log:
        "results/logs/certify_smoothed/{dataset}/{attack}/{defense}/sigma_{sigma}/shard_{shard}.log",
    benchmark:
        "results/benchmarks/certify_smoothed/{dataset}/{attack}/{defense}/sigma_{sigma}/shard_{shard}.tsv"
    script:
        "../scripts/certify_smoothed.py"


rule predict_smoothed:
    input:
        model=rules.train_smoothed.output.model,
        split=rules.split_dataset.output.split,
    output:
        tsv="results/smoothing/{dataset}/{attack}/{defense}/sigma_{sigma}/predict/shard_{shard}.tsv",
    params:
        defense=get_defense,
        sigma=get_sigma,
        device=config["device"],
    threads: config["threads"]
    resources:
        gpu=1,
    conda:
        "../envs/robustcert.yaml"
    log:
        "results/logs/predict_smoothed/{dataset}/{attack}/{defense}/sigma_{sigma}/shard_{shard}.log",
    benchmark:
        "results/benchmarks/predict_smoothed/{dataset}/{attack}/{defense}/sigma_{sigma}/shard_{shard}.tsv"
    script:
        "../scripts/predict_smoothed.py"


rule gather_smoothed:
    input:
        shards=get_smoothing_shards,
    output:
        tsv="results/smoothing/{dataset}/{attack}/{defense}/sigma_{sigma}/{algorithm}.tsv",
    conda:
        "../envs/robustcert.yaml"
    log:
        "results/logs/gather_smoothed/{dataset}/{attack}/{defense}/sigma_{sigma}/{algorithm}.log",
    script:
        "../scripts/gather_smoothed.py"


rule summarize_smoothing:
    input:
        certify="results/smoothing/{dataset}/{attack}/{defense}/sigma_{sigma}/certify.tsv",
        predict="results/smoothing/{dataset}/{attack}/{defense}/sigma_{sigma}/predict.tsv",
    output:
        row="results/tables/rows/{dataset}/{attack}/{defense}/smoothing_sigma_{sigma}.tsv",
    params:
        describe=describe_smoothing,
        defense=get_defense,
        n_test=get_test_size,
        radii=config["report"]["radii"],
    conda:
        "../envs/robustcert.yaml"
    log:
        "results/logs/summarize_smoothing/{dataset}/{attack}/{defense}/sigma_{sigma}.log",
    benchmark:
        "results/benchmarks/summarize_smoothing/{dataset}/{attack}/{defense}/sigma_{sigma}.tsv"
    script:
        "../scripts/summarize_smoothing.py"


rule analyze_smoothing:
    input:
        certify=get_smoothing_certificates,
    output:
        table=report(
            "results/tables/smoothing/{dataset}/{attack}/{defense}.tsv",
            caption="../report/smoothing_table.rst",
            category="{dataset}",
            subcategory="{defense}",
            labels={"attack": "{attack}", "item": "table"},
        ),
        png=report(
            "results/plots/{dataset}/smoothing/{attack}/{defense}.png",
            caption="../report/smoothing.rst",
            category="{dataset}",
            subcategory="{defense}",
            labels={"attack": "{attack}", "item": "certified accuracy vs L2 radius"},
        ),
        pdf="results/plots/{dataset}/smoothing/{attack}/{defense}.pdf",
    params:
        sigmas=get_sigmas,
        radii=config["report"]["radii"],
    conda:
        "../envs/robustcert.yaml"
    log:
        "results/logs/analyze_smoothing/{dataset}/{attack}/{defense}.log",
    benchmark:
        "results/benchmarks/analyze_smoothing/{dataset}/{attack}/{defense}.tsv"
    script:
        "../scripts/analyze_smoothing.py"
