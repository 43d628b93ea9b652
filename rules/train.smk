rule train_shard:
    input:
        split=rules.split_dataset.output.split,
        poison=rules.poison_training_set.output.poison,
        partition=rules.partition_training_set.output.partition,
    output:
        models="results/models/{dataset}/{attack}/{defense}/shard_{shard}.pt",
    params:
        subsets=get_shard_subsets,
        defense=get_defense,
        device=config["device"],
    threads: config["threads"]
    resources:
        gpu=1,
    conda:
        "../envs/robustcert.yaml"
    log:
        "results/logs/train_shard/{dataset}/{attack}/{defense}/shard_{shard}.log",
    benchmark:
        "results/benchmarks/train_shard/{dataset}/{attack}/{defense}/shard_{shard}.tsv"
    script:
        "../scripts/train_shard.py"
