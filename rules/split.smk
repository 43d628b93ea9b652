# The fixed train/validation/test split of each dataset (robustcert.workflow.split).

from robustcert.workflow import split


rule split_dataset:
    output:
        split="<results>/data/{dataset}/split.npz",
    params:
        code=code_of("scripts/split_dataset.py"),
        dataset=lambda wildcards: split.dataset_params(config, wildcards),
        data_root=config["data_root"],
        seed=config["seed"],
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/split_dataset/{dataset}.log",
    benchmark:
        "<results>/benchmarks/split_dataset/{dataset}.tsv"
    script:
        "../scripts/split_dataset.py"
