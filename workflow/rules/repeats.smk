# Split repeats (issue 18): the models chosen in `repeats` trained and relaxed once more per
# repeat k >= 1 of their split (split instance <name>.r<k>, mlff2d.data.split; repeat 0 is the plain
# model), and tables of mean ± std over the K repeats. Rerun one repeat by asking for its path,
# e.g. results/<campaign>/uff/<family>/split~<name>.r1/<point>/relax/test/summary.json.

include: "repeats_helpers.smk"


use rule train_uff as train_uff_repeat with:
    input:
        data=repeat_training_data,
    output:
        metrics=f"{REPEAT_POINT}/metrics.csv",
        status=f"{REPEAT_POINT}/status.json",
    log:
        f"{REPEAT_POINT}/train.log",
    benchmark:
        f"{BENCH}/{layout.REPEAT_POINT}.tsv"


rule repeat_table:
    input:
        repeat_summaries,
    output:
        report(
            f"{RESULTS}/tables/repeats/{{table}}.html",
            caption="../report/repeats.rst",
            category=REPORT_CATEGORIES["tables"],
            labels={"table": "{table}: mean ± std over the split repeats"},
        ),
        multiext(f"{RESULTS}/tables/repeats/{{table}}", ".csv", ".md", ".tex"),
    params:
        args=repeat_table_args,
        stem=subpath(output[0], strip_suffix=".html"),
    wildcard_constraints:
        table="table_4_1|table_4_2|alloys",
    conda:
        MAIN_ENV
    log:
        f"{LOGS}/repeat_table/{{table}}.log",
    shell:
        "$MLFF2D_MAIN repeat-table {params.args} --out {params.stem} > {log} 2>&1"
