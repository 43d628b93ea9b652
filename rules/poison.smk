# Poisons that a generator makes from the split alone (robustcert.poison.GENERATORS). Attack types
# that need a model write the same output path from their own rules file; the {attack} constraint
# tells them apart.

from robustcert.workflow import poison

POISON_ATTACKS = poison.attack_constraint(config)


rule poison_training_set:
    input:
        split=rules.split_dataset.output.split,
    output:
        poison="results/poison/{dataset}/{attack}.npz",
    wildcard_constraints:
        attack=POISON_ATTACKS,
    params:
        attack=lambda wildcards: poison.attack_params(config, wildcards),
        seed=config["seed"],
    conda:
        "../envs/robustcert.yaml"
    log:
        "results/logs/poison_training_set/{dataset}/{attack}.log",
    benchmark:
        "results/benchmarks/poison_training_set/{dataset}/{attack}.tsv"
    script:
        "../scripts/poison_training_set.py"
