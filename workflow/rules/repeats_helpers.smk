# Named helpers of repeats.smk: paths, targets and input functions.

REPEATS = config["repeats"]


def uff_repeat_models(family):
    """(label, [point directory of repeat 0, 1, ..., K-1]) of every repeated sweep point of family."""
    out = []
    for label in REPEATS["uff"].get(family, []):
        dirs = [f"{UFF}/{family}/{label}"]
        dirs += [REPEAT_POINT.format(family=family, split=s, **layout.label_parts(label)) for s in SPLIT_INSTANCES[UFF_SPLIT][1:]]
        out.append((label, dirs))
    return out


def uff_repeat_families():
    """Families with repeated sweep points, when uff.split has more than one repeat."""
    if len(SPLIT_INSTANCES[UFF_SPLIT]) < 2:
        return []
    return [f for f in REPEATS["uff"] if REPEATS["uff"][f] and UFF_FAMILIES[f]["enabled"]]


def alloy_repeat_models():
    """(row label, mode, [alloy model directory of repeat 0, 1, ...]) of every alloy model of the
    families in repeats.alloys whose split has more than one repeat."""
    out = []
    for model in alloy_models():
        m = layout.model_parts(model)
        if m["family"] not in REPEATS["alloys"]:
            continue
        instances = SPLIT_INSTANCES[m["split"]]
        if len(instances) > 1:
            row = model_label(m["family"], dataset=m["dataset"], ecut=m["ecut"], split=m["split"])
            out.append((row, m["mode"], [ALLOY_MODEL.format(**{**m, "split": s}) for s in instances]))
    return out


def repeat_summaries(wildcards):
    """The relaxation summaries a repeat table is built from."""
    if wildcards.table == "alloys":
        return [f"{d}/relax/{s}/summary.json" for _, _, dirs in alloy_repeat_models() for d in dirs for s in ALLOY_RELAX_SETS]
    family = REPEAT_TABLE_FAMILY[wildcards.table]
    return [f"{d}/relax/{s}/summary.json" for _, dirs in uff_repeat_models(family) for d in dirs for s in RELAX_SETS]


def repeat_table_args(wildcards):
    """Arguments of `mlff2d repeat-table`: ROW::COLUMN=DIR per model and repeat, sets and titles."""
    if wildcards.table == "alloys":
        models = [f"{row}::{mode}={d}" for row, mode, dirs in alloy_repeat_models() for d in dirs]
        sets, title, caption = ALLOY_RELAX_SETS, "", "Alloy relaxation MAE, normal vs transfer: mean ± std over split repeats"
    else:
        family = REPEAT_TABLE_FAMILY[wildcards.table]
        models = []
        for label, dirs in uff_repeat_models(family):
            point = layout.label_parts(label)
            models += [f"{model_label(lr=point['lr'], bs=point['bs'])}::{point['ecut']}={d}" for d in dirs]
        sets, title, caption = RELAX_SETS, "e_cut", f"{FAMILY_NAMES[family]} relaxation MAE: mean ± std over split repeats"
    return f"--models {' '.join(map(shlex.quote, models))} --sets {' '.join(sets)} --column-title {shlex.quote(title)} --caption {shlex.quote(caption)}"


#: Repeat table name -> family (the tables 4.1/4.2 stems of mlff2d.relaxation.tables), for the universal sweeps.
REPEAT_TABLE_FAMILY = {"table_4_1": "m3gnet", "table_4_2": "mace"}


def repeat_tables():
    """Names of the repeat tables of this campaign (results/<campaign>/tables/repeats/<name>.csv)."""
    names = [t for t, f in REPEAT_TABLE_FAMILY.items() if f in uff_repeat_families()]
    return names + (["alloys"] if alloy_repeat_models() else [])


def repeat_targets():
    """The repeat tables and, so that a dry run lists the repeat trainings, every repeated
    model's status.json (part of `rule all`)."""
    models = [d for f in uff_repeat_families() for _, dirs in uff_repeat_models(f) for d in dirs[1:]]
    models += [d for _, _, dirs in alloy_repeat_models() for d in dirs[1:]]
    return [f"{RESULTS}/tables/repeats/{t}.csv" for t in repeat_tables()] + [f"{m}/status.json" for m in models]
