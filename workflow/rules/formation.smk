# Alloy formation energies (thesis 4.4): NequIP on ML- and DFT-relaxed structures against a
# cluster expansion, with one holdout for both. Per alloy and split, in
# results/<campaign>/formation/<alloy>/split~<split>/:
#   formation_energies.csv, end_members.json   formation energies per site and per atom
#   ce/                                        icet CE: cutoffs by CV on the training split, fit on it
#   baseline/                                  composition only (alloy fraction x)
#   nequip/{dft,ml1,ml2}/                      energy-only NequIP (nequip environment)
# and results/<campaign>/formation/report/: tables 4.8, 4.9 and 6.2, figures 4.10 and 4.11.

include: "formation_common.smk"


rule formation_energies:
    input:
        sets=formation_relax_sets,
        table=formation_table_input,
    output:
        csv=f"{FORMATION_ALLOY}/formation_energies.csv",
        end_members=f"{FORMATION_ALLOY}/end_members.json",
    params:
        table=formation_table_args,
    wildcard_constraints:
        fe_alloy=FE_ALLOY,
        fe_split=r"[^/]+",
    conda:
        MAIN_ENV
    log:
        f"{LOGS}/{layout.FORMATION_ALLOY}/formation_energies.log",
    benchmark:
        f"{BENCH}/{layout.FORMATION_ALLOY}/formation_energies.tsv"
    shell:
        "$MLFF2D_MAIN formation-energies --alloy {wildcards.fe_alloy} --relax-sets {input.sets} {params.table}"
        " --out {output.csv} --end-members {output.end_members} > {log} 2>&1"


rule cluster_expansion:
    input:
        formation=rules.formation_energies.output.csv,
        sets=formation_relax_sets,
    output:
        multiext(f"{FORMATION_ALLOY}/ce/", "predictions.csv", "summary.json", "cv.csv", "eci.csv"),
    params:
        outdir=subpath(output[0], parent=True),
        settings=formation_ce_settings,
    wildcard_constraints:
        fe_alloy=FE_ALLOY,
        fe_split=r"[^/]+",
    conda:
        MAIN_ENV
    log:
        f"{LOGS}/{layout.FORMATION_ALLOY}/cluster_expansion.log",
    benchmark:
        f"{BENCH}/{layout.FORMATION_ALLOY}/cluster_expansion.tsv"
    resources:
        mem_mb=FORMATION_CONFIG["resources"]["mem_mb"],
        runtime=FORMATION_CONFIG["resources"]["runtime"],
    shell:
        "$MLFF2D_MAIN cluster-expansion --formation {input.formation} --relax-sets {input.sets}"
        " --outdir {params.outdir} --settings {params.settings} > {log} 2>&1"


rule formation_baseline:
    input:
        formation=rules.formation_energies.output.csv,
    output:
        multiext(f"{FORMATION_ALLOY}/baseline/", "predictions.csv", "summary.json"),
    params:
        outdir=subpath(output[0], parent=True),
        order=FORMATION_CONFIG["baseline_order"],
    wildcard_constraints:
        fe_alloy=FE_ALLOY,
        fe_split=r"[^/]+",
    conda:
        MAIN_ENV
    log:
        f"{LOGS}/{layout.FORMATION_ALLOY}/baseline.log",
    shell:
        "$MLFF2D_MAIN formation-baseline --formation {input.formation} --outdir {params.outdir}"
        " --order {params.order} > {log} 2>&1"


rule formation_nequip:
    input:
        unpack(formation_nequip_structures),
        formation=rules.formation_energies.output.csv,
    output:
        status=f"{FORMATION_ALLOY}/nequip/{{fe_input}}/status.json",
        predictions=f"{FORMATION_ALLOY}/nequip/{{fe_input}}/predictions.csv",
        metrics=f"{FORMATION_ALLOY}/nequip/{{fe_input}}/metrics.csv",
    params:
        outdir=subpath(output.status, parent=True),
        sets=formation_nequip_set_args,
        settings=formation_nequip_params,
    wildcard_constraints:
        fe_alloy=FE_ALLOY,
        fe_split=r"[^/]+",
        fe_input="dft|ml1|ml2",
    conda:
        NEQUIP_ENV
    log:
        f"{LOGS}/{layout.FORMATION_ALLOY}/nequip_{{fe_input}}.log",
    benchmark:
        f"{BENCH}/{layout.FORMATION_ALLOY}/nequip_{{fe_input}}.tsv"
    threads: FORMATION_RESOURCES.threads
    resources:
        gpu=FORMATION_RESOURCES.gpu,
        cpus_per_task=FORMATION_RESOURCES.threads,
        mem_mb=FORMATION_RESOURCES.mem_mb,
        runtime=FORMATION_RESOURCES.runtime,
    shell:
        "$MLFF2D_NEQUIP --threads {threads} formation-nequip --formation {input.formation} {params.sets}"
        " --outdir {params.outdir} --params {params.settings} > {log} 2>&1"


rule formation_report:
    input:
        formation_report_inputs,
    output:
        *[report(f"{FORMATION}/report/table_{t}.html", caption="../report/formation.rst", category=REPORT_CATEGORIES["formation"],
                 labels={"item": f"Table {t.replace('_', '.')}"}) for t in ("4_8", "4_9", "6_2")],
        *[multiext(f"{FORMATION}/report/table_{t}", ".csv", ".md", ".tex") for t in ("4_8", "4_9", "6_2")],
        report(f"{FORMATION}/report/formation_distribution.png", caption="../report/formation.rst", category=REPORT_CATEGORIES["formation"], labels={"item": "Figure 4.10: formation energies"}),
        f"{FORMATION}/report/formation_distribution.pdf",
        *[report(f"{FORMATION}/report/parity_{m}.png", caption="../report/formation.rst", category=REPORT_CATEGORIES["formation"],
                 labels={"item": f"Figure 4.11: parity, {FORMATION_MODEL_NAMES[m]}"}) for m in FORMATION_PARITY_MODELS],
        *[f"{FORMATION}/report/parity_{m}.pdf" for m in FORMATION_PARITY_MODELS],
        report(f"{FORMATION}/report/nequip_validation_curves.png", caption="../report/formation.rst", category=REPORT_CATEGORIES["formation"], labels={"item": "Figure 4.9: NequIP validation curves"}),
        f"{FORMATION}/report/nequip_validation_curves.pdf",
        report(f"{FORMATION}/report/formation_summary.html", caption="../report/formation.rst", category=REPORT_CATEGORIES["formation"], labels={"item": "formation summary"}),
        f"{FORMATION}/report/formation_summary.csv",
    params:
        alloys=formation_report_args,
        split=formation_split(),
        outdir=subpath(output[0], parent=True),
    conda:
        MAIN_ENV
    log:
        f"{LOGS}/formation/report.log",
    shell:
        "$MLFF2D_MAIN formation-report --alloys {params.alloys} --split {params.split}"
        " --outdir {params.outdir} > {log} 2>&1"


rule formation:
    input:
        formation_targets(),
