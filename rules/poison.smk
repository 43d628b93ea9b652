# Poisons that a generator makes from the split alone (robustcert.poison.GENERATORS). Attack types
# that need a model write the same output path from their own rules file; the {attack} constraint
# tells them apart. Every poison's budget (counts, fractions, norms) goes to results/tables/attacks.tsv.

from robustcert.workflow import poison

poison.check_attacks(config)
POISON_ATTACKS = poison.attack_constraint(config)
RESULT_ROWS[poison.BUDGET_TABLE] = poison.budget_rows(config)


rule poison_training_set:
    input:
        split=get_split,
    output:
        poison="<results>/poison/{dataset}/seed_{seed}/{attack}.npz",
    wildcard_constraints:
        attack=POISON_ATTACKS,
    params:
        code=code_of("scripts/poison_training_set.py"),
        attack=lambda wildcards: poison.attack_params(config, wildcards),
        seed=get_seed,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/poison_training_set/{dataset}/seed_{seed}/{attack}.log",
    benchmark:
        "<results>/benchmarks/poison_training_set/{dataset}/seed_{seed}/{attack}.tsv"
    script:
        "../scripts/poison_training_set.py"


rule summarize_attack:
    input:
        split=get_split,
        poison=rules.poison_training_set.output.poison,
    output:
        rows=poison.BUDGET_ROW,
    params:
        code=code_of("scripts/summarize_attack.py"),
        names=lambda wildcards: poison.budget_keys(config, wildcards),
        budget=lambda wildcards: poison.budget_params(config, wildcards),
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/summarize_attack/{dataset}/seed_{seed}/{attack}.log",
    benchmark:
        "<results>/benchmarks/summarize_attack/{dataset}/seed_{seed}/{attack}.tsv"
    script:
        "../scripts/summarize_attack.py"
