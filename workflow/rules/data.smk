# The data pipeline (thesis 4.1): ingest -> filter outliers -> select steps -> split -> export.
# One folder per dataset: results/<campaign>/data/<dataset>/ (2d = the universal data, one per
# alloy, alloys = all alloys combined; see DATASETS in common.smk).


rule ingest:
    input:
        source_files,
    output:
        frames=f"{DATA}/{{dataset}}/frames.parquet",
        materials=f"{DATA}/{{dataset}}/materials.csv",
    params:
        sources=source_args,
        min_vacuum=config["data"]["min_vacuum"],
    conda:
        MAIN_ENV
    log:
        f"{LOGS}/ingest/{{dataset}}.log",
    benchmark:
        f"{BENCH}/ingest/{{dataset}}.tsv"
    threads: 4
    resources:
        mem_mb=4000,
        runtime=120,
    shell:
        "$MLFF2D_MAIN ingest {params.sources} --min-vacuum {params.min_vacuum} --workers {threads}"
        " --frames {output.frames} --materials {output.materials} > {log} 2>&1"


rule filter_outliers:
    input:
        frames=rules.ingest.output.frames,
        materials=rules.ingest.output.materials,
    output:
        clean=f"{DATA}/{{dataset}}/clean.parquet",
        ledger_frames=f"{DATA}/{{dataset}}/ledger_frames.parquet",
        ledger_materials=f"{DATA}/{{dataset}}/ledger_materials.csv",
        summary=f"{DATA}/{{dataset}}/filter_summary.csv",
    params:
        o=config["outliers"],
    conda:
        MAIN_ENV
    log:
        f"{LOGS}/filter_outliers/{{dataset}}.log",
    benchmark:
        f"{BENCH}/filter_outliers/{{dataset}}.tsv"
    resources:
        mem_mb=8000,
        runtime=120,
    shell:
        "$MLFF2D_MAIN filter --frames {input.frames} --materials {input.materials}"
        " --clean {output.clean} --ledger-frames {output.ledger_frames}"
        " --ledger-materials {output.ledger_materials} --summary {output.summary}"
        " --max-sites {params.o[max_sites]} --energy-min {params.o[energy_min]}"
        " --energy-max {params.o[energy_max]} --force-max {params.o[force_max]}"
        " --stress-max-kbar {params.o[stress_max_kbar]}"
        " --isolation-cutoff {params.o[isolation_cutoff]} --scope {params.o[scope]} > {log} 2>&1"


rule select_steps:
    input:
        clean=rules.filter_outliers.output.clean,
    output:
        SELECTED,
    params:
        fallback=" ".join(str(f) for f in config["selection"]["fallback"]),
        keep_last="--keep-last" if config["selection"]["keep_last"] else "",
    conda:
        MAIN_ENV
    log:
        f"{LOGS}/select_steps/{layout.SELECTED_STEM}.log",
    benchmark:
        f"{BENCH}/select_steps/{layout.SELECTED_STEM}.tsv"
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "$MLFF2D_MAIN select --clean {input.clean} --e-cut {wildcards.ecut}"
        " --fallback {params.fallback} {params.keep_last} --out {output} > {log} 2>&1"


rule split:
    input:
        split_input,
    output:
        SPLIT_CSV,
    params:
        args=split_args,
    conda:
        MAIN_ENV
    log:
        f"{LOGS}/split/{{dataset}}/{{split}}.log",
    benchmark:
        f"{BENCH}/split/{{dataset}}/{{split}}.tsv"
    shell:
        "$MLFF2D_MAIN split {params.args} --out {output} > {log} 2>&1"


rule selection_summary:
    input:
        clean=rules.filter_outliers.output.clean,
        selected=dataset_selected,
        splits=dataset_split_files,
    output:
        f"{DATA}/{{dataset}}/selection_summary.csv",
    params:
        selected=selected_args,
        splits=split_file_args,
        fallback=" ".join(str(f) for f in config["selection"]["fallback"]),
    conda:
        MAIN_ENV
    log:
        f"{LOGS}/selection_summary/{{dataset}}.log",
    shell:
        "$MLFF2D_MAIN selection-summary --clean {input.clean} --selected {params.selected} --splits {params.splits}"
        " --fallback {params.fallback} --out {output} > {log} 2>&1"


rule export:
    input:
        clean=rules.filter_outliers.output.clean,
        selected=rules.select_steps.output,
        split=rules.split.output,
    output:
        directory(EXPORT),
    conda:
        MAIN_ENV
    log:
        f"{LOGS}/export/{layout.EXPORT}.log",
    benchmark:
        f"{BENCH}/export/{layout.EXPORT}.tsv"
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "$MLFF2D_MAIN export --family {wildcards.fmt} --clean {input.clean}"
        " --selected {input.selected} --split {input.split} --outdir {output} > {log} 2>&1"


checkpoint relax_sets:
    input:
        clean=rules.filter_outliers.output.clean,
        split=rules.split.output,
    output:
        directory(RELAX_SETS_DIR),
    params:
        sets=relax_set_names,
    conda:
        MAIN_ENV
    log:
        f"{LOGS}/relax_sets/{{dataset}}/{{split}}.log",
    benchmark:
        f"{BENCH}/relax_sets/{{dataset}}/{{split}}.tsv"
    shell:
        "$MLFF2D_MAIN relax-sets --clean {input.clean} --split {input.split} --sets {params.sets}"
        " --outdir {output} > {log} 2>&1"


rule dataset_figures:
    input:
        clean=rules.filter_outliers.output.clean,
        selected=dataset_selected,
    output:
        report(
            directory(f"{DATA}/{{dataset}}/figures"),
            patterns=["{name}.png"],
            caption="../report/dataset_figures.rst",
            category=REPORT_CATEGORIES["data"],
            labels={"dataset": "{dataset}", "figure": "{name}"},
        ),
    params:
        selected=selected_args,
    conda:
        MAIN_ENV
    log:
        f"{LOGS}/dataset_figures/{{dataset}}.log",
    benchmark:
        f"{BENCH}/dataset_figures/{{dataset}}.tsv"
    resources:
        mem_mb=8000,
        runtime=60,
    shell:
        "$MLFF2D_MAIN dataset-figures --clean {input.clean} --selected {params.selected}"
        " --outdir {output} > {log} 2>&1"


rule train_elements:
    input:
        clean=rules.filter_outliers.output.clean,
        split=rules.split.output,
    output:
        TRAIN_ELEMENTS,
    conda:
        MAIN_ENV
    log:
        f"{LOGS}/train_elements/{{dataset}}/{{split}}.log",
    shell:
        "$MLFF2D_MAIN train-elements --clean {input.clean} --split {input.split} --out {output} > {log} 2>&1"


# Thesis fig. 6.13a: the energy per atom of every alloy dataset on shared bins.
rule alloy_energy_figure:
    input:
        alloy_clean_stores,
    output:
        png=report(
            f"{ALLOY_ENERGY_FIGURE}.png",
            caption="../report/dataset_figures.rst",
            category=REPORT_CATEGORIES["data"],
            labels={"dataset": "alloys", "figure": "energy per atom per alloy"},
        ),
        pdf=f"{ALLOY_ENERGY_FIGURE}.pdf",
    params:
        clean=alloy_clean_args,
    conda:
        MAIN_ENV
    log:
        f"{LOGS}/alloy_energy_figure.log",
    shell:
        "$MLFF2D_MAIN alloy-energy-figure --clean {params.clean} --out {output.png} > {log} 2>&1"


rule data:
    input:
        data_inputs,
