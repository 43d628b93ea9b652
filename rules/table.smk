rule summarize_certificates:
    input:
        scores=rules.score_ensemble.output.scores,
        poison=rules.poison_training_set.output.poison,
        clean=rules.certify_ensemble.output.clean,
        triggered=rules.certify_ensemble.output.triggered,
    output:
        row="results/tables/rows/{dataset}/{attack}/{defense}/{variant}.tsv",
    params:
        describe=describe_experiment,
        budgets=config["report"]["budgets"],
    conda:
        "../envs/robustcert.yaml"
    log:
        "results/logs/summarize_certificates/{dataset}/{attack}/{defense}/{variant}.log",
    benchmark:
        "results/benchmarks/summarize_certificates/{dataset}/{attack}/{defense}/{variant}.tsv"
    script:
        "../scripts/summarize_certificates.py"


rule tabulate_results:
    input:
        rows=get_result_rows,
    output:
        table=report(
            "results/tables/all.tsv",
            caption="../report/all_table.rst",
            category="tables",
        ),
    conda:
        "../envs/robustcert.yaml"
    log:
        "results/logs/tabulate_results.log",
    benchmark:
        "results/benchmarks/tabulate_results.tsv"
    script:
        "../scripts/tabulate_results.py"
