rule plot_poison_budget:
    input:
        certificates=get_dataset_certificates,
    output:
        png=report(
            "results/plots/{dataset}/poison_budget.png",
            caption="../report/poison_budget.rst",
            category="{dataset}",
            subcategory="partition aggregation (DPA, FA)",
            labels={"item": "certified accuracy vs poisoning budget"},
        ),
        pdf="results/plots/{dataset}/poison_budget.pdf",
    params:
        labels=get_dataset_labels,
    conda:
        "../envs/robustcert.yaml"
    log:
        "results/logs/plot_poison_budget/{dataset}.log",
    benchmark:
        "results/benchmarks/plot_poison_budget/{dataset}.tsv"
    script:
        "../scripts/plot_poison_budget.py"
