# The train/validation/test split of each dataset (robustcert.workflow.split): one, drawn with the
# config's seed and shared by every replicate, or with `replicate_split` one per replicate, drawn with
# its seed. Every later step reads the split of its replicate (get_split, rules/common.smk).

from robustcert.workflow import split


rule split_dataset:
    output:
        split=split.SPLIT,
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


# the same step, drawn with the replicate's seed (the other params are split_dataset's: `with:` merges them)
use rule split_dataset as split_dataset_of_replicate with:
    output:
        split=split.REPLICATE_SPLIT,
    params:
        seed=get_seed,
    log:
        "<results>/logs/split_dataset/{dataset}/seed_{seed}.log",
    benchmark:
        "<results>/benchmarks/split_dataset/{dataset}/seed_{seed}.tsv"
