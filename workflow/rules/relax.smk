# Relaxation test (thesis 4.1-4.3): the structures of a set relaxed by a model, in shards
# (scatter/gather), then energy and area errors, parity plots and periodic-table maps; the
# baselines and one table per family of the universal sweeps (thesis 4.1, 4.2). The rules serve any model
# directory {model} under results/<campaign>/ (uff/<family>/... sweep points, alloys/<family>/...
# alloy models); its dataset and split come from the path (mlff2d.layout.model_source), its family
# from the model's own status.json (the environment it relaxes in is chosen from the path).


rule relax_shard:
    input:
        status=f"{RESULTS}/{{model}}/status.json",
        sets=model_relax_sets,
    output:
        records=f"{RESULTS}/{{model}}/relax/{{relax_set}}/shards/{{shard}}.parquet",
        structures=f"{RESULTS}/{{model}}/relax/{{relax_set}}/shards/{{shard}}.extxyz",
    params:
        point=subpath(input.status, parent=True),
        env=model_env_name,
        r=config["relax"],
    conda:
        model_env
    log:
        f"{RESULTS}/{{model}}/relax/{{relax_set}}/shards/{{shard}}.log",
    benchmark:
        f"{BENCH}/relax/{{model}}/{{relax_set}}/{{shard}}.tsv"
    threads: 1
    resources:
        gpu=relax_gpus,
        mem_mb=relax_mem_mb,
        runtime=relax_runtime,
    shell:
        "${{MLFF2D_{params.env}}} relax --point {params.point}"
        " --start {input.sets}/{wildcards.relax_set}_start.extxyz --shard {wildcards.shard}"
        " --shard-size {params.r[shard_size]} --fmax {params.r[fmax]} --max-steps {params.r[max_steps]}"
        " --engine {params.r[engine]} --batch-atoms {params.r[batch_atoms]}"
        " --records {output.records} --structures {output.structures} > {log} 2>&1"


rule gather_relax:
    input:
        records=relax_shard_records,
        structures=relax_shard_structures,
    output:
        records=f"{RESULTS}/{{model}}/relax/{{relax_set}}/records.parquet",
        structures=f"{RESULTS}/{{model}}/relax/{{relax_set}}/final.extxyz",
    conda:
        MAIN_ENV
    log:
        f"{RESULTS}/{{model}}/relax/{{relax_set}}/gather.log",
    shell:
        "$MLFF2D_MAIN gather-relax --records {input.records} --structures {input.structures}"
        " --records-out {output.records} --structures-out {output.structures} > {log} 2>&1"


rule evaluate_relaxation:
    input:
        records=rules.gather_relax.output.records,
        sets=model_relax_sets,
        train_elements=model_train_elements,
    output:
        multiext(f"{RESULTS}/{{model}}/relax/{{relax_set}}/", "errors.csv", "summary.json", "per_element.csv"),
        report(
            f"{RESULTS}/{{model}}/relax/{{relax_set}}/parity.png",
            caption="../report/parity.rst",
            category=REPORT_CATEGORIES["relaxation"],
            subcategory=report_model,
            labels=report_labels("parity"),
        ),
        f"{RESULTS}/{{model}}/relax/{{relax_set}}/parity.pdf",
        report(
            f"{RESULTS}/{{model}}/relax/{{relax_set}}/elements.png",
            caption="../report/elements.rst",
            category=REPORT_CATEGORIES["relaxation"],
            subcategory=report_model,
            labels=report_labels("per-element MAE"),
        ),
        f"{RESULTS}/{{model}}/relax/{{relax_set}}/elements.pdf",
        report(
            f"{RESULTS}/{{model}}/relax/{{relax_set}}/error_distributions.png",
            caption="../report/error_distributions.rst",
            category=REPORT_CATEGORIES["relaxation"],
            subcategory=report_model,
            labels=report_labels("error distributions"),
        ),
        f"{RESULTS}/{{model}}/relax/{{relax_set}}/error_distributions.pdf",
        f"{RESULTS}/{{model}}/relax/{{relax_set}}/spacegroups.csv",
        report(
            f"{RESULTS}/{{model}}/relax/{{relax_set}}/spacegroup_mae.png",
            caption="../report/spacegroup_mae.rst",
            category=REPORT_CATEGORIES["relaxation"],
            subcategory=report_model,
            labels=report_labels("energy MAE per space group"),
        ),
        f"{RESULTS}/{{model}}/relax/{{relax_set}}/spacegroup_mae.pdf",
        report(
            f"{RESULTS}/{{model}}/relax/{{relax_set}}/element_frequency.png",
            caption="../report/element_frequency.rst",
            category=REPORT_CATEGORIES["relaxation"],
            subcategory=report_model,
            labels=report_labels("per-element MAE against training frequency"),
        ),
        f"{RESULTS}/{{model}}/relax/{{relax_set}}/element_frequency.pdf",
    params:
        outdir=subpath(input.records, parent=True),
        title=evaluation_title,
    conda:
        MAIN_ENV
    log:
        f"{RESULTS}/{{model}}/relax/{{relax_set}}/evaluate.log",
    shell:
        "$MLFF2D_MAIN evaluate --records {input.records}"
        " --reference {input.sets}/{wildcards.relax_set}_reference.extxyz"
        " --train-elements {input.train_elements} --outdir {params.outdir} --title {params.title} > {log} 2>&1"


rule baseline:
    input:
        clean=f"{DATA}/{UNIVERSAL}/clean.parquet",
        split=SPLIT_CSV.format(dataset=UNIVERSAL, split=UFF_SPLIT),
        sets=RELAX_SETS_DIR.format(dataset=UNIVERSAL, split=UFF_SPLIT),
    output:
        multiext(f"{RESULTS}/baseline/{{relax_set}}/", "errors.csv", "summary.json", "per_element.csv"),
        report(
            f"{RESULTS}/baseline/{{relax_set}}/parity.png",
            caption="../report/baseline.rst",
            category=REPORT_CATEGORIES["relaxation"],
            subcategory="composition baseline",
            labels=report_labels("parity", "composition baseline"),
        ),
        f"{RESULTS}/baseline/{{relax_set}}/parity.pdf",
        report(
            f"{RESULTS}/baseline/{{relax_set}}/elements.png",
            caption="../report/baseline.rst",
            category=REPORT_CATEGORIES["relaxation"],
            subcategory="composition baseline",
            labels=report_labels("per-element MAE", "composition baseline"),
        ),
        f"{RESULTS}/baseline/{{relax_set}}/elements.pdf",
    params:
        outdir=subpath(output[0], parent=True),
    conda:
        MAIN_ENV
    log:
        f"{LOGS}/baseline/{{relax_set}}.log",
    shell:
        "$MLFF2D_MAIN baseline --clean {input.clean} --split {input.split} --set {wildcards.relax_set}"
        " --start {input.sets}/{wildcards.relax_set}_start.extxyz"
        " --reference {input.sets}/{wildcards.relax_set}_reference.extxyz"
        " --outdir {params.outdir} > {log} 2>&1"


rule tables:
    input:
        table_inputs,
    output:
        *relaxation_table_outputs(),
        report(f"{RESULTS}/tables/relaxation_summary.html", caption="../report/tables.rst", category=REPORT_CATEGORIES["tables"], labels={"table": "relaxation summary"}),
        f"{RESULTS}/tables/relaxation_summary.csv",
    params:
        points=table_point_args,
        baseline=f"{RESULTS}/baseline",
        sets=" ".join(RELAX_SETS),
        outdir=subpath(output[0], parent=True),
    conda:
        MAIN_ENV
    log:
        f"{LOGS}/tables.log",
    shell:
        "$MLFF2D_MAIN tables --points {params.points} --sets {params.sets} --baseline {params.baseline}"
        " --outdir {params.outdir} > {log} 2>&1"


rule ptables:
    input:
        table_inputs,
    output:
        f"{RESULTS}/ptables/index.md",
        *[report(f"{RESULTS}/ptables/compare_{s}.png", caption="../report/elements.rst", category=REPORT_CATEGORIES["tables"],
                 labels={"table": f"per-element MAE, the two best models, {s} set"}) for s in RELAX_SETS],
    params:
        points=table_point_args,
        baseline=f"{RESULTS}/baseline",
        sets=" ".join(RELAX_SETS),
        outdir=subpath(output[0], parent=True),
    conda:
        MAIN_ENV
    log:
        f"{LOGS}/ptables.log",
    shell:
        "$MLFF2D_MAIN ptables --points {params.points} --sets {params.sets} --baseline {params.baseline}"
        " --outdir {params.outdir} > {log} 2>&1"
