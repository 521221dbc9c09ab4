# Named helpers of the formation-energy rules (workflow/rules/formation.smk): paths, settings and
# input functions (no lambdas in rules).

FORMATION = f"{RESULTS}/formation"
FORMATION_CONFIG = config["formation"]
#: The family of the alloy models whose relaxations are the NequIP inputs ML1 (normal) and ML2 (transfer).
FORMATION_ML_FAMILY = FORMATION_CONFIG["ml_family"]
#: The resources of a NequIP formation model (formation.nequip.resources).
FORMATION_RESOURCES = resource_functions(lambda wildcards: FORMATION_CONFIG["nequip"]["resources"])
#: The thesis's formation-energy alloys (the default of formation.alloys).
THESIS_FORMATION_ALLOYS = ["MoTaS2", "MoWS2", "NbMoS2", "TiTaS2"]
#: The alloy-model mode (of formation.ml_family) that relaxes the structures of each NequIP input.
FORMATION_MODES = {"ml1": "normal", "ml2": "transfer"}
#: The formation models with a parity figure in every run (the external CE only with a user table).
FORMATION_PARITY_MODELS = ["ce", "nequip_dft", "nequip_ml1", "nequip_ml2", "baseline"]
FORMATION_MODEL_NAMES = {"ce": "cluster expansion", "nequip_dft": "NequIP (DFT-relaxed)", "nequip_ml1": "NequIP (ML 1, normal)",
                         "nequip_ml2": "NequIP (ML 2, transfer)", "baseline": "composition only"}
#: The fe_alloy wildcard: a configured alloy dataset.
FE_ALLOY = "|".join(re.escape(a) for a in ALLOY_NAMES) or "none"


def formation_alloys():
    """The alloys of the formation study (none when disabled or no alloy is configured)."""
    if not FORMATION_CONFIG["enabled"]:
        return []
    chosen = FORMATION_CONFIG["alloys"]
    if chosen is None:
        return [a for a in THESIS_FORMATION_ALLOYS if a in ALLOY_NAMES]
    unknown = sorted(set(chosen) - set(ALLOY_NAMES))
    if unknown:
        raise ValueError(f"config key 'formation.alloys': {unknown} not in alloys.datasets {ALLOY_NAMES}")
    return list(chosen)


def formation_split():
    split = FORMATION_CONFIG["split"]
    if formation_alloys() and split not in ALLOY_SPLITS:
        raise ValueError(f"config key 'formation.split': {split!r} not in alloys.splits {ALLOY_SPLITS}")
    return split


def formation_ecut():
    return fmt_float(FORMATION_CONFIG["e_cut"])


def formation_ml_available():
    """True when alloy models of formation.ml_family exist at formation.e_cut on formation.split (else ML1/ML2
    are left out and show as '–')."""
    ml = config["alloys"]["families"].get(FORMATION_ML_FAMILY, {})
    if not ml.get("enabled", False):
        return False
    e_cuts = ml.get("e_cuts")
    e_cuts = ALLOY_ECUTS if e_cuts is None else [fmt_float(e) for e in e_cuts]
    splits = ml.get("splits")
    splits = ALLOY_SPLITS if splits is None else splits
    return formation_ecut() in e_cuts and formation_ecut() in ALLOY_ECUTS and formation_split() in splits


def formation_inputs():
    """The NequIP inputs to train (dft, ml1, ml2), without ML ones that have no alloy model."""
    inputs = list(FORMATION_CONFIG["inputs"])
    if not formation_ml_available():
        inputs = [i for i in inputs if i == "dft"]
    return inputs


def formation_relax_sets(wildcards):
    """The alloy's relaxation-set folder (start and DFT-relaxed reference structures)."""
    return RELAX_SETS_DIR.format(dataset=wildcards.fe_alloy, split=wildcards.fe_split)


def formation_table_input(wildcards):
    return [FORMATION_CONFIG["table"]["path"]] if FORMATION_CONFIG["source"] == "table" else []


def formation_table_args(wildcards):
    """--table ... arguments of `mlff2d formation-energies` (empty for source dataset)."""
    if FORMATION_CONFIG["source"] != "table":
        return ""
    t = FORMATION_CONFIG["table"]
    if not t["path"]:
        raise ValueError("config key 'formation.table.path': needed with formation.source: table")
    args = [f"--table {shlex.quote(t['path'])}", f"--id-column {shlex.quote(t['id_column'])}",
            f"--energy-column {shlex.quote(t['energy_column'])}", f"--unit {shlex.quote(t['unit'])}"]
    if t["external_ce_column"]:
        args.append(f"--external-ce-column {shlex.quote(t['external_ce_column'])}")
    if t["alloy_column"]:
        args.append(f"--alloy-column {shlex.quote(t['alloy_column'])}")
    return " ".join(args)


def formation_ml_model(wildcards):
    """The alloy model (formation.ml_family) whose relaxed structures are input ml1 (normal) or ml2 (transfer)."""
    mode = FORMATION_MODES[wildcards.fe_input]
    return ALLOY_MODEL.format(family=FORMATION_ML_FAMILY, dataset=wildcards.fe_alloy, mode=mode, ecut=formation_ecut(), split=wildcards.fe_split)


def formation_nequip_structures(wildcards):
    """The structures of one NequIP input: the DFT relaxation sets, or an ML model's relaxations."""
    if wildcards.fe_input == "dft":
        return {"sets": formation_relax_sets(wildcards)}
    model = formation_ml_model(wildcards)
    return {s: f"{model}/relax/{s}/final.extxyz" for s in ("train", "val", "test")}


def formation_nequip_set_args(wildcards, input):
    """--train/--val/--test arguments of `mlff2d formation-nequip`."""
    if wildcards.fe_input == "dft":
        return " ".join(f"--{s} {input.sets}/{s}_reference.extxyz" for s in ("train", "val", "test"))
    return " ".join(f"--{s} {input[s]}" for s in ("train", "val", "test"))


def formation_nequip_params(wildcards):
    """The NequIP settings (formation.nequip without resources), as a quoted JSON argument."""
    params = {k: v for k, v in FORMATION_CONFIG["nequip"].items() if k != "resources"}
    gpus = FORMATION_CONFIG["nequip"]["resources"]["gpu"]
    if gpus:  # the GPUs SLURM grants the job: one rank each
        params.update(device="cuda", devices=gpus)
    return shlex.quote(json.dumps(params))


def formation_ce_settings(wildcards):
    return shlex.quote(json.dumps(FORMATION_CONFIG["ce"]))


def formation_alloy_dirs():
    return [FORMATION_ALLOY.format(fe_alloy=a, fe_split=formation_split()) for a in formation_alloys()]


def formation_report_inputs(wildcards):
    """Everything the report reads, for every formation alloy."""
    inputs = []
    for d in formation_alloy_dirs():
        inputs += [f"{d}/formation_energies.csv", f"{d}/ce/summary.json", f"{d}/baseline/summary.json"]
        inputs += [f"{d}/nequip/{i}/status.json" for i in formation_inputs()]
    return inputs


def formation_report_args(wildcards):
    """ALLOY=DIR arguments of `mlff2d formation-report`."""
    return " ".join(f"{a}={d}" for a, d in zip(formation_alloys(), formation_alloy_dirs()))


def formation_targets():
    """Everything the formation-energy stage produces (part of `rule all`)."""
    if not formation_alloys():
        return []
    return [f"{FORMATION}/report/{t}.csv" for t in ("table_4_8", "table_4_9", "table_6_2")]
