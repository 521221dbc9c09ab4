# Universal 2D force-field sweeps (thesis 4.2): one training job per sweep point of each family's
# grid (mlff2d.layout.sweep_labels); `snakemake sweep_<family>` runs one family's sweep (one rule
# per registered family). A family's jobs run in its environment (its FamilySpec.env).

include: "uff_helpers.smk"



rule train_uff:
    input:
        data=uff_training_data,
    output:
        metrics=f"{POINT}/metrics.csv",
        status=f"{POINT}/status.json",
    params:
        outdir=subpath(output.status, parent=True),
        settings=family_settings,
        env=family_env_name,
    conda:
        family_env
    log:
        f"{POINT}/train.log",
    benchmark:
        f"{BENCH}/{layout.SWEEP_POINT}.tsv"
    threads: UFF_RESOURCES.threads
    resources:
        gpu=UFF_RESOURCES.gpu,
        gpu_model=UFF_RESOURCES.gpu_model,
        constraint=UFF_RESOURCES.constraint,
        cpus_per_task=UFF_RESOURCES.threads,
        mem_mb=UFF_RESOURCES.mem_mb,
        runtime=UFF_RESOURCES.runtime,
    shell:
        "${{MLFF2D_{params.env}}} --threads {threads} train --family {wildcards.family} --gpus {resources.gpu} --data {input.data}"
        " --outdir {params.outdir} --lr {wildcards.lr} --batch-size {wildcards.bs}"
        " --params {params.settings} > {log} 2>&1"


rule validation_curves:
    input:
        sweep_point_statuses,
    output:
        report(
            f"{UFF}/{{family}}/validation_curves.png",
            caption="../report/validation_curves.rst",
            category=REPORT_CATEGORIES["sweeps"],
            labels=report_family_labels("validation curves"),
        ),
        f"{UFF}/{{family}}/validation_curves.pdf",
    params:
        points=sweep_point_args,
        stem=f"{UFF}/{{family}}/validation_curves",
        title=curves_title,
    conda:
        MAIN_ENV
    log:
        f"{LOGS}/uff/{{family}}/validation_curves.log",
    shell:
        "$MLFF2D_MAIN curves --points {params.points} --out {params.stem}"
        " --title {params.title} > {log} 2>&1"


for _family in family_names():

    rule:
        name:
            f"sweep_{_family}"
        localrule: True
        input:
            sweep_targets(_family) if _family in UFF_FAMILIES else [],
