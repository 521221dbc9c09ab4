# Regenerating the embedded demo dataset with CHGNet standing in for DFT (not part of the
# default run; needs `python3 envs/setup.py --extra demo`). The committed copy is
# resources/demo/; `snakemake demo_data` writes a fresh one to results/demo_data/ to compare
# or to copy over it.


rule demo_data:
    output:
        directory("results/demo_data"),
    conda:
        MAIN_ENV
    log:
        "results/logs/demo_data.log",
    benchmark:
        "results/benchmarks/demo_data.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
    shell:
        "$MLFF2D_MAIN demo-data --outdir {output} --workers {threads} > {log} 2>&1"
