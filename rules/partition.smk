rule partition_training_set:
    input:
        split=rules.split_dataset.output.split,
        poison=rules.poison_training_set.output.poison,
    output:
        partition="results/partition/{dataset}/{attack}/{defense}.npz",
    params:
        defense=get_defense,
    conda:
        "../envs/robustcert.yaml"
    log:
        "results/logs/partition_training_set/{dataset}/{attack}/{defense}.log",
    benchmark:
        "results/benchmarks/partition_training_set/{dataset}/{attack}/{defense}.tsv"
    script:
        "../scripts/partition_training_set.py"
