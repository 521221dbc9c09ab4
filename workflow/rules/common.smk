# The campaign's config, its results layout (mlff2d.layout), the environments, the wildcard
# constraints and the final targets. Each stage's input functions are in <stage>_helpers.smk.
import json
import os
import re
import shlex
from pathlib import Path
from types import SimpleNamespace

from snakemake.settings.types import DeploymentMethod

from mlff2d import layout
from mlff2d.config import fmt_float, split_ratios, split_repeats
from mlff2d.families import family_spec, family_names
from mlff2d.data.ingest import Source
from mlff2d.data.split import parse_split_instance, split_instances

CAMPAIGN = config["campaign"]
RESULTS = f"results/{CAMPAIGN}"
LOGS = f"{RESULTS}/logs"
BENCH = f"{RESULTS}/benchmarks"
DATA = f"{RESULTS}/data"
UNIVERSAL = layout.UNIVERSAL
COMBINED = layout.COMBINED
ECUTS = [fmt_float(x) for x in config["selection"]["e_cuts"]]
SPLIT_NAMES = list(config["splits"])
#: Per split name its instances (repeats): name, name.r1, ... (the {split} wildcard; mlff2d.data.split).
SPLIT_INSTANCES = {s: split_instances(s, split_repeats(config, s)) for s in SPLIT_NAMES}
#: Export formats written for every e_cut × split of every dataset although no rule reads them
#: (export.families); the exports the trainings read are derived from them (consumed_exports).
EXTRA_EXPORT_FAMILIES = config["export"]["families"]
UFF = f"{RESULTS}/uff"
UFF_SPLIT = config["uff"]["split"]
UFF_FAMILIES = config["uff"]["families"]
RELAX_SETS = config["relax"]["sets"]
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

# The results layout (mlff2d.layout), below results/<campaign>/.
POINT = f"{RESULTS}/{layout.SWEEP_POINT}"
REPEAT_POINT = f"{RESULTS}/{layout.REPEAT_POINT}"
ALLOY_MODEL = f"{RESULTS}/{layout.ALLOY_MODEL}"
CURVE_MODEL = f"{RESULTS}/{layout.CURVE_MODEL}"
CURVE_DATA = f"{RESULTS}/{layout.CURVE_DATA}"
SELECTED = f"{RESULTS}/{layout.SELECTED}"
SPLIT_CSV = f"{RESULTS}/{layout.SPLIT_CSV}"
EXPORT = f"{RESULTS}/{layout.EXPORT}"
RELAX_SETS_DIR = f"{RESULTS}/{layout.RELAX_SETS}"
TRAIN_ELEMENTS = f"{RESULTS}/{layout.TRAIN_ELEMENTS}"
STRUCTURE_MAP = f"{RESULTS}/{layout.STRUCTURE_MAP}"
ALLOY_BASELINE = f"{RESULTS}/{layout.ALLOY_BASELINE}"
FORMATION_ALLOY = f"{RESULTS}/{layout.FORMATION_ALLOY}"


def mlff2d_command(env):
    """The `mlff2d` command of environment `env` as jobs call it: the venv's (.venv/<env>, built by
    envs/setup.py) when it exists, else `mlff2d` on the PATH (for `--sdm conda`, where Snakemake
    activates envs/<env>.yml for the rule)."""
    venv_bin = Path(workflow.basedir) / ".venv" / env / "bin" / "mlff2d"
    if DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method or not venv_bin.exists():
        return "mlff2d"
    return str(venv_bin)


#: The environments of the campaign: main, and every family's (a NequIP family: nequip).
ENVS = sorted({"main", "nequip", *(family_spec(f).env for f in family_names())})
# Each environment's `mlff2d` reaches the jobs as MLFF2D_<ENV> (not a parameter of the rules: its
# absolute path would make a moved or copied campaign rerun every job).
os.environ.update({f"MLFF2D_{e.upper()}": mlff2d_command(e) for e in ENVS})


envvars:
    *[f"MLFF2D_{e.upper()}" for e in ENVS],


MAIN_ENV = "../../envs/main.yml"
NEQUIP_ENV = "../../envs/nequip.yml"


def family_env(wildcards):
    """The conda environment file of the rule's model family ({family}), for `--sdm conda`."""
    return f"../../envs/{family_spec(wildcards.family).env}.yml"


def family_env_name(wildcards):
    """MAIN or NEQUIP: the MLFF2D_<ENV> variable a family's jobs call."""
    return family_spec(wildcards.family).env.upper()


def model_env_name(wildcards):
    """family_env_name of the family saved with a model directory ({model})."""
    return family_env_name(SimpleNamespace(family=model_family(wildcards)))


wildcard_constraints:
    dataset="|".join(re.escape(d) for d in DATASETS),
    ecut=r"[0-9.e+-]+",
    split="|".join(re.escape(i) for s in SPLIT_NAMES for i in SPLIT_INSTANCES[s]) or "none",
    family="|".join(family_names()),
    fmt="|".join(sorted({family_spec(f).export_format for f in family_names()})),
    lr=r"[0-9.e+-]+",
    relax_set="train|val|test",
    shard=r"[0-9]+",
    bs=r"[0-9]+",
    mode="|".join(layout.MODES),
    frac=r"[0-9.e+-]+",
    model=r"(uff|alloys)/.+",


def all_targets():
    """The whole campaign."""
    targets = data_targets()
    for family, spec in UFF_FAMILIES.items():
        if spec["enabled"]:
            targets += sweep_targets(family)
    targets += relax_targets() + alloy_targets() + formation_targets() + repeat_targets() + structure_map_targets()
    return targets + [f"{RESULTS}/diagnostics.md"]
