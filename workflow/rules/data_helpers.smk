# Named helpers of the data rules (data.smk): sources, splits, selections and the data targets.

def data_sources(dataset):
    """The sources of a dataset as ingest Source objects."""
    return [Source(**s) for s in DATASETS[dataset]["sources"]]


def source_files(wildcards):
    """Every input file of the dataset's sources (ingest reruns when one changes); a source
    without files stops the run here, naming the source and the config key."""
    key = "data.sources" if wildcards.dataset == UNIVERSAL else "alloys.datasets"
    files = []
    for source in data_sources(wildcards.dataset):
        found = source.files()
        if not found:
            raise ValueError(
                f"data source {source.path!r} ({source.format}) of dataset {wildcards.dataset!r} matches no"
                f" input files; set {key} in your config (see README.md)"
            )
        files += [str(p) for p in found]
    return files


def source_args(wildcards):
    """The --source arguments of `mlff2d ingest`."""
    return " ".join(f"--source {shlex.quote(json.dumps(s))}" for s in DATASETS[wildcards.dataset]["sources"])


def split_input(wildcards):
    """What a split is made from: the material ledger, or for the combined alloy dataset the
    per-alloy splits (so a material is in the same set in both)."""
    if wildcards.dataset == COMBINED:
        return [SPLIT_CSV.format(dataset=a, split=wildcards.split) for a in ALLOY_NAMES]
    return f"{DATA}/{wildcards.dataset}/ledger_materials.csv"


def split_args(wildcards, input):
    """Arguments of `mlff2d split`."""
    if wildcards.dataset == COMBINED:
        return "--union " + " ".join(input)
    name, repeat = parse_split_instance(wildcards.split)
    ratios = " ".join(str(r) for r in split_ratios(config, name))
    return f"--ledger-materials {input[0]} --ratios {ratios} --seed {config['seed']}" + (f" --repeat {repeat}" if repeat else "")


def relax_set_names(wildcards):
    """The sets written for relaxation: val and test; the alloy datasets add train."""
    return " ".join(DATASETS[wildcards.dataset]["relax_sets"])


def dataset_selected(wildcards):
    """The step selections of every e_cut of a dataset."""
    return [SELECTED.format(dataset=wildcards.dataset, ecut=e) for e in DATASETS[wildcards.dataset]["e_cuts"]]


def selected_args(wildcards, input):
    """LABEL=PATH arguments of `mlff2d dataset-figures`."""
    return " ".join(f"{e}={p}" for e, p in zip(DATASETS[wildcards.dataset]["e_cuts"], input.selected))


def dataset_split_files(wildcards):
    """The split CSVs of every split of a dataset."""
    return [SPLIT_CSV.format(dataset=wildcards.dataset, split=s) for s in DATASETS[wildcards.dataset]["splits"]]


def split_file_args(wildcards, input):
    """NAME=PATH arguments of `mlff2d selection-summary`."""
    return " ".join(f"{s}={p}" for s, p in zip(DATASETS[wildcards.dataset]["splits"], input.splits))


#: Thesis fig. 6.13a, energy per atom per alloy dataset (stem of .png and .pdf).
ALLOY_ENERGY_FIGURE = f"{DATA}/alloy_figures/energy_per_atom"


def alloy_clean_stores(wildcards):
    return [f"{DATA}/{a}/clean.parquet" for a in ALLOY_NAMES]


def alloy_clean_args(wildcards, input):
    """ALLOY=PATH arguments of `mlff2d alloy-energy-figure`."""
    return " ".join(f"{a}={p}" for a, p in zip(ALLOY_NAMES, input))


def alloy_figure_targets():
    """The alloy dataset figures (thesis 6.10-6.13): the dataset figures of the combined alloy
    dataset (of each alloy when there is none) and the per-alloy energy overlay."""
    if not ALLOY_NAMES:
        return []
    datasets = [COMBINED] if COMBINED in DATASETS else ALLOY_NAMES
    return [f"{DATA}/{d}/figures" for d in datasets] + [f"{ALLOY_ENERGY_FIGURE}.png"]


def data_targets():
    """Every output of the data pipeline, for every dataset."""
    targets = []
    for name, d in DATASETS.items():
        root = f"{DATA}/{name}"
        targets.append(f"{root}/filter_summary.csv")
        targets.append(f"{root}/selection_summary.csv")
        targets += expand(SPLIT_CSV, dataset=name, split=d["splits"])
        targets += expand(RELAX_SETS_DIR, dataset=name, split=d["splits"])
        targets += expand(EXPORT, dataset=name, fmt=EXTRA_EXPORT_FAMILIES, ecut=d["e_cuts"], split=d["splits"])
    targets += [e for e in consumed_exports() if e not in targets]
    if config["figures"]["enabled"]:
        targets.append(f"{DATA}/{UNIVERSAL}/figures")
        targets += alloy_figure_targets()
    return targets


def data_inputs(wildcards):
    """Input function of `rule data` (evaluated once every .smk file is read)."""
    return data_targets()


def universal_exports():
    """The universal exports the sweeps read: uff_training_data of every sweep point of an
    enabled family, and of every point an alloy transfer may start from."""
    points = [(f, p) for f, spec in UFF_FAMILIES.items() if spec["enabled"] for p in sweep_points(f)]
    points += [(f, p) for f in transfer_source_families() for p in sweep_points(f)]
    exports = []
    for family, point in points:
        ecut = layout.model_parts(point)["ecut"]
        export = uff_training_data(SimpleNamespace(family=family, ecut=ecut))
        if export not in exports:
            exports.append(export)
    return exports


def consumed_exports():
    """Every export a training of the configured campaign reads: the sweeps' (universal_exports)
    and the alloy and learning-curve models' (alloy_exports in alloy_helpers.smk)."""
    return universal_exports() + [e for e in alloy_exports() if e not in universal_exports()]
