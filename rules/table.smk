# The results tables (robustcert.workflow.table): all.tsv in long form from every row file the
# methods registered in RESULT_ROWS (with each defense against the undefended model), the wide and the
# paper-shaped table of each method with their HTML page for the report, and backdoorbench.csv.
# Included last.

from robustcert.workflow import table
from robustcert.workflow.common import one_of

FINAL_OUTPUT += table.wide_tables(RESULT_ROWS)
FINAL_OUTPUT += [table.BACKDOORBENCH, table.BACKDOORBENCH_HTML]
# the overview figure first: the HTML report lists categories in the order it meets their jobs
FINAL_OUTPUT[:0] = [table.HEADLINE.format(ext=ext) for ext in ("png", "pdf")]


rule tabulate_results:
    input:
        rows=get_result_rows,
    output:
        table=report(
            table.ALL,
            caption="../report/all_table.rst",
            category=OVERVIEW,
            subcategory="tables",
            labels={"table": "all.tsv (every number)"},
        ),
    params:
        code=code_of("scripts/tabulate_results.py"),
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/tabulate_results.log",
    benchmark:
        "<results>/benchmarks/tabulate_results.tsv"
    script:
        "../scripts/tabulate_results.py"


rule tabulate_method:
    input:
        rows=get_result_rows,
    output:
        table=table.WIDE,
        compact=table.COMPACT,
        html=report(
            table.HTML,
            caption="../report/method_table.rst",
            category=get_report_category,
            subcategory="tables",
            labels={"table": "{method}"},
        ),
    wildcard_constraints:
        method=one_of(RESULT_ROWS),
    params:
        code=code_of("scripts/tabulate_method.py"),
        columns=table.compact_columns,
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/tabulate_method/{method}.log",
    benchmark:
        "<results>/benchmarks/tabulate_method/{method}.tsv"
    script:
        "../scripts/tabulate_method.py"


rule export_backdoorbench:
    input:
        table=rules.tabulate_results.output.table,
    output:
        summary=report(
            table.BACKDOORBENCH,
            caption="../report/backdoorbench.rst",
            category=OVERVIEW,
            subcategory="tables",
            labels={"table": "backdoorbench.csv"},
        ),
    params:
        code=code_of("scripts/export_backdoorbench.py"),
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/export_backdoorbench.log",
    benchmark:
        "<results>/benchmarks/export_backdoorbench.tsv"
    script:
        "../scripts/export_backdoorbench.py"


rule render_backdoorbench:
    input:
        table=rules.export_backdoorbench.output.summary,
    output:
        html=report(
            table.BACKDOORBENCH_HTML,
            caption="../report/backdoorbench.rst",
            category=OVERVIEW,
            subcategory="tables",
            labels={"table": "backdoorbench (rendered)"},
        ),
    params:
        code=code_of("scripts/render_backdoorbench.py"),
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/render_backdoorbench.log",
    benchmark:
        "<results>/benchmarks/render_backdoorbench.tsv"
    script:
        "../scripts/render_backdoorbench.py"


rule plot_headline:
    input:
        table=rules.tabulate_results.output.table,
    output:
        png=report(
            table.HEADLINE.replace("{ext}", "png"),
            caption="../report/headline.rst",
            category=OVERVIEW,
            subcategory="figures",
            labels={"figure": "headline numbers"},
        ),
        pdf=table.HEADLINE.replace("{ext}", "pdf"),
    params:
        code=code_of("scripts/plot_headline.py"),
    conda:
        "../envs/robustcert.yaml"
    log:
        "<results>/logs/plot_headline.log",
    benchmark:
        "<results>/benchmarks/plot_headline.tsv"
    script:
        "../scripts/plot_headline.py"
