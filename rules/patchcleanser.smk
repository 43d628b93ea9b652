# PatchCleanser against adversarial patches (Xiang et al. 2022; robustcert.workflow.patchcleanser): one
# ordinary classifier per training (plain or masked) on the (poisoned) training set; every pair of masks of
# each patch size's mask set on a subset of the test set (and its triggered copies), sharded across jobs
# and gathered; results rows per training on axis patch_size; its curves join the patch figure of the
# dataset (rules/patch.smk's plot_patch, through PATCH_FIGURE).

from robustcert.workflow import patchcleanser

PATCHCLEANSER = patchcleanser.Plan(config)
PATCH_FIGURE.append(PATCHCLEANSER)
RESULT_ROWS[patchcleanser.METHOD] = PATCHCLEANSER.rows()
FINAL_OUTPUT += [plot for plot in PATCHCLEANSER.plots() if plot not in FINAL_OUTPUT]


wildcard_constraints:
    variant=patchcleanser.VARIANT_LABEL,


rule train_patchcleanser:
    input:
        split=get_split,
        poison=rules.poison_training_set.output.poison,
    output:
        model=patchcleanser.MODEL,
    params:
        code=code_of("scripts/train_patchcleanser.py"),
        recipe=PATCHCLEANSER.recipe,
        seed=get_seed,
        device=config["device"],
    threads: config["threads"]
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=480,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/train_patchcleanser/{dataset}/seed_{seed}/{attack}/{defense}/{variant}.log",
    benchmark:
        "<results>/benchmarks/train_patchcleanser/{dataset}/seed_{seed}/{attack}/{defense}/{variant}.tsv"
    script:
        "../scripts/train_patchcleanser.py"


rule certify_patchcleanser:
    input:
        model=rules.train_patchcleanser.output.model,
        split=get_split,
        poison=rules.poison_training_set.output.poison,
    output:
        tsv=patchcleanser.SHARD,
    params:
        code=code_of("scripts/certify_patchcleanser.py"),
        settings=PATCHCLEANSER.settings,
        device=config["device"],
    threads: config["threads"]
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=240,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/certify_patchcleanser/{dataset}/seed_{seed}/{attack}/{defense}/{variant}/shard_{shard}.log",
    benchmark:
        "<results>/benchmarks/certify_patchcleanser/{dataset}/seed_{seed}/{attack}/{defense}/{variant}/shard_{shard}.tsv"
    script:
        "../scripts/certify_patchcleanser.py"


rule gather_patchcleanser:
    input:
        shards=PATCHCLEANSER.shards,
    output:
        tsv=patchcleanser.GATHERED,
    params:
        code=code_of("scripts/gather_patchcleanser.py"),
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/gather_patchcleanser/{dataset}/seed_{seed}/{attack}/{defense}/{variant}.log",
    script:
        "../scripts/gather_patchcleanser.py"


rule attack_patchcleanser:
    input:
        model=rules.train_patchcleanser.output.model,
        split=get_split,
        undefended=PATCHCLEANSER.undefended_model,
    output:
        tsv=patchcleanser.ATTACK,
    params:
        code=code_of("scripts/attack_patchcleanser.py"),
        settings=PATCHCLEANSER.attack_settings,
        seed=get_seed,
        device=config["device"],
    threads: config["threads"]
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=480,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/attack_patchcleanser/{dataset}/seed_{seed}/{attack}/{defense}/{variant}.log",
    benchmark:
        "<results>/benchmarks/attack_patchcleanser/{dataset}/seed_{seed}/{attack}/{defense}/{variant}.tsv"
    script:
        "../scripts/attack_patchcleanser.py"


rule summarize_patchcleanser:
    input:
        certify=rules.gather_patchcleanser.output.tsv,
        poison=rules.poison_training_set.output.poison,
        attack=PATCHCLEANSER.attack_results,
    output:
        rows=patchcleanser.ROW,
    params:
        code=code_of("scripts/summarize_patchcleanser.py"),
        names=PATCHCLEANSER.row_keys,
        params=PATCHCLEANSER.row_params,
        patch_sizes=PATCHCLEANSER.patch_sizes,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/summarize_patchcleanser/{dataset}/seed_{seed}/{attack}/{defense}/{variant}.log",
    benchmark:
        "<results>/benchmarks/summarize_patchcleanser/{dataset}/seed_{seed}/{attack}/{defense}/{variant}.tsv"
    script:
        "../scripts/summarize_patchcleanser.py"
