rule split_dataset:
    output:
        split="results/data/{dataset}/split.npz",
    params:
        dataset=get_dataset,
        data_root=config["data_root"],
        seed=config["seed"],
    conda:
        "../envs/robustcert.yaml"
    log:
        "results/logs/split_dataset/{dataset}.log",
    benchmark:
        "results/benchmarks/split_dataset/{dataset}.tsv"
    script:
        "../scripts/split_dataset.py"
