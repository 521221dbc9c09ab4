# Named helpers of the alloy rules (alloys.smk): model paths, config lookups and input functions.

ALLOYS = f"{RESULTS}/alloys"
ALLOY_FAMILY_CONFIG = config["alloys"]["families"]
#: The resources of an alloy or learning-curve model (alloys.families.<family>.resources).
ALLOY_RESOURCES = resource_functions(lambda wildcards: ALLOY_FAMILY_CONFIG[wildcards.family]["resources"])
ALLOY_RELAX_SETS = config["alloys"]["relax_sets"]
LEARNING_CURVE = config["alloys"]["learning_curve"]
ALLOY_MODES = list(layout.MODES)
#: The composition baselines of the alloy datasets (ALLOY_BASELINE: one dataset's split).
ALLOY_BASELINES = f"{RESULTS}/{layout.ALLOY_BASELINES}"


def _subset_of(values, allowed, key, allowed_key):
    """values (None = all of allowed), checked against allowed; an error names the config key."""
    chosen = list(allowed) if values is None else list(values)
    unknown = sorted(set(chosen) - set(allowed))
    if unknown:
        raise ValueError(f"config key {key!r}: {unknown} not in {allowed_key} {list(allowed)}")
    return chosen


def alloy_families():
    """The model families with alloy models (none when no alloy dataset is configured)."""
    return [f for f, spec in ALLOY_FAMILY_CONFIG.items() if spec["enabled"]] if ALLOY_DATASETS else []


def alloy_family_ecuts(family):
    e_cuts = ALLOY_FAMILY_CONFIG[family]["e_cuts"]
    e_cuts = None if e_cuts is None else [fmt_float(e) for e in e_cuts]
    return _subset_of(e_cuts, ALLOY_ECUTS, f"alloys.families.{family}.e_cuts", "alloys.e_cuts")


def alloy_family_splits(family):
    return _subset_of(ALLOY_FAMILY_CONFIG[family]["splits"], ALLOY_SPLITS, f"alloys.families.{family}.splits", "alloys.splits")


def alloy_modes(family):
    """normal and transfer; normal only for a family without fine-tuning (FamilySpec.transfer)."""
    return ALLOY_MODES if family_spec(family).transfer else ALLOY_MODES[:1]


def alloy_models():
    """Every alloy model directory: family × dataset × mode × e_cut × split."""
    return [
        ALLOY_MODEL.format(family=f, dataset=d, mode=m, ecut=e, split=s)
        for f in alloy_families()
        for d in ALLOY_DATASETS
        for m in alloy_modes(f)
        for e in alloy_family_ecuts(f)
        for s in alloy_family_splits(f)
    ]


def curve_models():
    """Every learning-curve model directory: alloy × family × mode × fraction."""
    if not (LEARNING_CURVE["enabled"] and ALLOY_NAMES):
        return []
    alloys = _subset_of(LEARNING_CURVE["alloys"], ALLOY_NAMES, "alloys.learning_curve.alloys", "alloys.datasets")
    families = _subset_of(LEARNING_CURVE["families"], list(ALLOY_FAMILY_CONFIG), "alloys.learning_curve.families", "alloys.families")
    ecut = _subset_of([fmt_float(LEARNING_CURVE["e_cut"])], ALLOY_ECUTS, "alloys.learning_curve.e_cut", "alloys.e_cuts")[0]
    split = _subset_of([LEARNING_CURVE["split"]], ALLOY_SPLITS, "alloys.learning_curve.split", "alloys.splits")[0]
    full = set(alloy_models())  # fraction 1 is the full alloy model where one is trained
    return [
        CURVE_MODEL.format(family=f, dataset=d, mode=m, ecut=ecut, split=split, frac=fmt_float(x))
        for d in alloys
        for f in families
        for m in alloy_modes(f)
        for x in LEARNING_CURVE["fractions"]
        if not (float(x) == 1.0 and ALLOY_MODEL.format(family=f, dataset=d, mode=m, ecut=ecut, split=split) in full)
    ]


#: transfer_from values that rank the whole sweep (mlff2d.alloys.transfer.CRITERIA), and what each
#: criterion reads of every sweep point besides its status.json.
TRANSFER_CRITERIA = {"best": ["relax/val/summary.json"], "best_direct": []}


def transfer_points(wildcards):
    """The universal sweep points a transfer model may start from: the whole sweep for a
    criterion ("best", "best_direct"), else the named point."""
    if wildcards.mode != "transfer":
        return []
    points = sweep_points(wildcards.family)
    source = ALLOY_FAMILY_CONFIG[wildcards.family]["transfer_from"]
    if source in TRANSFER_CRITERIA:
        return points
    named = [p for p in points if Path(p).parts[-3:] == Path(source).parts]
    if not named:
        labels = [sweep_point_label(wildcards.family, p) for p in points]
        raise ValueError(f"config key 'alloys.families.{wildcards.family}.transfer_from': {source!r} is not a sweep point; one of {labels} or {' / '.join(TRANSFER_CRITERIA)}")
    return named


def transfer_inputs(wildcards):
    """What the transfer source is chosen from: every candidate point's status.json and, for
    "best", its validation relaxation summary (so the universal val relaxations run first)."""
    source = ALLOY_FAMILY_CONFIG[wildcards.family]["transfer_from"]
    reads = ["status.json", *TRANSFER_CRITERIA.get(source, [])]
    return [f"{p}/{r}" for p in transfer_points(wildcards) for r in reads]


def alloy_training_data(wildcards):
    return export_dir(wildcards.dataset, wildcards.family, wildcards.ecut, wildcards.split)


def alloy_train_args(wildcards):
    """Arguments of `mlff2d train-alloy` from the config: lr, batch size, settings (the universal
    family's params overridden by the alloy ones), freezing, the transfer source and whether
    the element energies are refitted."""
    spec = ALLOY_FAMILY_CONFIG[wildcards.family]
    mode = spec[wildcards.mode]
    settings = {**UFF_FAMILIES.get(wildcards.family, {}).get("params", {}), **spec["params"]}
    if wildcards.mode == "transfer":  # element energies refitted on the alloy data, or kept
        settings["refit_element_energies"] = mode["refit_element_energies"]
    args = f"--mode {wildcards.mode} --lr {mode['lr']} --batch-size {mode['batch_size']} --params {shlex.quote(json.dumps(settings))}"
    if wildcards.mode == "transfer":
        points = " ".join(transfer_points(wildcards))
        args += f" --freeze-blocks {mode['freeze_blocks']} --transfer-from {shlex.quote(spec['transfer_from'])} --universal {points}"
    return args




def alloy_exports():
    """The exports the alloy and learning-curve models train on (alloy_training_data of each;
    a learning-curve subset is cut from the same export)."""
    exports = []
    for model in alloy_models() + curve_models():
        export = alloy_training_data(SimpleNamespace(**layout.model_parts(model)))
        if export not in exports:
            exports.append(export)
    return exports


def transfer_source_families():
    """Families whose universal sweep some transfer model starts from."""
    models = alloy_models() + curve_models()
    return sorted({m["family"] for m in map(layout.model_parts, models) if m["mode"] == "transfer"})


def alloy_report_inputs(wildcards):
    """Evaluation summaries of every alloy model (val and test) and learning-curve model (test)."""
    inputs = [f"{m}/relax/{s}/summary.json" for m in alloy_models() for s in ALLOY_RELAX_SETS]
    inputs += [f"{m}/relax/test/summary.json" for m in curve_models()]
    if collect_finished_only():
        inputs = [i for i in inputs if Path(i).parents[2].joinpath("status.json").exists()]
    return inputs + alloy_baseline_summaries()


def alloy_baseline_summaries():
    """The composition baseline of every alloy dataset, split and relaxed set."""
    if not (alloy_models() or curve_models()):
        return []
    return [
        f"{ALLOY_BASELINE.format(dataset=d, split=s)}/{r}/summary.json"
        for d in ALLOY_DATASETS
        for s in ALLOY_SPLITS
        for r in ALLOY_RELAX_SETS
    ]


def alloy_report_args(wildcards):
    """Arguments of `mlff2d alloy-report`: every expected model (missing ones show as '–')."""
    models = alloy_models() + curve_models()
    families = " ".join(alloy_table_families())
    return (
        f"--models {' '.join(models)} --sets {' '.join(ALLOY_RELAX_SETS)} --splits {' '.join(ALLOY_SPLITS)}"
        f" --families {families} --tolerance {LEARNING_CURVE['tolerance']} --baselines {ALLOY_BASELINES}"
    )


def alloy_table_families():
    """The families with a per-alloy table: those with alloy models, else those enabled by default."""
    return alloy_families() or [f for f in family_names() if family_spec(f).alloy_default.get("enabled")]


def alloy_table_item(stem):
    """The report label of an alloy table: "Table 4.4, split 90-5-5" (a family the thesis has no
    table for: "NequIP per alloy, split ...")."""
    parts = layout.alloy_table_parts(stem)
    number = parts["table"][len("table_"):]
    if number[:1].isdigit():
        return f"Table {number.replace('_', '.')}, split {parts['split']}"
    family = next((f for f in family_names() if family_spec(f).alloy_table == parts["table"]), number)
    return f"{FAMILY_NAMES.get(family, family)} per alloy, split {parts['split']}"


def alloy_table_outputs():
    from mlff2d.alloys.report import expected_outputs

    outputs = []
    for name in expected_outputs(ALLOY_SPLITS, alloy_table_families()):
        path = f"{ALLOYS}/tables/{name}"
        if name.startswith("table_") and name.endswith(".html"):  # the tables in the HTML report
            path = report(path, caption="../report/alloy_tables.rst", category=REPORT_CATEGORIES["alloys"],
                          labels={"item": alloy_table_item(name[: -len(".html")])})
        outputs.append(path)
    figures = report(directory(f"{ALLOYS}/figures"), patterns=["{name}.png", "{name}.html"], caption="../report/alloy_tables.rst",
                     category=REPORT_CATEGORIES["alloys"], labels={"item": "{name}"})
    return [*outputs, figures]


def alloy_targets():
    """Everything the alloy stage produces (part of `rule all`)."""
    if not (alloy_models() or curve_models()):
        return []
    figures = [f for m in alloy_models() for s in ALLOY_RELAX_SETS for f in evaluation_figures(m, s)]
    return [f"{ALLOYS}/tables/index.md"] + figures
