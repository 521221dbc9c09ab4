# Named helpers of structure_maps.smk: paths, targets and input functions.

STRUCTURE_MAPS = config["structure_maps"]


def model_structures(wildcards):
    """structures.csv of the model's dataset and split."""
    _, dataset, split = model_source(wildcards.model)
    return f"{STRUCTURE_MAP.format(dataset=dataset, split=split)}/structures.csv"


def novelty_models():
    """(model directory relative to RESULTS, set) of every evaluated sweep point and alloy model."""
    models = [(p, s) for _, p in evaluated_points() for s in RELAX_SETS]
    models += [(m, s) for m in alloy_models() for s in ALLOY_RELAX_SETS]
    return [(m[len(RESULTS) + 1:], s) for m, s in models]


def novelty_summaries(wildcards):
    return [f"{RESULTS}/{m}/relax/{s}/novelty.json" for m, s in novelty_models()]


def novelty_args(wildcards, input):
    """MODEL=PATH arguments of `mlff2d novelty-table`."""
    return " ".join(f"{m}:{s}={f}" for (m, s), f in zip(novelty_models(), input))


def structure_map_targets():
    """Every dataset's map (its configured splits, repeat 0) and the novelty table (part of `all`)."""
    if not STRUCTURE_MAPS["enabled"]:
        return []
    targets = [f"{STRUCTURE_MAP.format(dataset=d, split=s)}/map.png" for d, spec in DATASETS.items() for s in spec["splits"]]
    return targets + ([f"{RESULTS}/tables/novelty.csv"] if novelty_models() else [])
