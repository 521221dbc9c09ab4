# The HTML report (`snakemake --report report.html`): its categories, in the study's words and
# in the order of the study, and the label of every model page (mlff2d.io.labels).

from mlff2d.io.labels import FAMILY_NAMES, label_of, model_label

REPORT_CATEGORIES = {
    "campaign": "1 · Campaign: what finished, what failed, diagnostics",
    "data": "2 · Data (thesis 4.1)",
    "sweeps": "3 · Universal sweeps (thesis 4.2)",
    "relaxation": "4 · Relaxation test (thesis 4.1-4.2)",
    "tables": "5 · Tables 4.1-4.2 and maps",
    "alloys": "6 · Alloys: normal against transfer (thesis 4.3)",
    "formation": "7 · Formation energies (thesis 4.4)",
    "structure": "8 · Structure maps and novelty (beyond the thesis)",
}


def report_model(wildcards):
    """A model page's name in the report: the model's label, not its path."""
    return label_of(wildcards.model)


def report_set(wildcards):
    return f"{wildcards.relax_set} set"


def report_family(wildcards):
    return FAMILY_NAMES.get(wildcards.family, wildcards.family)


def curves_title(wildcards):
    """Title of a sweep's validation curves, quoted for the shell."""
    return shlex.quote(f"{report_family(wildcards)} sweep: validation MAE per epoch")


def report_labels(figure, model=None):
    """The labels of a model's figure (Snakemake wants them as one function returning a dict of
    strings): the model's label (or ``model``), its set and the figure."""

    def labels(wildcards):
        return {"model": model or report_model(wildcards), "set": report_set(wildcards), "figure": figure}

    return labels


def report_family_labels(figure):
    """The labels of a family's figure: the family's name and the figure."""

    def labels(wildcards):
        return {"family": report_family(wildcards), "figure": figure}

    return labels
