rule score_ensemble:
    input:
        split=rules.split_dataset.output.split,
        poison=rules.poison_training_set.output.poison,
        partition=rules.partition_training_set.output.partition,
        models=get_shard_checkpoints,
    output:
        scores="results/scores/{dataset}/{attack}/{defense}.npz",
    params:
        device=config["device"],
    threads: config["threads"]
    resources:
        gpu=1,
    conda:
        "../envs/robustcert.yaml"
    log:
        "results/logs/score_ensemble/{dataset}/{attack}/{defense}.log",
    benchmark:
        "results/benchmarks/score_ensemble/{dataset}/{attack}/{defense}.tsv"
    script:
        "../scripts/score_ensemble.py"
