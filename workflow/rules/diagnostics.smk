# Diagnostics (mlff2d.relaxation.diagnostics): every model checked against its composition baseline, for
# relaxations that did not move and for validation force errors that did not fall;
# results/<campaign>/diagnostics.md, printed again at the end of the run.

include: "diagnostics_helpers.smk"


rule diagnostics:
    input:
        diagnostics_inputs,
    output:
        md=f"{DIAGNOSTICS}.md",
        csv=f"{DIAGNOSTICS}.csv",
        html=report(f"{DIAGNOSTICS}.html", caption="../report/diagnostics.rst", category=REPORT_CATEGORIES["campaign"],
                    labels={"item": "diagnostics: what finished, what failed, what means less than it seems"}),
    params:
        args=diagnostics_args,
    conda:
        MAIN_ENV
    log:
        f"{LOGS}/diagnostics.log",
    shell:
        "$MLFF2D_MAIN diagnostics {params.args} --md {output.md} --csv {output.csv} > {log} 2>&1"
