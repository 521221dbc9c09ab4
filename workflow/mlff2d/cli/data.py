"""``mlff2d`` data stages (workflow/rules/data.smk): ingest, outlier filter, step selection,
splits, training exports, relaxation sets and the dataset figures."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mlff2d.cli._common import label_path, log, schema_option, stage


def cmd_ingest(args: argparse.Namespace) -> None:
    from mlff2d.data.ingest import Source, ingest

    sources = [Source(**json.loads(s)) for s in args.source]
    table = ingest(sources, args.frames, args.materials, min_vacuum=args.min_vacuum, workers=args.workers)
    log.info("ingested %d materials, %d frames", len(table), int(table["n_frames"].sum()))


#: The outlier limits: (flag, config key, type, help).
OUTLIER_OPTIONS = (
    ("--max-sites", "outliers.max_sites", int, None),
    ("--energy-min", "outliers.energy_min", float, "eV/atom"),
    ("--energy-max", "outliers.energy_max", float, "eV/atom"),
    ("--force-max", "outliers.force_max", float, "eV/Å"),
    ("--stress-max-kbar", "outliers.stress_max_kbar", float, "kbar"),
    ("--isolation-cutoff", "outliers.isolation_cutoff", float, "Å"),
)


def cmd_filter(args: argparse.Namespace) -> None:
    from mlff2d.data.outliers import OutlierLimits, remove_outliers

    limits = OutlierLimits(
        max_sites=args.max_sites,
        energy_min=args.energy_min,
        energy_max=args.energy_max,
        force_max=args.force_max,
        stress_max_kbar=args.stress_max_kbar,
        isolation_cutoff=args.isolation_cutoff,
        scope=args.scope,
    )
    mats = remove_outliers(args.frames, args.materials, args.clean, args.ledger_frames, args.ledger_materials, args.summary, limits)
    log.info("kept %d of %d materials", int((mats["reason"] == "kept").sum()), len(mats))


def cmd_select(args: argparse.Namespace) -> None:
    from mlff2d.data.select_steps import select_dataset

    sel = select_dataset(args.clean, args.out, args.e_cut, args.fallback, args.keep_last)
    log.info("e_cut %g: %d frames selected", args.e_cut, len(sel))


def cmd_selection_summary(args: argparse.Namespace) -> None:
    from mlff2d.data.select_steps import selection_summary

    selected = dict(label_path(a) for a in args.selected)
    splits = dict(label_path(a) for a in args.splits)
    summary = selection_summary(args.clean, selected, splits, args.fallback)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    summary.to_csv(args.out, index=False, lineterminator="\n")
    log.info("wrote %s (%d rows)", args.out, len(summary))


def cmd_split(args: argparse.Namespace) -> None:
    from mlff2d.data.split import repeat_seed, split_dataset, union_splits

    if args.union:
        result = union_splits(args.union, args.out)
    elif args.ledger_materials and args.ratios:
        result = split_dataset(args.ledger_materials, args.out, args.ratios, repeat_seed(args.seed, args.repeat))
    else:
        raise SystemExit("mlff2d split: give --ledger-materials and --ratios, or --union")
    log.info("split: %s", result["split"].value_counts().to_dict())


def cmd_export(args: argparse.Namespace) -> None:
    from mlff2d.data.export import export_family

    counts = export_family(args.clean, args.selected, args.split, args.family, args.outdir)
    log.info("%s export: %s frames", args.family, counts)


def cmd_relax_sets(args: argparse.Namespace) -> None:
    from mlff2d.data.export import export_relax_sets

    counts = export_relax_sets(args.clean, args.split, args.outdir, sets=args.sets)
    log.info("relaxation sets: %s materials", counts)


def cmd_dataset_figures(args: argparse.Namespace) -> None:
    from mlff2d.data.figures import make_dataset_figures

    selected = dict(item.split("=", 1) for item in args.selected)
    paths = make_dataset_figures(Path(args.clean), {k: Path(v) for k, v in selected.items()}, Path(args.outdir))
    log.info("wrote %d figure files to %s", len(paths), args.outdir)


def cmd_train_elements(args: argparse.Namespace) -> None:
    from mlff2d.data.figures import training_element_counts

    counts = training_element_counts(Path(args.clean), Path(args.split))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    counts.to_csv(args.out, index=False, lineterminator="\n")
    log.info("%d elements in the training materials", len(counts))


def cmd_alloy_energy_figure(args: argparse.Namespace) -> None:
    from mlff2d.data.figures import energy_overlay_figure

    cleans = {k: Path(v) for k, v in (item.split("=", 1) for item in args.clean)}
    log.info("wrote %s", energy_overlay_figure(cleans, Path(args.out).with_suffix("")))


def add_commands(sub: Any) -> None:
    """Register the data stages' sub-commands."""
    _add_ingest_filter(sub)
    _add_select_split(sub)
    _add_exports(sub)
    _add_figures(sub)


def _add_ingest_filter(sub: Any) -> None:
    s = stage(sub, "ingest", "read DFT trajectories into the frame store")
    s.add_argument("--source", action="append", required=True,
                   help='JSON object: {"path": ..., "format": ..., "stress_unit": ...}; repeat for several')
    s.add_argument("--frames", required=True, help="output frame store (.parquet)")
    s.add_argument("--materials", required=True, help="output materials table (.csv)")
    schema_option(s, "--min-vacuum", "data.min_vacuum", type=float, help="Å of vacuum along z")
    s.add_argument("--workers", type=int, default=1, help="processes reading files in parallel")
    s.set_defaults(func=cmd_ingest)

    s = stage(sub, "filter", "remove outliers and write the ledger")
    for name in ("frames", "materials", "clean", "ledger-frames", "ledger-materials", "summary"):
        s.add_argument(f"--{name}", required=True)
    for flag, key, kind, help in OUTLIER_OPTIONS:
        schema_option(s, flag, key, type=kind, help=help)
    schema_option(s, "--scope", "outliers.scope", choices=("material", "frame"))
    s.set_defaults(func=cmd_filter)


def _add_select_split(sub: Any) -> None:
    s = stage(sub, "select", "select relaxation steps by e_cut")
    s.add_argument("--clean", required=True)
    s.add_argument("--e-cut", type=float, required=True, help="eV/atom")
    schema_option(s, "--fallback", "selection.fallback", type=float, nargs="+")
    s.add_argument("--keep-last", action="store_true")  # the rule passes it when selection.keep_last is true
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_select)

    s = stage(sub, "selection-summary", "materials and frames per e_cut and per train/val/test (thesis 4.1)")
    s.add_argument("--clean", required=True)
    s.add_argument("--selected", nargs="+", required=True, help="E_CUT=PATH of each selection")
    s.add_argument("--splits", nargs="*", default=[], help="NAME=PATH of each split CSV")
    schema_option(s, "--fallback", "selection.fallback", type=float, nargs="+")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_selection_summary)

    s = stage(sub, "split", "split materials into train/val/test")
    s.add_argument("--ledger-materials", help="material ledger of the dataset to split")
    s.add_argument("--ratios", type=float, nargs=3, metavar=("TRAIN", "VAL", "TEST"))
    schema_option(s, "--seed", "seed", type=int)
    s.add_argument("--repeat", type=int, default=0, help="split repeat k (0 = the plain split; k >= 1 draws mlff2d.data.split.repeat_seed)")
    s.add_argument("--union", nargs="+", help="instead: combine these split CSVs (the combined alloy dataset)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_split)


def _add_exports(sub: Any) -> None:
    s = stage(sub, "export", "write a model family's train/val/test files")
    s.add_argument("--family", choices=("mace", "m3gnet", "nequip"), required=True)
    s.add_argument("--clean", required=True)
    s.add_argument("--selected", required=True)
    s.add_argument("--split", required=True)
    s.add_argument("--outdir", required=True)
    s.set_defaults(func=cmd_export)

    s = stage(sub, "relax-sets", "write start and reference structures of val/test (and train)")
    s.add_argument("--clean", required=True)
    s.add_argument("--split", required=True)
    s.add_argument("--sets", nargs="+", choices=("train", "val", "test"), default=["val", "test"])
    s.add_argument("--outdir", required=True)
    s.set_defaults(func=cmd_relax_sets)


def _add_figures(sub: Any) -> None:
    s = stage(sub, "dataset-figures", "element, space-group and label distributions")
    s.add_argument("--clean", required=True)
    s.add_argument("--selected", nargs="+", default=[], help="LABEL=PATH for each e_cut")
    s.add_argument("--outdir", required=True)
    s.set_defaults(func=cmd_dataset_figures)

    s = stage(sub, "train-elements", "training materials containing each element")
    s.add_argument("--clean", required=True)
    s.add_argument("--split", required=True, help="split CSV (material_id, split)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_train_elements)

    s = stage(sub, "alloy-energy-figure", "energy per atom of each alloy dataset (thesis fig. 6.13)")
    s.add_argument("--clean", nargs="+", required=True, help="ALLOY=clean.parquet")
    s.add_argument("--out", required=True, help="the PNG (the PDF is written beside it)")
    s.set_defaults(func=cmd_alloy_energy_figure)
