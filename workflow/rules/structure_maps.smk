# SOAP structure maps (issue 18): per dataset and split a PCA map of the materials coloured
# train/val/test (PCA fitted on train), and per model and set the relaxation energy error against
# each material's SOAP distance to its nearest training material (Spearman rho in novelty.json,
# gathered in tables/novelty.csv). Logic: mlff2d/data/structure_maps.py.

include: "structure_maps_helpers.smk"


rule structure_map:
    input:
        clean=rules.filter_outliers.output.clean,
        split=rules.split.output,
    output:
        soap=f"{STRUCTURE_MAP}/soap.npy",
        pca=f"{STRUCTURE_MAP}/pca.npz",
        structures=f"{STRUCTURE_MAP}/structures.csv",
        png=report(
            f"{STRUCTURE_MAP}/map.png",
            caption="../report/structure_map.rst",
            category=REPORT_CATEGORIES["structure"],
            labels={"model": "{dataset}, split {split}", "set": "train/val/test", "figure": "SOAP map"},
        ),
        pdf=f"{STRUCTURE_MAP}/map.pdf",
    params:
        outdir=subpath(output.structures, parent=True),
        s=STRUCTURE_MAPS,
    conda:
        MAIN_ENV
    log:
        f"{LOGS}/structure_map/{{dataset}}/{{split}}.log",
    benchmark:
        f"{BENCH}/structure_map/{{dataset}}/{{split}}.tsv"
    resources:
        mem_mb=2000,
        runtime=120,
    shell:
        "$MLFF2D_MAIN structure-map --clean {input.clean} --split {input.split} --outdir {params.outdir}"
        " --r-cut {params.s[r_cut]} --n-max {params.s[n_max]} --l-max {params.s[l_max]}"
        " --sigma {params.s[sigma]} --chunk {params.s[chunk]} > {log} 2>&1"


rule novelty:
    input:
        structures=model_structures,
        errors=f"{RESULTS}/{{model}}/relax/{{relax_set}}/errors.csv",
    output:
        summary=f"{RESULTS}/{{model}}/relax/{{relax_set}}/novelty.json",
        table=f"{RESULTS}/{{model}}/relax/{{relax_set}}/novelty.csv",
        png=report(
            f"{RESULTS}/{{model}}/relax/{{relax_set}}/novelty.png",
            caption="../report/novelty.rst",
            category=REPORT_CATEGORIES["structure"],
            subcategory=report_model,
            labels=report_labels("error vs novelty"),
        ),
        pdf=f"{RESULTS}/{{model}}/relax/{{relax_set}}/novelty.pdf",
        map_png=report(
            f"{RESULTS}/{{model}}/relax/{{relax_set}}/error_map.png",
            caption="../report/novelty.rst",
            category=REPORT_CATEGORIES["structure"],
            subcategory=report_model,
            labels=report_labels("SOAP map, energy error"),
        ),
        map_pdf=f"{RESULTS}/{{model}}/relax/{{relax_set}}/error_map.pdf",
    params:
        outdir=subpath(output.summary, parent=True),
        title=evaluation_title,
    conda:
        MAIN_ENV
    log:
        f"{RESULTS}/{{model}}/relax/{{relax_set}}/novelty.log",
    shell:
        "$MLFF2D_MAIN novelty --structures {input.structures} --errors {input.errors} --set {wildcards.relax_set}"
        " --outdir {params.outdir} --title {params.title} > {log} 2>&1"


rule novelty_table:
    input:
        novelty_summaries,
    output:
        csv=f"{RESULTS}/tables/novelty.csv",
        html=report(f"{RESULTS}/tables/novelty.html", caption="../report/novelty.rst", category=REPORT_CATEGORIES["structure"],
                    labels={"model": "all models", "set": "val and test", "figure": "error against novelty (Spearman)"}),
    params:
        summaries=novelty_args,
    conda:
        MAIN_ENV
    log:
        f"{LOGS}/novelty_table.log",
    shell:
        "$MLFF2D_MAIN novelty-table --summaries {params.summaries} --out {output.csv} > {log} 2>&1"
