# Universal 2D force-field sweeps (thesis 4.2): one training job per sweep point, expanded
# from each family's grid with Paramspace; `snakemake sweep_m3gnet` / `sweep_mace` run one sweep.


rule train_uff:
    input:
        data=uff_training_data,
    output:
        metrics=f"{UFF}/{{family}}/ecut~{{ecut}}/lr~{{lr}}/bs~{{bs}}/metrics.csv",
        status=f"{UFF}/{{family}}/ecut~{{ecut}}/lr~{{lr}}/bs~{{bs}}/status.json",
    params:
        outdir=subpath(output.status, parent=True),
        settings=family_settings,
    conda:
        MAIN_ENV
    log:
        f"{UFF}/{{family}}/ecut~{{ecut}}/lr~{{lr}}/bs~{{bs}}/train.log",
    benchmark:
        f"{BENCH}/uff/{{family}}/ecut~{{ecut}}/lr~{{lr}}/bs~{{bs}}.tsv"
    threads: training_threads
    resources:
        gpu=training_gpus,
        gpu_model=training_gpu_model,
        constraint=training_constraint,
        cpus_per_task=training_threads,
        mem_mb=training_mem_mb,
        runtime=training_runtime,
    shell:
        "mlff2d --threads {threads} train --family {wildcards.family} --gpus {resources.gpu} --data {input.data}"
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
        "mlff2d curves --points {params.points} --out {params.stem}"
        " --title {params.title} > {log} 2>&1"


rule sweep_m3gnet:
    input:
        sweep_targets("m3gnet"),


rule sweep_mace:
    input:
        sweep_targets("mace"),
