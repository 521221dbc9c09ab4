# Named helpers of the alloy rules (alloys.smk): model paths, config lookups and input functions.

ALLOYS = f"{RESULTS}/alloys"
ALLOY_FAMILY_CONFIG = config["alloys"]["families"]
ALLOY_RELAX_SETS = config["alloys"]["relax_sets"]
LEARNING_CURVE = config["alloys"]["learning_curve"]
ALLOY_MODES = ["normal", "transfer"]
#: An alloy model's directory, as a pattern with the wildcards family, dataset, mode, ecut, split.
ALLOY_MODEL = f"{ALLOYS}/{{family}}/{{dataset}}/{{mode}}/ecut~{{ecut}}/split~{{split}}"
#: A learning-curve model: the alloy model directory plus frac~<fraction>.
CURVE_MODEL = f"{ALLOY_MODEL}/frac~{{frac}}"
#: The composition baselines of the alloy datasets, and of one dataset's split (sets below it).
#: The pattern is alloy_report.alloy_baseline_dir's (importing that module here would add ~0.6 s to
#: every parse of the Snakefile).
ALLOY_BASELINES = f"{ALLOYS}/baseline"
ALLOY_BASELINE = f"{ALLOY_BASELINES}/{{dataset}}/split~{{split}}"
#: The nested training subset of a learning-curve point (a copy of the export, fewer train materials).
CURVE_DATA = f"{DATA}/{{dataset}}/subsets/{{family}}/ecut~{{ecut}}/split~{{split}}/frac~{{frac}}"


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


def alloy_models():
    """Every alloy model directory: family × dataset × mode × e_cut × split."""
    return [
        ALLOY_MODEL.format(family=f, dataset=d, mode=m, ecut=e, split=s)
        for f in alloy_families()
        for d in ALLOY_DATASETS
        for m in ALLOY_MODES
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
        for m in ALLOY_MODES
        for x in LEARNING_CURVE["fractions"]
        if not (float(x) == 1.0 and ALLOY_MODEL.format(family=f, dataset=d, mode=m, ecut=ecut, split=split) in full)
    ]


#: transfer_from values that rank the whole sweep (mlff2d.transfer.CRITERIA), and what each
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
    return f"{DATA}/{wildcards.dataset}/export/{wildcards.family}/ecut~{wildcards.ecut}/split~{wildcards.split}"


def alloy_train_args(wildcards):
    """Arguments of `mlff2d train-alloy` from the config: lr, batch size, settings (the universal
    family's params overridden by the alloy ones), freezing, the transfer source and whether
    the element energies are refitted."""
    spec = ALLOY_FAMILY_CONFIG[wildcards.family]
    mode = spec[wildcards.mode]
    settings = {**UFF_FAMILIES[wildcards.family]["params"], **spec["params"]}
    if wildcards.mode == "transfer":  # element energies refitted on the alloy data, or kept
        settings["refit_element_energies"] = mode["refit_element_energies"]
    args = f"--mode {wildcards.mode} --lr {mode['lr']} --batch-size {mode['batch_size']} --params {shlex.quote(json.dumps(settings))}"
    if wildcards.mode == "transfer":
        points = " ".join(transfer_points(wildcards))
        args += f" --freeze-blocks {mode['freeze_blocks']} --transfer-from {shlex.quote(spec['transfer_from'])} --universal {points}"
    return args


#: The parser of ALLOY_MODEL (and CURVE_MODEL, which extends it), beside the pattern's users.
ALLOY_MODEL_RE = re.compile(
    rf"^{re.escape(ALLOYS)}/(?P<family>[^/]+)/(?P<dataset>[^/]+)/(?P<mode>[^/]+)/ecut~(?P<ecut>[^/]+)/split~(?P<split>[^/]+)(/|$)"
)


def alloy_exports():
    """The exports the alloy and learning-curve models train on (alloy_training_data of each;
    a learning-curve subset is cut from the same export)."""
    exports = []
    for model in alloy_models() + curve_models():
        export = alloy_training_data(SimpleNamespace(**ALLOY_MODEL_RE.match(model).groupdict()))
        if export not in exports:
            exports.append(export)
    return exports


def transfer_source_families():
    """Families whose universal sweep some transfer model starts from."""
    models = alloy_models() + curve_models()
    return sorted({m["family"] for m in (ALLOY_MODEL_RE.match(x) for x in models) if m["mode"] == "transfer"})


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
    families = " ".join(alloy_families()) or "m3gnet mace"
    return (
        f"--models {' '.join(models)} --sets {' '.join(ALLOY_RELAX_SETS)} --splits {' '.join(ALLOY_SPLITS)}"
        f" --families {families} --tolerance {LEARNING_CURVE['tolerance']} --baselines {ALLOY_BASELINES}"
    )


def alloy_table_outputs():
    from mlff2d.alloy_report import expected_outputs

    outputs = []
    for name in expected_outputs(ALLOY_SPLITS):
        path = f"{ALLOYS}/tables/{name}"
        if name.startswith("table_4_") and name.endswith(".html"):  # the tables in the HTML report
            table, _, split = name[: -len(".html")].partition("_split~")
            path = report(path, caption="../report/alloy_tables.rst", category=REPORT_CATEGORIES["alloys"],
                          labels={"item": f"Table {table[6:].replace('_', '.')}, split {split}"})
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
