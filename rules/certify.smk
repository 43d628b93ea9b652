rule certify_ensemble:
    input:
        scores=rules.score_ensemble.output.scores,
        partition=rules.partition_training_set.output.partition,
    output:
        clean="results/certify/{dataset}/{attack}/{defense}/{variant}.tsv",
        triggered="results/certify/{dataset}/{attack}/{defense}/{variant}.triggered.tsv",
    conda:
        "../envs/robustcert.yaml"
    log:
        "results/logs/certify_ensemble/{dataset}/{attack}/{defense}/{variant}.log",
    benchmark:
        "results/benchmarks/certify_ensemble/{dataset}/{attack}/{defense}/{variant}.tsv"
    script:
        "../scripts/certify_ensemble.py"
