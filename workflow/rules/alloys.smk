# Transfer learning to TMD alloys (thesis 4.3): per alloy and combined, normal (from scratch)
# against transfer (fine-tuned from a universal sweep point), the learning curves (nested subsets
# of the training split) and the tables 4.3-4.7. Relaxations and evaluations of every alloy model
# come from the generic rules of relax.smk ({model}/relax/{set}/summary.json). The helpers
# (alloy_targets() among them) are in alloy_helpers.smk.


include: "alloy_helpers.smk"


rule train_alloy:
    input:
        data=alloy_training_data,
        universal=transfer_inputs,
    output:
        metrics=f"{ALLOY_MODEL}/metrics.csv",
        status=f"{ALLOY_MODEL}/status.json",
    params:
        outdir=subpath(output.status, parent=True),
        args=alloy_train_args,
        env=family_env_name,
    conda:
        family_env
    log:
        f"{ALLOY_MODEL}/train.log",
    benchmark:
        f"{BENCH}/{layout.ALLOY_MODEL}.tsv"
    threads: ALLOY_RESOURCES.threads
    resources:
        gpu=ALLOY_RESOURCES.gpu,
        gpu_model=ALLOY_RESOURCES.gpu_model,
        constraint=ALLOY_RESOURCES.constraint,
        cpus_per_task=ALLOY_RESOURCES.threads,
        mem_mb=ALLOY_RESOURCES.mem_mb,
        runtime=ALLOY_RESOURCES.runtime,
    shell:
        "${{MLFF2D_{params.env}}} --threads {threads} train-alloy --family {wildcards.family} --gpus {resources.gpu} --data {input.data}"
        " --outdir {params.outdir} {params.args} > {log} 2>&1"


rule curve_subset:
    input:
        alloy_training_data,
    output:
        directory(CURVE_DATA),
    params:
        seed=config["seed"],
    conda:
        MAIN_ENV
    log:
        f"{LOGS}/curve_subset/{layout.CURVE_DATA}.log",
    shell:
        "$MLFF2D_MAIN subset-export --export {input} --family {wildcards.family} --fraction {wildcards.frac}"
        " --seed {params.seed} --outdir {output} > {log} 2>&1"


use rule train_alloy as train_alloy_curve with:
    input:
        data=CURVE_DATA,
        universal=transfer_inputs,
    output:
        metrics=f"{CURVE_MODEL}/metrics.csv",
        status=f"{CURVE_MODEL}/status.json",
    wildcard_constraints:
        frac=r"[0-9.e+-]+",
    log:
        f"{CURVE_MODEL}/train.log",
    benchmark:
        f"{BENCH}/{layout.CURVE_MODEL}.tsv"


# The composition baseline of each alloy dataset and split (the Baseline column of tables 4.3-4.7).
use rule baseline as alloy_baseline with:
    input:
        clean=f"{DATA}/{{dataset}}/clean.parquet",
        split=SPLIT_CSV,
        sets=RELAX_SETS_DIR,
    output:
        multiext(f"{ALLOY_BASELINE}/{{relax_set}}/", "errors.csv", "summary.json", "per_element.csv"),
        multiext(f"{ALLOY_BASELINE}/{{relax_set}}/parity", ".png", ".pdf"),
        multiext(f"{ALLOY_BASELINE}/{{relax_set}}/elements", ".png", ".pdf"),
    log:
        f"{LOGS}/alloy_baseline/{layout.BASELINE_SPLIT}/{{relax_set}}.log",


rule alloy_tables:
    input:
        alloy_report_inputs,
    output:
        alloy_table_outputs(),
    params:
        args=alloy_report_args,
        tables=subpath(output[0], parent=True),
        figures=subpath(output[-1]),
    conda:
        MAIN_ENV
    log:
        f"{LOGS}/alloy_tables.log",
    shell:
        "$MLFF2D_MAIN alloy-report {params.args} --tables {params.tables} --figures {params.figures} > {log} 2>&1"
