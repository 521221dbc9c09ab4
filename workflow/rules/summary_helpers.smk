# What a campaign writes when it starts (provenance) and prints when it ends (where its results are).

def write_campaign_provenance():
    """The resolved config and the provenance of this run, in results/<campaign>/."""
    from mlff2d.io.provenance import write_provenance

    write_provenance(RESULTS, config)


def campaign_summary():
    """Where a finished campaign's tables and figures are."""
    asked = [str(t) for t in workflow.dag_settings.targets] if workflow.dag_settings else []
    if asked and "all" not in asked:
        return f"\nmlff2d: finished {', '.join(asked)} (campaign '{CAMPAIGN}', results in {RESULTS}/)"
    lines = [f"\nmlff2d: campaign '{CAMPAIGN}' is complete. Results are in {RESULTS}/:"]
    lines.append(f"  relaxation tables 4.1/4.2: {RESULTS}/tables/ (CSV, Markdown, LaTeX)")
    lines.append(f"  periodic-table maps:       {RESULTS}/ptables/index.md")
    lines.append(f"  sweeps:                    {UFF}/<family>/validation_curves.png, <point>/relax/<set>/")
    lines.append(f"  baselines:                 {RESULTS}/baseline/<set>/")
    if ALLOY_DATASETS:
        lines.append(f"  alloy tables 4.3-4.7:      {RESULTS}/alloys/tables/index.md (figures: {RESULTS}/alloys/figures/)")
    if formation_alloys():
        lines.append(f"  formation tables 4.8/4.9:  {RESULTS}/formation/report/")
    lines.append(f"  data ledger and counts:    {DATA}/<dataset>/ledger_materials.csv, filter_summary.csv")
    if config["figures"]["enabled"]:
        lines.append(f"  dataset figures:           {DATA}/{UNIVERSAL}/figures/ (PNG + PDF)")
    lines.append(f"  run times per job:         {BENCH}/ (bench/demo_times.py {RESULTS})")
    lines.append(f"  diagnostics:               {RESULTS}/diagnostics.md")
    diagnostics = Path(f"{RESULTS}/diagnostics.md")
    warnings = [l[2:] for l in diagnostics.read_text().splitlines() if l.startswith("- WARNING")] if diagnostics.exists() else []
    if warnings:
        lines.append(f"\nmlff2d: {len(warnings)} diagnostics warnings (results that mean less than the tables suggest):")
        lines += [f"  {w}" for w in warnings[:20]]
        if len(warnings) > 20:
            lines.append(f"  ... and {len(warnings) - 20} more in {diagnostics}")
    return "\n".join(lines)
