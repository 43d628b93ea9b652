# Clean-label bilevel poisoning against randomized smoothing (Mehra et al. 2021;
# robustcert.workflow.bilevel): an attack of type bilevel_radius makes its poisons here, in the
# poison stage's format, so that they flow into every defense; and each smoothing defense evaluates
# them as the reference does, the evaluations gathered into the transfer table (attack victim ×
# evaluation victim → target-class ACR drop). Needs rules/smoothing.smk (the victims).

from robustcert.workflow import bilevel

BILEVEL = bilevel.Plan(config)
RESULT_ROWS["bilevel"] = BILEVEL.rows()
FINAL_OUTPUT += BILEVEL.plots() + BILEVEL.transfer()


rule poison_bilevel_radius:
    input:
        split=get_split,
    output:
        poison="<results>/poison/{dataset}/seed_{seed}/{attack}.npz",
        objective="<results>/poison/{dataset}/seed_{seed}/{attack}.objective.tsv",
        png=report(
            bilevel.OBJECTIVE_PLOT.replace("{ext}", "png"),
            caption="../report/bilevel_objective.rst",
            category=report_category("bilevel"),
            subcategory="{dataset}",
            labels={"attack": "{attack}", "seed": "{seed}", "item": "surrogate objective per outer step"},
        ),
        pdf=bilevel.OBJECTIVE_PLOT.replace("{ext}", "pdf"),
    wildcard_constraints:
        attack=BILEVEL.attack_constraint(),
    params:
        code=code_of("scripts/poison_bilevel_radius.py"),
        attack=BILEVEL.attack_params,
        seed=get_seed,
        device=config["device"],
    threads: config["threads"]
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=720,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/poison_bilevel_radius/{dataset}/seed_{seed}/{attack}.log",
    benchmark:
        "<results>/benchmarks/poison_bilevel_radius/{dataset}/seed_{seed}/{attack}.tsv"
    script:
        "../scripts/poison_bilevel_radius.py"


rule evaluate_bilevel_radius:
    input:
        clean_model=BILEVEL.clean_victim,
        poisoned_model=rules.train_smoothed.output.model,
        split=get_split,
    output:
        rows=bilevel.ROW,
    wildcard_constraints:
        attack=BILEVEL.attack_constraint(),
    params:
        code=code_of("scripts/evaluate_bilevel_radius.py"),
        names=BILEVEL.row_keys,
        params=BILEVEL.row_params,
        settings=BILEVEL.evaluation_params,
        sigma=get_sigma,
        radii=config["report"]["radii"],
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
        "<results>/logs/evaluate_bilevel_radius/{dataset}/seed_{seed}/{attack}/{defense}/sigma_{sigma}.log",
    benchmark:
        "<results>/benchmarks/evaluate_bilevel_radius/{dataset}/seed_{seed}/{attack}/{defense}/sigma_{sigma}.tsv"
    script:
        "../scripts/evaluate_bilevel_radius.py"


rule tabulate_bilevel_transfer:
    input:
        rows=BILEVEL.rows(),
    output:
        table=report(
            bilevel.TRANSFER,
            caption="../report/bilevel_transfer.rst",
            category=report_category("bilevel"),
            subcategory="tables",
            labels={"table": "transfer of the attack"},
        ),
    params:
        code=code_of("scripts/tabulate_bilevel_transfer.py"),
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/tabulate_bilevel_transfer.log",
    benchmark:
        "<results>/benchmarks/tabulate_bilevel_transfer.tsv"
    script:
        "../scripts/tabulate_bilevel_transfer.py"
