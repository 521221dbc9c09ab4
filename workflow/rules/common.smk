# Named helpers of the rules: paths, sweep values and input functions (no lambdas in rules).
import json
import os
import shlex
from pathlib import Path

from snakemake.settings.types import DeploymentMethod

from snakemake.utils import Paramspace

from mlff2d.config import fmt_float
from mlff2d.ingest import Source
from mlff2d.sweep import grid_table

CAMPAIGN = config["campaign"]
RESULTS = f"results/{CAMPAIGN}"
DATA = f"{RESULTS}/data"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
ECUTS = [fmt_float(x) for x in config["selection"]["e_cuts"]]
SPLIT_NAMES = list(config["splits"])
FAMILIES = config["export"]["families"]
UFF = f"{RESULTS}/uff"
UFF_SPLIT = config["uff"]["split"]
UFF_FAMILIES = config["uff"]["families"]
#: One Paramspace per model family: its sweep grid, expanded into ecut~<>/lr~<>/bs~<> paths.
PARAMSPACES = {f: Paramspace(grid_table(spec["grid"])) for f, spec in UFF_FAMILIES.items()}
#: A sweep point's directory, as a pattern with the wildcards family, ecut, lr, bs.
POINT = f"{UFF}/{{family}}/ecut~{{ecut}}/lr~{{lr}}/bs~{{bs}}"
RELAX_SETS = config["relax"]["sets"]
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
    ecut=r"[0-9.e+-]+",
    split="|".join(SPLIT_NAMES) or "none",
    family="mace|m3gnet|nequip",
    lr=r"[0-9.e+-]+",
    relax_set="val|test",
    shard=r"[0-9]+",
    bs=r"[0-9]+",


def data_sources():
    """The configured sources as ingest Source objects."""
    return [Source(**s) for s in config["data"]["sources"]]


def source_files(wildcards):
    """Every input file of every source (ingest reruns when one changes); a source without
    files stops the run here, naming the source."""
    files = []
    for source in data_sources():
        found = source.files()
        if not found:
            raise ValueError(
                f"data source {source.path!r} ({source.format}) matches no input files;"
                " set data.sources in your config (see README.md)"
            )
        files += [str(p) for p in found]
    return files


def source_args(wildcards):
    """The --source arguments of `mlff2d ingest`."""
    return " ".join(f"--source {shlex.quote(json.dumps(s))}" for s in config["data"]["sources"])


def split_ratios(wildcards):
    """TRAIN VAL TEST of a named split."""
    return " ".join(str(r) for r in config["splits"][wildcards.split])


def selected_args(wildcards, input):
    """LABEL=PATH arguments of `mlff2d dataset-figures`."""
    return " ".join(f"{e}={p}" for e, p in zip(ECUTS, input.selected))


def uff_training_data(wildcards):
    """The export a sweep point trains on: its family, its e_cut, the universal split."""
    return f"{DATA}/export/{wildcards.family}/ecut~{wildcards.ecut}/split~{UFF_SPLIT}"


def family_settings(wildcards):
    """The family's fixed training settings from the config, as a quoted JSON argument."""
    return shlex.quote(json.dumps(UFF_FAMILIES[wildcards.family]["params"]))


def training_threads(wildcards):
    return UFF_FAMILIES[wildcards.family]["resources"]["cpus"]


def training_gpus(wildcards):
    return UFF_FAMILIES[wildcards.family]["resources"]["gpu"]


def training_gpu_model(wildcards):
    return UFF_FAMILIES[wildcards.family]["resources"]["gpu_model"] or ""


def training_mem_mb(wildcards, attempt):
    """Memory of a training job, doubled on each retry."""
    return UFF_FAMILIES[wildcards.family]["resources"]["mem_mb"] * 2 ** (attempt - 1)


def training_runtime(wildcards, attempt):
    """Wall time (minutes) of a training job, doubled on each retry."""
    return UFF_FAMILIES[wildcards.family]["resources"]["runtime"] * 2 ** (attempt - 1)


def sweep_points(family):
    """The sweep point directories of a family."""
    return [f"{UFF}/{family}/{p}" for p in PARAMSPACES[family].instance_patterns]


def sweep_point_statuses(wildcards):
    return [f"{p}/status.json" for p in sweep_points(wildcards.family)]


def sweep_point_args(wildcards):
    """LABEL=DIR arguments of `mlff2d curves`."""
    return " ".join(f"{p[len(UFF) + len(wildcards.family) + 2:]}={p}" for p in sweep_points(wildcards.family))


def sweep_targets(family):
    """Everything one family's sweep produces."""
    return [f"{p}/status.json" for p in sweep_points(family)] + [f"{UFF}/{family}/validation_curves.png"]


def relax_mem_mb(wildcards, attempt):
    """Memory of a relaxation job, doubled on each retry."""
    return config["relax"]["mem_mb"] * 2 ** (attempt - 1)


def relax_runtime(wildcards, attempt):
    """Wall time (minutes) of a relaxation job, doubled on each retry."""
    return config["relax"]["runtime"] * 2 ** (attempt - 1)


def relax_shard_paths(wildcards, ext):
    """The shard outputs of one point and set; the shard count is known once the relaxation
    sets exist (checkpoint relax_sets)."""
    sets = checkpoints.relax_sets.get(split=UFF_SPLIT).output[0]
    from mlff2d.relax import n_shards

    n = n_shards(f"{sets}/{wildcards.relax_set}_start.extxyz", config["relax"]["shard_size"])
    point = POINT.format(**wildcards)
    return [f"{point}/relax/{wildcards.relax_set}/shards/{k}.{ext}" for k in range(n)]


def relax_shard_records(wildcards):
    return relax_shard_paths(wildcards, "parquet")


def relax_shard_structures(wildcards):
    return relax_shard_paths(wildcards, "extxyz")


def evaluation_title(wildcards):
    """Figure title of one point's evaluation, quoted for the shell."""
    return shlex.quote(f"{wildcards.family} ecut {wildcards.ecut}, lr {wildcards.lr}, bs {wildcards.bs}: {wildcards.relax_set}")


def collect_finished_only():
    """True when the run asks only for `tables`/`ptables`: they then collect whatever has
    finished and never start a training; in a full run they wait for every sweep point."""
    targets = set(workflow.dag_settings.targets) if workflow.dag_settings else set()
    return bool(targets) and targets <= {"tables", "ptables"}


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
    return targets


def data_targets():
    """Every output of the data pipeline."""
    targets = [f"{DATA}/filter_summary.csv"]
    targets += expand(f"{DATA}/split~{{split}}.csv", split=SPLIT_NAMES)
    targets += expand(f"{DATA}/relax/split~{{split}}", split=SPLIT_NAMES)
    targets += expand(f"{DATA}/export/{{family}}/ecut~{{ecut}}/split~{{split}}", family=FAMILIES, ecut=ECUTS, split=SPLIT_NAMES)
    if config["figures"]["enabled"]:
        targets.append(f"{DATA}/figures")
    return targets


def all_targets():
    """The whole campaign."""
    targets = data_targets()
    for family, spec in UFF_FAMILIES.items():
        if spec["enabled"]:
            targets += sweep_targets(family)
    return targets + relax_targets()


def write_campaign_provenance():
    """The resolved config and the provenance of this run, in results/<campaign>/."""
    from mlff2d.provenance import write_provenance

    write_provenance(RESULTS, config)


def campaign_summary():
    """Where a finished campaign's tables and figures are."""
    lines = [f"\nmlff2d: campaign '{CAMPAIGN}' is complete. Results are in {RESULTS}/:"]
    lines.append(f"  relaxation tables 4.1/4.2: {RESULTS}/tables/ (CSV, Markdown, LaTeX)")
    lines.append(f"  periodic-table maps:       {RESULTS}/ptables/index.md")
    lines.append(f"  sweeps:                    {UFF}/<family>/validation_curves.png, <point>/relax/<set>/")
    lines.append(f"  baselines:                 {RESULTS}/baseline/<set>/")
    lines.append(f"  data ledger and counts:    {DATA}/ledger_materials.csv, {DATA}/filter_summary.csv")
    if config["figures"]["enabled"]:
        lines.append(f"  dataset figures:           {DATA}/figures/ (PNG + PDF)")
    lines.append(f"  run times per job:         {BENCH}/ (bench/demo_times.py {RESULTS})")
    return "\n".join(lines)
