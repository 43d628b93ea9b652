# The papers' claims beside our numbers (robustcert.workflow.claims, robustcert.claims): the config's
# `claims` checked against all.tsv, one row each in <results>/tables/claims.tsv, a section of the
# report. Included after table.smk (it reads all.tsv); nothing is made for a config without claims.

from robustcert.workflow import claims

claims.check_claims(config)
FINAL_OUTPUT += claims.outputs(config)


rule tabulate_claims:
    input:
        table=rules.tabulate_results.output.table,
    output:
        table=report(
            claims.CLAIMS,
            caption="../report/claims.rst",
            category="claims",
            subcategory="the papers' claims",
            labels={"item": "claims.tsv (full precision)"},
        ),
        html=report(
            claims.CLAIMS_HTML,
            caption="../report/claims.rst",
            category="claims",
            subcategory="the papers' claims",
            labels={"item": "the claims table"},
        ),
    params:
        code=code_of("scripts/tabulate_claims.py"),
        claims=claims.claims_params(config),
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/tabulate_claims.log",
    benchmark:
        "<results>/benchmarks/tabulate_claims.tsv"
    script:
        "../scripts/tabulate_claims.py"
