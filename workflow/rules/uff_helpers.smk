# Named helpers of the universal sweeps (uff.smk): sweep points, training data, settings and resources.

def export_dir(dataset, family, ecut, split):
    """The export a model of `family` trains on: its dataset, training-file format, e_cut and split."""
    return EXPORT.format(dataset=dataset, fmt=family_spec(family).export_format, ecut=ecut, split=split)


def uff_training_data(wildcards):
    """The export a sweep point trains on: its family's format, its e_cut, the universal split."""
    return export_dir(UNIVERSAL, wildcards.family, wildcards.ecut, UFF_SPLIT)


def repeat_training_data(wildcards):
    """The export a repeated sweep point trains on: as uff_training_data, on its split instance."""
    return export_dir(UNIVERSAL, wildcards.family, wildcards.ecut, wildcards.split)


def family_settings(wildcards):
    """The family's fixed training settings from the config, as a quoted JSON argument."""
    return shlex.quote(json.dumps(UFF_FAMILIES[wildcards.family]["params"]))


def resource_functions(block):
    """The threads and resources functions of a training rule whose resources block (gpu,
    gpu_model, constraint, cpus, mem_mb, runtime) is block(wildcards); memory and wall time
    double on each retry."""
    return SimpleNamespace(
        threads=lambda wildcards: block(wildcards)["cpus"],
        gpu=lambda wildcards: block(wildcards)["gpu"],
        gpu_model=lambda wildcards: block(wildcards).get("gpu_model"),  # None (unset) is left out of sbatch
        constraint=lambda wildcards: block(wildcards).get("constraint"),
        mem_mb=lambda wildcards, attempt: block(wildcards)["mem_mb"] * 2 ** (attempt - 1),
        runtime=lambda wildcards, attempt: block(wildcards)["runtime"] * 2 ** (attempt - 1),
    )


#: The resources of a universal sweep point (uff.families.<family>.resources).
UFF_RESOURCES = resource_functions(lambda wildcards: UFF_FAMILIES[wildcards.family]["resources"])


def sweep_points(family):
    """The sweep point directories of a family."""
    return [f"{UFF}/{family}/{label}" for label in layout.sweep_labels(UFF_FAMILIES[family]["grid"])]


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
