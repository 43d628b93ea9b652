rule poison_training_set:
    input:
        split=rules.split_dataset.output.split,
    output:
        poison="results/poison/{dataset}/{attack}.npz",
    params:
        attack=get_attack,
        seed=config["seed"],
    conda:
        "../envs/robustcert.yaml"
    log:
        "results/logs/poison_training_set/{dataset}/{attack}.log",
    benchmark:
        "results/benchmarks/poison_training_set/{dataset}/{attack}.tsv"
    script:
        "../scripts/poison_training_set.py"
