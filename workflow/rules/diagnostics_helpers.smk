# Named helpers of the diagnostics rule (diagnostics.smk).

DIAGNOSTICS = f"{RESULTS}/diagnostics"


def diagnostics_pairs():
    """MODEL_DIR=BASELINE_DIR of every universal sweep point and alloy (and learning-curve) model."""
    from mlff2d.alloys.report import parse_model_dir

    pairs = [f"{p}={RESULTS}/baseline" for _, p in evaluated_points()]
    for model in alloy_models() + curve_models():
        labels = parse_model_dir(model)
        pairs.append(f"{model}={ALLOY_BASELINE.format(dataset=labels['dataset'], split=labels['split'])}")
    return pairs


def diagnostics_inputs(wildcards):
    """The summaries and baselines the tables rest on, and every model's status."""
    inputs = table_inputs(wildcards) + alloy_report_inputs(wildcards)
    return inputs + [f"{p.split('=')[0]}/status.json" for p in diagnostics_pairs()]


def diagnostics_args(wildcards):
    sets = sorted(set(RELAX_SETS) | set(ALLOY_RELAX_SETS))
    return f"--models {' '.join(diagnostics_pairs())} --sets {' '.join(sets)} --root {RESULTS}"
