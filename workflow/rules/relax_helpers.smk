# Named helpers of the relaxation rules (relax.smk): a model's sets, shards, evaluations and tables.

def relax_gpus(wildcards):
    """GPUs of a relaxation job (relax.gpu; 0 runs on the CPU)."""
    return config["relax"]["gpu"]


def relax_mem_mb(wildcards, attempt):
    """Memory of a relaxation job, doubled on each retry."""
    return config["relax"]["mem_mb"] * 2 ** (attempt - 1)


def relax_runtime(wildcards, attempt):
    """Wall time (minutes) of a relaxation job, doubled on each retry."""
    return config["relax"]["runtime"] * 2 ** (attempt - 1)


def model_source(model):
    """(family, dataset, split) of a model directory (relative to RESULTS), from mlff2d.layout."""
    return layout.model_source(model, UFF_SPLIT)


def model_family(wildcards):
    return model_source(wildcards.model)[0]


def model_env(wildcards):
    """The conda environment file of the family of a model directory ({model})."""
    return family_env(SimpleNamespace(family=model_family(wildcards)))


def model_relax_sets(wildcards):
    """The relaxation-set folder (start and reference structures) of a model's dataset and split."""
    _, dataset, split = model_source(wildcards.model)
    return RELAX_SETS_DIR.format(dataset=dataset, split=split)


def relax_shard_paths(wildcards, ext):
    """The shard outputs of one model and set; the shard count is known once the relaxation
    sets exist (checkpoint relax_sets)."""
    _, dataset, split = model_source(wildcards.model)
    sets = checkpoints.relax_sets.get(dataset=dataset, split=split).output[0]
    from mlff2d.relaxation.relax import n_shards

    n = n_shards(f"{sets}/{wildcards.relax_set}_start.extxyz", config["relax"]["shard_size"])
    return [f"{RESULTS}/{wildcards.model}/relax/{wildcards.relax_set}/shards/{k}.{ext}" for k in range(n)]


def relax_shard_records(wildcards):
    return relax_shard_paths(wildcards, "parquet")


def relax_shard_structures(wildcards):
    return relax_shard_paths(wildcards, "extxyz")


def model_train_elements(wildcards):
    """The element counts of the training materials of a model's dataset and split."""
    _, dataset, split = model_source(wildcards.model)
    return TRAIN_ELEMENTS.format(dataset=dataset, split=split)


#: The figures of one evaluated run beyond parity and element maps (thesis 6.6, 6.15-6.24, 4.2).
EVALUATION_FIGURES = ("error_distributions", "spacegroup_mae", "element_frequency")


def evaluation_figures(model_dir, relax_set):
    """The PNGs of EVALUATION_FIGURES of one model directory and set."""
    return [f"{model_dir}/relax/{relax_set}/{name}.png" for name in EVALUATION_FIGURES]


def evaluation_title(wildcards):
    """Figure title of one model's evaluation, quoted for the shell."""
    from mlff2d.io.labels import label_of

    return shlex.quote(f"{label_of(wildcards.model)} · {wildcards.relax_set} set")


#: Targets that collect what has finished when asked for alone (or together).
COLLECTING_TARGETS = {"tables", "ptables", "alloy_tables"}


def collect_finished_only():
    """True when the run asks only for `tables`, `ptables` and/or `alloy_tables`: they then
    collect whatever has finished and never start a training; in a full run they wait for
    every model."""
    targets = set(workflow.dag_settings.targets) if workflow.dag_settings else set()
    return bool(targets) and targets <= COLLECTING_TARGETS


def evaluated_points():
    """(family, point directory) of every enabled sweep point."""
    return [(f, p) for f, spec in UFF_FAMILIES.items() if spec["enabled"] for p in sweep_points(f)]


def table_inputs(wildcards):
    """Evaluation summaries the tables are built from, and the baselines."""
    finished_only = collect_finished_only()
    inputs = [f"{RESULTS}/baseline/{s}/summary.json" for s in RELAX_SETS]
    for _, point in evaluated_points():
        if finished_only and not Path(f"{point}/status.json").exists():
            continue
        inputs += [f"{point}/relax/{s}/summary.json" for s in RELAX_SETS]
    return inputs


def table_point_args(wildcards):
    """FAMILY=POINT_DIR arguments: every expected point (missing ones show as '–')."""
    return " ".join(f"{f}={p}" for f, p in evaluated_points())


def table_families():
    """The families with a relaxation table: every enabled family of uff.families."""
    return [f for f, spec in UFF_FAMILIES.items() if spec["enabled"]]


def relaxation_table_outputs():
    """The outputs of one family's relaxation table (its FamilySpec.table) per table family."""
    outputs = []
    for family in table_families():
        spec = family_spec(family)
        item = f"Table {spec.table[len('table_'):].replace('_', '.')}: {spec.label}" if spec.table[6:7].isdigit() else f"{spec.label} relaxation table"
        outputs.append(report(f"{RESULTS}/tables/{spec.table}.html", caption="../report/tables.rst", category=REPORT_CATEGORIES["tables"], labels={"table": item}))
        outputs += multiext(f"{RESULTS}/tables/{spec.table}", ".csv", ".md", ".tex")
    return outputs


def relax_targets():
    """Evaluations of every point and set, baselines, tables and periodic-table maps."""
    targets = [f"{RESULTS}/tables/relaxation_summary.csv", f"{RESULTS}/ptables/index.md"]
    targets += [f"{RESULTS}/baseline/{s}/summary.json" for s in RELAX_SETS]
    targets += [f"{p}/relax/{s}/summary.json" for _, p in evaluated_points() for s in RELAX_SETS]
    targets += [f for _, p in evaluated_points() for s in RELAX_SETS for f in evaluation_figures(p, s)]
    return targets
