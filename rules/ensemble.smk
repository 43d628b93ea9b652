# Ensembles of base models (robustcert.workflow.ensemble): partition the poisoned training set, train
# the models one shard at a time (gpu=1 jobs), score them on the clean and triggered test sets. A
# method that trains an ensemble registers its layout: ENSEMBLE.register("<method>", <layout function>),
# optionally its recipe and its test-time noise.

from robustcert.workflow import ensemble

ENSEMBLE = ensemble.Plan(config)


rule partition_training_set:
    input:
        split=get_split,
        poison=rules.poison_training_set.output.poison,
    output:
        partition="<results>/partition/{dataset}/seed_{seed}/{attack}/{defense}.npz",
    params:
        code=code_of("scripts/partition_training_set.py"),
        layout=ENSEMBLE.partition_params,
        seed=get_seed,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/partition_training_set/{dataset}/seed_{seed}/{attack}/{defense}.log",
    benchmark:
        "<results>/benchmarks/partition_training_set/{dataset}/seed_{seed}/{attack}/{defense}.tsv"
    script:
        "../scripts/partition_training_set.py"


rule train_shard:
    input:
        split=get_split,
        poison=rules.poison_training_set.output.poison,
        partition=rules.partition_training_set.output.partition,
    output:
        models=ensemble.SHARD,
    params:
        code=code_of("scripts/train_shard.py"),
        subsets=ENSEMBLE.shard_subsets,
        recipe=ENSEMBLE.recipe,
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
        "<results>/logs/train_shard/{dataset}/seed_{seed}/{attack}/{defense}/shard_{shard}.log",
    benchmark:
        "<results>/benchmarks/train_shard/{dataset}/seed_{seed}/{attack}/{defense}/shard_{shard}.tsv"
    script:
        "../scripts/train_shard.py"


rule score_ensemble:
    input:
        split=get_split,
        poison=rules.poison_training_set.output.poison,
        partition=rules.partition_training_set.output.partition,
        models=ENSEMBLE.shard_checkpoints,
    output:
        scores="<results>/scores/{dataset}/seed_{seed}/{attack}/{defense}.npz",
    params:
        code=code_of("scripts/score_ensemble.py"),
        test_noise=ENSEMBLE.test_noise,
        purpose=ENSEMBLE.purpose,
        device=config["device"],
    threads: config["threads"]
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=60,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/score_ensemble/{dataset}/seed_{seed}/{attack}/{defense}.log",
    benchmark:
        "<results>/benchmarks/score_ensemble/{dataset}/seed_{seed}/{attack}/{defense}.tsv"
    script:
        "../scripts/score_ensemble.py"
