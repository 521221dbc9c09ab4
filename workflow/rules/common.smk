# Named helpers of the rules: paths, sweep values and input functions (no lambdas in rules).
import json
import os
import re
import shlex
from pathlib import Path
from types import SimpleNamespace

from snakemake.settings.types import DeploymentMethod

from snakemake.utils import Paramspace

from mlff2d.config import fmt_float, split_ratios, split_repeats
from mlff2d.ingest import Source
from mlff2d.split import parse_split_instance, split_instances
from mlff2d.sweep import grid_table

CAMPAIGN = config["campaign"]
RESULTS = f"results/{CAMPAIGN}"
DATA = f"{RESULTS}/data"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
ECUTS = [fmt_float(x) for x in config["selection"]["e_cuts"]]
SPLIT_NAMES = list(config["splits"])
#: Per split name its instances (repeats): name, name.r1, ... (the {split} wildcard; mlff2d.split).
SPLIT_INSTANCES = {s: split_instances(s, split_repeats(config, s)) for s in SPLIT_NAMES}
#: Families exported for every e_cut × split of every dataset although no rule reads them
#: (export.families); the exports the trainings read are derived from them (consumed_exports).
EXTRA_EXPORT_FAMILIES = config["export"]["families"]
UFF = f"{RESULTS}/uff"
UFF_SPLIT = config["uff"]["split"]
UFF_FAMILIES = config["uff"]["families"]
#: One Paramspace per model family: its sweep grid, expanded into ecut~<>/lr~<>/bs~<> paths.
PARAMSPACES = {f: Paramspace(grid_table(spec["grid"])) for f, spec in UFF_FAMILIES.items()}
#: A sweep point's directory, as a pattern with the wildcards family, ecut, lr, bs.
POINT = f"{UFF}/{{family}}/ecut~{{ecut}}/lr~{{lr}}/bs~{{bs}}"
RELAX_SETS = config["relax"]["sets"]
#: The universal dataset (data.sources), one per alloy, and "alloys" = all alloys combined.
UNIVERSAL = "2d"
COMBINED = "alloys"
ALLOY_ECUTS = [fmt_float(x) for x in config["alloys"]["e_cuts"]]
ALLOY_SPLITS = list(config["alloys"]["splits"])
ALLOY_NAMES = [d["name"] for d in config["alloys"]["datasets"]]
ALLOY_DATASETS = ALLOY_NAMES + ([COMBINED] if ALLOY_NAMES and config["alloys"]["combined"] else [])
#: Per dataset: its sources, e_cuts, splits and the sets written for relaxation.
DATASETS = {
    UNIVERSAL: {"sources": config["data"]["sources"], "e_cuts": ECUTS, "splits": SPLIT_NAMES, "relax_sets": ["val", "test"]},
}
for _alloy in config["alloys"]["datasets"]:
    DATASETS[_alloy["name"]] = {"sources": _alloy["sources"], "e_cuts": ALLOY_ECUTS, "splits": ALLOY_SPLITS, "relax_sets": ["train", "val", "test"]}
if COMBINED in ALLOY_DATASETS:
    DATASETS[COMBINED] = {
        "sources": [s for a in config["alloys"]["datasets"] for s in a["sources"]],
        "e_cuts": ALLOY_ECUTS,
        "splits": ALLOY_SPLITS,
        "relax_sets": ["train", "val", "test"],
    }
MAIN_ENV = "../../envs/main.yml"
NEQUIP_ENV = "../../envs/nequip.yml"


def mlff2d_command(env="main"):
    """The `mlff2d` command of environment `env` (main or nequip), as jobs call it. That is the venv
    (.venv/<env>, built by envs/setup.py) when it exists, else `mlff2d` on the PATH (for
    `--sdm conda`, where Snakemake activates envs/<env>.yml for the rule)."""
    venv_bin = Path(workflow.basedir) / ".venv" / env / "bin" / "mlff2d"
    if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method or not venv_bin.exists():
        return "mlff2d"
    return str(venv_bin)


# Rules of the main environment call plain `mlff2d`: put the main venv first on the PATH.
if mlff2d_command("main") != "mlff2d":
    os.environ.update(PATH=f"{Path(mlff2d_command('main')).parent}{os.pathsep}{os.environ.get('PATH', '')}")


wildcard_constraints:
    dataset="|".join(re.escape(d) for d in DATASETS),
    ecut=r"[0-9.e+-]+",
    split="|".join(re.escape(i) for s in SPLIT_NAMES for i in SPLIT_INSTANCES[s]) or "none",
    family="mace|m3gnet|nequip",
    lr=r"[0-9.e+-]+",
    relax_set="train|val|test",
    shard=r"[0-9]+",
    bs=r"[0-9]+",
    model=r"(uff|alloys)/.+",


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
        return [f"{DATA}/{a}/split~{wildcards.split}.csv" for a in ALLOY_NAMES]
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
    return [f"{DATA}/{wildcards.dataset}/selected/ecut~{e}.parquet" for e in DATASETS[wildcards.dataset]["e_cuts"]]


def selected_args(wildcards, input):
    """LABEL=PATH arguments of `mlff2d dataset-figures`."""
    return " ".join(f"{e}={p}" for e, p in zip(DATASETS[wildcards.dataset]["e_cuts"], input.selected))


def dataset_split_files(wildcards):
    """The split CSVs of every split of a dataset."""
    return [f"{DATA}/{wildcards.dataset}/split~{s}.csv" for s in DATASETS[wildcards.dataset]["splits"]]


def split_file_args(wildcards, input):
    """NAME=PATH arguments of `mlff2d selection-summary`."""
    return " ".join(f"{s}={p}" for s, p in zip(DATASETS[wildcards.dataset]["splits"], input.splits))


#: Per dataset and split: the training materials containing each element (mlff2d train-elements).
TRAIN_ELEMENTS = f"{DATA}/{{dataset}}/train_elements/split~{{split}}.csv"
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


def uff_training_data(wildcards):
    """The export a sweep point trains on: its family, its e_cut, the universal split (or, for
    a repeated point, its split instance)."""
    split = wildcards.split if hasattr(wildcards, "split") else UFF_SPLIT
    return f"{DATA}/{UNIVERSAL}/export/{wildcards.family}/ecut~{wildcards.ecut}/split~{split}"


def family_settings(wildcards):
    """The family's fixed training settings from the config, as a quoted JSON argument."""
    return shlex.quote(json.dumps(UFF_FAMILIES[wildcards.family]["params"]))


def training_resources(wildcards):
    """The resources block (gpu, gpu_model, constraint, cpus, mem_mb, runtime) of a training job:
    a NequIP formation model (wildcard fe_input), an alloy model (wildcard mode) or a universal
    sweep point. Every training rule takes its resources through the functions below."""
    if hasattr(wildcards, "fe_input"):
        return config["formation"]["nequip"]["resources"]
    if hasattr(wildcards, "mode"):
        return config["alloys"]["families"][wildcards.family]["resources"]
    return UFF_FAMILIES[wildcards.family]["resources"]


def training_threads(wildcards):
    return training_resources(wildcards)["cpus"]


def training_gpus(wildcards):
    return training_resources(wildcards)["gpu"]


def training_gpu_model(wildcards):
    return training_resources(wildcards).get("gpu_model")  # None (unset) is left out of sbatch


def training_constraint(wildcards):
    return training_resources(wildcards).get("constraint")  # None (unset) is left out of sbatch


def training_mem_mb(wildcards, attempt):
    """Memory of a training job, doubled on each retry."""
    return training_resources(wildcards)["mem_mb"] * 2 ** (attempt - 1)


def training_runtime(wildcards, attempt):
    """Wall time (minutes) of a training job, doubled on each retry."""
    return training_resources(wildcards)["runtime"] * 2 ** (attempt - 1)


def sweep_points(family):
    """The sweep point directories of a family."""
    return [f"{UFF}/{family}/{p}" for p in PARAMSPACES[family].instance_patterns]


def sweep_point_statuses(wildcards):
    return [f"{p}/status.json" for p in sweep_points(wildcards.family)]


def sweep_point_label(family, point):
    """A sweep point's label, its directory below uff/<family>/: ecut~<e>/lr~<lr>/bs~<bs>."""
    return point[len(f"{UFF}/{family}/"):]


def sweep_point_args(wildcards):
    """LABEL=DIR arguments of `mlff2d curves`."""
    return " ".join(f"{sweep_point_label(wildcards.family, p)}={p}" for p in sweep_points(wildcards.family))


def sweep_targets(family):
    """Everything one family's sweep produces."""
    return [f"{p}/status.json" for p in sweep_points(family)] + [f"{UFF}/{family}/validation_curves.png"]


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
    """(family, dataset, split) of a model directory (relative to RESULTS): uff/<family>/... is a
    universal sweep point (dataset 2d, split uff.split; a repeat uff/<family>/split~<instance>/...
    its split instance); alloys/<family>/<dataset>/... an alloy
    model whose split is its split~<name> segment."""
    parts = model.split("/")
    if parts[0] == "uff":  # uff/<family>/[split~<instance>/]ecut~...: a repeat names its split
        return parts[1], UNIVERSAL, parts[2].split("~", 1)[1] if parts[2].startswith("split~") else UFF_SPLIT
    split = next((p.split("~", 1)[1] for p in parts if p.startswith("split~")), None)
    if len(parts) < 3 or split is None:
        raise ValueError(f"not a model directory: {RESULTS}/{model} (expected alloys/<family>/<dataset>/.../split~<name>)")
    return parts[1], parts[2], split


def model_family(wildcards):
    return model_source(wildcards.model)[0]


def model_relax_sets(wildcards):
    """The relaxation-set folder (start and reference structures) of a model's dataset and split."""
    _, dataset, split = model_source(wildcards.model)
    return f"{DATA}/{dataset}/relax/split~{split}"


def relax_shard_paths(wildcards, ext):
    """The shard outputs of one model and set; the shard count is known once the relaxation
    sets exist (checkpoint relax_sets)."""
    _, dataset, split = model_source(wildcards.model)
    sets = checkpoints.relax_sets.get(dataset=dataset, split=split).output[0]
    from mlff2d.relax import n_shards

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
    from mlff2d.labels import label_of

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


def relax_targets():
    """Evaluations of every point and set, baselines, tables and periodic-table maps."""
    targets = [f"{RESULTS}/tables/table_4_1.csv", f"{RESULTS}/ptables/index.md"]
    targets += [f"{RESULTS}/baseline/{s}/summary.json" for s in RELAX_SETS]
    targets += [f"{p}/relax/{s}/summary.json" for _, p in evaluated_points() for s in RELAX_SETS]
    targets += [f for _, p in evaluated_points() for s in RELAX_SETS for f in evaluation_figures(p, s)]
    return targets


def data_targets():
    """Every output of the data pipeline, for every dataset."""
    targets = []
    for name, d in DATASETS.items():
        root = f"{DATA}/{name}"
        targets.append(f"{root}/filter_summary.csv")
        targets.append(f"{root}/selection_summary.csv")
        targets += expand(f"{root}/split~{{split}}.csv", split=d["splits"])
        targets += expand(f"{root}/relax/split~{{split}}", split=d["splits"])
        targets += expand(f"{root}/export/{{family}}/ecut~{{ecut}}/split~{{split}}", family=EXTRA_EXPORT_FAMILIES, ecut=d["e_cuts"], split=d["splits"])
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
        ecut = Path(point).parts[-3].split("~", 1)[1]
        export = uff_training_data(SimpleNamespace(family=family, ecut=ecut))
        if export not in exports:
            exports.append(export)
    return exports


def consumed_exports():
    """Every export a training of the configured campaign reads: the sweeps' (universal_exports)
    and the alloy and learning-curve models' (alloy_exports in alloy_helpers.smk)."""
    return universal_exports() + [e for e in alloy_exports() if e not in universal_exports()]


def all_targets():
    """The whole campaign."""
    targets = data_targets()
    for family, spec in UFF_FAMILIES.items():
        if spec["enabled"]:
            targets += sweep_targets(family)
    targets += relax_targets() + alloy_targets() + formation_targets() + repeat_targets() + structure_map_targets()
    return targets + [f"{RESULTS}/diagnostics.md"]


def write_campaign_provenance():
    """The resolved config and the provenance of this run, in results/<campaign>/."""
    from mlff2d.provenance import write_provenance

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
