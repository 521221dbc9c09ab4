"""``mlff2d <stage> ...``: the command line every Snakemake rule calls (and users can run by hand).

Thread counts are set before NumPy or torch are imported: ``--threads`` (default 1) sets
OMP/OpenBLAS/MKL threads and torch's intra-op threads for the stage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("mlff2d")


def _set_threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = str(n)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def _relax_default(key: str) -> object:
    """The config schema's default of ``relax.<key>`` (a setting has one default: the schema)."""
    from mlff2d.config import load_schema

    return load_schema()["properties"]["relax"]["properties"][key]["default"]


def cmd_ingest(args: argparse.Namespace) -> None:
    from mlff2d.ingest import Source, ingest

    sources = [Source(**json.loads(s)) for s in args.source]
    table = ingest(sources, args.frames, args.materials, min_vacuum=args.min_vacuum, workers=args.workers)
    log.info("ingested %d materials, %d frames", len(table), int(table["n_frames"].sum()))


def cmd_filter(args: argparse.Namespace) -> None:
    from mlff2d.outliers import OutlierLimits, remove_outliers

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
    from mlff2d.select_steps import select_dataset

    sel = select_dataset(args.clean, args.out, args.e_cut, args.fallback, args.keep_last)
    log.info("e_cut %g: %d frames selected", args.e_cut, len(sel))


def cmd_selection_summary(args: argparse.Namespace) -> None:
    from mlff2d.select_steps import selection_summary

    selected = dict(_label_path(a) for a in args.selected)
    splits = dict(_label_path(a) for a in args.splits)
    summary = selection_summary(args.clean, selected, splits, args.fallback)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    summary.to_csv(args.out, index=False, lineterminator="\n")
    log.info("wrote %s (%d rows)", args.out, len(summary))


def _label_path(text: str) -> tuple[str, str]:
    label, sep, path = text.partition("=")
    if not sep:
        raise SystemExit(f"expected LABEL=PATH, got {text!r}")
    return label, path


def cmd_split(args: argparse.Namespace) -> None:
    from mlff2d.split import repeat_seed, split_dataset, union_splits

    if args.union:
        result = union_splits(args.union, args.out)
    elif args.ledger_materials and args.ratios:
        result = split_dataset(args.ledger_materials, args.out, args.ratios, repeat_seed(args.seed, args.repeat))
    else:
        raise SystemExit("mlff2d split: give --ledger-materials and --ratios, or --union")
    log.info("split: %s", result["split"].value_counts().to_dict())


def cmd_export(args: argparse.Namespace) -> None:
    from mlff2d.export import export_family

    counts = export_family(args.clean, args.selected, args.split, args.family, args.outdir)
    log.info("%s export: %s frames", args.family, counts)


def cmd_relax_sets(args: argparse.Namespace) -> None:
    from mlff2d.export import export_relax_sets

    counts = export_relax_sets(args.clean, args.split, args.outdir, sets=args.sets)
    log.info("relaxation sets: %s materials", counts)


def cmd_dataset_figures(args: argparse.Namespace) -> None:
    from mlff2d.dataset_figures import make_dataset_figures

    selected = dict(item.split("=", 1) for item in args.selected)
    paths = make_dataset_figures(Path(args.clean), {k: Path(v) for k, v in selected.items()}, Path(args.outdir))
    log.info("wrote %d figure files to %s", len(paths), args.outdir)


def cmd_train_elements(args: argparse.Namespace) -> None:
    from mlff2d.dataset_figures import training_element_counts

    counts = training_element_counts(Path(args.clean), Path(args.split))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    counts.to_csv(args.out, index=False, lineterminator="\n")
    log.info("%d elements in the training materials", len(counts))


def cmd_alloy_energy_figure(args: argparse.Namespace) -> None:
    from mlff2d.dataset_figures import energy_overlay_figure

    cleans = {k: Path(v) for k, v in (item.split("=", 1) for item in args.clean)}
    log.info("wrote %s", energy_overlay_figure(cleans, Path(args.out).with_suffix("")))


def training_devices(gpus: int, device: str | None) -> tuple[str | None, int]:
    """(torch device, device count) of a training from ``--gpus`` and ``--device``.

    ``--gpus 0`` (default): one device, ``--device`` or CUDA when available. ``--gpus N``: N
    GPUs (the ones SLURM granted the job); with ``--device cpu`` N CPU processes instead (DDP
    with gloo, for tests). GPUs asked for but not visible to torch is an error (recorded as a
    failed point), never a silent fallback to the CPU.
    """
    if gpus < 0:
        raise SystemExit("--gpus must be >= 0")
    if gpus == 0:
        return device, 1
    if device is None or device.startswith("cuda"):
        import torch

        visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if visible < gpus:
            log.error("--gpus %d, but torch sees %d CUDA device(s) (CUDA_VISIBLE_DEVICES=%s)", gpus, visible,
                      os.environ.get("CUDA_VISIBLE_DEVICES"))
        return device or "cuda", gpus
    return device, gpus


def cmd_train(args: argparse.Namespace) -> None:
    from mlff2d.sweep import resolve_params, train_point

    params = resolve_params(args.family, json.loads(args.params), args.lr, args.batch_size)
    device, devices = training_devices(args.gpus, args.device)
    status = train_point(args.family, args.data, args.outdir, params, init_model=args.init_model, device=device,
                         devices=devices)
    if status["status"] == "worker":  # a data-parallel worker rank: rank 0 reports
        return
    log.info("%s training in %s: %s", args.family, args.outdir, status["status"])
    if status["status"] != "ok":
        log.error("training failed (recorded in status.json): %s", status["reason"])


def cmd_curves(args: argparse.Namespace) -> None:
    from mlff2d.sweep import plot_validation_curves

    from mlff2d.labels import model_label, model_parts

    dirs = [item.split("=", 1)[-1] for item in args.points]  # LABEL=DIR (the label is the directory's)
    points = {model_label(**{k: v for k, v in model_parts(d).items() if k != "family" and v}): d for d in dirs}
    paths = plot_validation_curves(points, args.out, title=args.title)
    log.info("wrote %s", ", ".join(map(str, paths)))


def cmd_relax(args: argparse.Namespace) -> None:
    from mlff2d.relax import relax_shard

    records = relax_shard(args.family, Path(args.point), Path(args.start), args.shard, args.shard_size,
                          Path(args.records), Path(args.structures), fmax=args.fmax, max_steps=args.max_steps,
                          device=args.device, engine=args.engine, batch_atoms=args.batch_atoms)
    failed = records["failure"].fillna("").ne("").sum() if len(records) else 0
    log.info("shard %d: %d structures relaxed, %d not converged or failed", args.shard, len(records), failed)


def cmd_gather_relax(args: argparse.Namespace) -> None:
    from mlff2d.relax import gather

    gather([Path(p) for p in args.records], [Path(p) for p in args.structures], Path(args.records_out), Path(args.structures_out))


def cmd_evaluate(args: argparse.Namespace) -> None:
    import pandas as pd

    from mlff2d.evaluation import relaxation_errors, write_evaluation

    errors = relaxation_errors(pd.read_parquet(args.records), Path(args.reference))
    counts = pd.read_csv(args.train_elements) if args.train_elements else None
    write_evaluation(errors, Path(args.outdir), args.title, reference_file=Path(args.reference), train_counts=counts)


def cmd_baseline(args: argparse.Namespace) -> None:
    from mlff2d.evaluation import baseline_errors, write_evaluation

    errors = baseline_errors(Path(args.clean), Path(args.split), args.set, Path(args.start), Path(args.reference))
    write_evaluation(errors, Path(args.outdir), f"baseline (per-element mean energy, unrelaxed): {args.set}")


def _points(items: list[str]) -> list[tuple[str, str]]:
    return [tuple(item.split("=", 1)) for item in items]  # type: ignore[misc]


def cmd_tables(args: argparse.Namespace) -> None:
    from mlff2d.report import write_relaxation_tables

    paths = write_relaxation_tables(_points(args.points), args.sets, args.baseline, args.outdir)
    log.info("wrote %d table files to %s", len(paths), args.outdir)


def cmd_ptables(args: argparse.Namespace) -> None:
    from mlff2d.report import write_ptables

    log.info("wrote %s", write_ptables(_points(args.points), args.sets, args.baseline, args.outdir))


def cmd_repeat_table(args: argparse.Namespace) -> None:
    from mlff2d.repeats import parse_model_arg, write_repeats

    paths = write_repeats([parse_model_arg(m) for m in args.models], args.sets, args.out, args.caption, args.column_title)
    log.info("repeat table: %s", ", ".join(str(p) for p in paths))


def cmd_structure_map(args: argparse.Namespace) -> None:
    from mlff2d.structure_maps import structure_map

    soap = {"r_cut": args.r_cut, "n_max": args.n_max, "l_max": args.l_max, "sigma": args.sigma}
    frame = structure_map(args.clean, args.split, args.outdir, chunk=args.chunk, **soap)
    log.info("structure map: %s materials", frame["set"].value_counts().to_dict())


def cmd_novelty(args: argparse.Namespace) -> None:
    from mlff2d.structure_maps import novelty

    log.info("novelty: %s", novelty(args.structures, args.errors, args.set, args.outdir, args.title))


def cmd_novelty_table(args: argparse.Namespace) -> None:
    from mlff2d.structure_maps import novelty_table

    pairs = [_label_path(x) for x in args.summaries]
    novelty_table([p for _, p in pairs], [m for m, _ in pairs], args.out)


def cmd_train_alloy(args: argparse.Namespace) -> None:
    from mlff2d.sweep import resolve_params
    from mlff2d.transfer import train_alloy

    params = resolve_params(args.family, json.loads(args.params), args.lr, args.batch_size)
    if args.mode == "transfer":
        params["freeze_blocks"] = args.freeze_blocks
    device, devices = training_devices(args.gpus, args.device)
    status = train_alloy(args.family, args.data, args.outdir, params, args.mode, points=args.universal,
                         transfer_from=args.transfer_from, device=device, devices=devices)
    if status["status"] == "worker":  # a data-parallel worker rank: rank 0 reports
        return
    log.info("%s %s alloy training in %s: %s", args.family, args.mode, args.outdir, status["status"])
    if status["status"] != "ok":
        log.error("training failed (recorded in status.json): %s", status["reason"])


def cmd_subset_export(args: argparse.Namespace) -> None:
    from mlff2d.transfer import write_subset_export

    info = write_subset_export(args.export, args.family, args.fraction, args.seed, args.outdir)
    log.info("fraction %g: %d of %d training materials, %d frames", info["fraction"], info["n_train_materials"],
             info["n_train_materials_full"], info["n_train_frames"])


def cmd_alloy_report(args: argparse.Namespace) -> None:
    from mlff2d.alloy_report import write_alloy_report

    paths = write_alloy_report(args.models, args.sets, args.splits, args.tables, args.figures, families=args.families,
                               tolerance=args.tolerance, curve_set=args.curve_set, baselines=args.baselines)
    log.info("wrote %d alloy table and figure files", len(paths))


def cmd_diagnostics(args: argparse.Namespace) -> None:
    from mlff2d.diagnostics import diagnose, write_diagnostics

    pairs = [tuple(item.split("=", 1)) for item in args.models]
    bad = [item for item, pair in zip(args.models, pairs) if len(pair) != 2]
    if bad:
        raise SystemExit(f"--models takes MODEL_DIR=BASELINE_DIR, got {bad[:3]}")
    frame = diagnose(pairs, args.sets, args.root)
    write_diagnostics(frame, len(pairs), args.md, args.csv)
    for message in frame["message"]:
        log.warning("%s", message)
    log.info("%d warnings for %d models: %s", len(frame), len(pairs), args.md)


def cmd_demo_data(args: argparse.Namespace) -> None:
    from mlff2d.demo_data import generate_demo

    manifest = generate_demo(Path(args.outdir), args.n_2d, args.alloys, args.max_configs, args.seed, args.workers)
    log.info("demo data in %s: %s", args.outdir, json.dumps(manifest["totals"]))


def cmd_synthetic(args: argparse.Namespace) -> None:
    from mlff2d.synthetic import write_alexandria

    paths = write_alexandria(args.outdir, args.materials, args.steps, args.per_file, args.seed, not args.no_compress)
    log.info("wrote %d files to %s", len(paths), args.outdir)


def cmd_formation_energies(args: argparse.Namespace) -> None:
    from mlff2d.formation import write_formation_energies

    table = None
    if args.table:
        table = {"table": args.table, "id_column": args.id_column, "energy_column": args.energy_column,
                 "unit": args.unit, "external_ce_column": args.external_ce_column or None,
                 "alloy_column": args.alloy_column or None}
    frame = write_formation_energies(args.alloy, args.relax_sets, args.out, args.end_members, table=table)
    log.info("%s: formation energies of %d structures", args.alloy, len(frame))


def cmd_cluster_expansion(args: argparse.Namespace) -> None:
    from mlff2d.cluster_expansion import run_cluster_expansion

    summary = run_cluster_expansion(args.formation, args.relax_sets, args.outdir, json.loads(args.settings))
    log.info("cluster expansion: cutoffs %s, MAE (meV/atom) %s", summary["cutoffs"],
             {k: round(v["mae"], 4) for k, v in summary["sets"].items()})


def cmd_formation_baseline(args: argparse.Namespace) -> None:
    from mlff2d.formation import composition_baseline, error_stats, read_formation_energies

    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    pred = composition_baseline(read_formation_energies(args.formation), order=args.order)
    pred.to_csv(out / "predictions.csv", index=False, lineterminator="\n")
    sets = {s: error_stats(g["predicted_per_atom_eV"], g["formation_energy_per_atom_eV"]) for s, g in pred.groupby("set")}
    (out / "summary.json").write_text(json.dumps({"model": "Redlich-Kister in x", "order": args.order, "sets": sets}, indent=2) + "\n")


def cmd_formation_nequip(args: argparse.Namespace) -> None:
    from mlff2d.nequip_model import run

    status = run(args.formation, {"train": args.train, "val": args.val, "test": args.test}, args.outdir, json.loads(args.params))
    log.info("NequIP formation model in %s: %s", args.outdir, status["status"])


def cmd_formation_report(args: argparse.Namespace) -> None:
    from mlff2d.formation_report import write_report

    paths = write_report(_points(args.alloys), args.outdir, split=args.split)
    log.info("wrote %d formation tables and figures to %s", len(paths), args.outdir)


def cmd_check_config(args: argparse.Namespace) -> None:
    """Print the config with every default filled in (YAML), check that its input paths exist,
    and end with a one-line verdict; a problem is an error naming the key."""
    import yaml

    from mlff2d.config import ConfigError, load_config, missing_sources

    config = load_config(args.configfile)
    if not args.quiet:
        print(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), end="")
    missing = missing_sources(config)
    if missing:
        raise ConfigError(f"{args.configfile}: " + "; ".join(missing))
    datasets = [d["name"] for d in config["alloys"]["datasets"]]
    print(f"OK: {args.configfile} is valid (campaign {config['campaign']!r}, {len(config['data']['sources'])} 2D source(s), "
          f"{len(datasets)} alloy dataset(s); every input path matches files)")


#: Help of the options many stages share (paths of the campaign's files); an option without its
#: own help gets this one, and every option has one (tested).
COMMON_HELP = {
    "--frames": "frame store (.parquet)", "--materials": "materials table (.csv)",
    "--clean": "clean frame store (.parquet, the outlier filter's output)",
    "--ledger-frames": "output: ledger of removed frames (.parquet)",
    "--ledger-materials": "materials ledger with the reason each was kept or removed (.csv)",
    "--summary": "output: counts per removal reason (.csv)", "--max-sites": "most atoms per cell (default 20)",
    "--scope": "remove whole materials or single frames (default material)",
    "--fallback": "steps kept when none passes the cutoff, as fractions of the last index",
    "--keep-last": "also keep the last (relaxed) step", "--out": "output file",
    "--ratios": "train, val and test fractions (sum 1)", "--seed": "random seed",
    "--family": "model family", "--selected": "selected steps (.parquet)", "--split": "split (.csv: material_id, split)",
    "--outdir": "output directory", "--sets": "sets: train, val, test", "--set": "set: val or test",
    "--shard": "shard index (0-based)", "--shard-size": "structures per shard",
    "--max-steps": "FIRE steps before a relaxation counts as step_limit", "--device": "cpu or cuda (default: CUDA when available)",
    "--records": "relaxation records (.parquet)", "--structures": "relaxed structures (.extxyz)",
    "--records-out": "output: gathered records (.parquet)", "--structures-out": "output: gathered structures (.extxyz)",
    "--title": "figure title", "--start": "start structures (extxyz)", "--reference": "DFT-relaxed structures (extxyz)",
    "--families": "model families", "--formation": "formation_energies.csv",
}


def _families() -> list[str]:
    """The trainable model families (the CLI's choices)."""
    from mlff2d.families import family_names

    return family_names()


def _stage(sub: Any, name: str, help: str) -> argparse.ArgumentParser:
    """A stage's sub-command; its help is also the description ``mlff2d <stage> --help`` shows."""
    return sub.add_parser(name, help=help, description=help)


def _document(parser: argparse.ArgumentParser) -> None:
    """Give every option without a help text its :data:`COMMON_HELP` entry."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _document(sub)
        elif not action.help and action.option_strings:
            action.help = COMMON_HELP.get(action.option_strings[-1])


def cmd_slurm_profile(args: argparse.Namespace) -> None:
    from mlff2d.slurm_profile import write_profile

    path, summary = write_profile(args.name, args.cpu_partition, args.gpu_partition, args.account, args.force)
    print(f"wrote {path}:\n{summary.replace('#   ', '  ')}run the campaign with: snakemake --profile {args.name}")


def build_parser() -> argparse.ArgumentParser:
    from mlff2d import __version__

    p = argparse.ArgumentParser(prog="mlff2d", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"mlff2d {__version__}")
    p.add_argument("--threads", type=int, default=1, help="BLAS/torch threads for this stage (default 1)")
    sub = p.add_subparsers(dest="command", required=True)

    s = _stage(sub, "ingest", "read DFT trajectories into the frame store")
    s.add_argument("--source", action="append", required=True,
                   help='JSON object: {"path": ..., "format": ..., "stress_unit": ...}; repeat for several')
    s.add_argument("--frames", required=True, help="output frame store (.parquet)")
    s.add_argument("--materials", required=True, help="output materials table (.csv)")
    s.add_argument("--min-vacuum", type=float, default=5.0, help="Å of vacuum along z (default 5)")
    s.add_argument("--workers", type=int, default=1, help="processes reading files in parallel")
    s.set_defaults(func=cmd_ingest)

    s = _stage(sub, "filter", "remove outliers and write the ledger")
    for name in ("frames", "materials", "clean", "ledger-frames", "ledger-materials", "summary"):
        s.add_argument(f"--{name}", required=True)
    s.add_argument("--max-sites", type=int, default=20)
    s.add_argument("--energy-min", type=float, default=-20.0, help="eV/atom")
    s.add_argument("--energy-max", type=float, default=0.0, help="eV/atom")
    s.add_argument("--force-max", type=float, default=20.0, help="eV/Å")
    s.add_argument("--stress-max-kbar", type=float, default=500.0, help="kbar")
    s.add_argument("--isolation-cutoff", type=float, default=5.0, help="Å")
    s.add_argument("--scope", choices=("material", "frame"), default="material")
    s.set_defaults(func=cmd_filter)

    s = _stage(sub, "select", "select relaxation steps by e_cut")
    s.add_argument("--clean", required=True)
    s.add_argument("--e-cut", type=float, required=True, help="eV/atom")
    s.add_argument("--fallback", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    s.add_argument("--keep-last", action="store_true")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_select)

    s = _stage(sub, "selection-summary", "materials and frames per e_cut and per train/val/test (thesis 4.1)")
    s.add_argument("--clean", required=True)
    s.add_argument("--selected", nargs="+", required=True, help="E_CUT=PATH of each selection")
    s.add_argument("--splits", nargs="*", default=[], help="NAME=PATH of each split CSV")
    s.add_argument("--fallback", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_selection_summary)

    s = _stage(sub, "split", "split materials into train/val/test")
    s.add_argument("--ledger-materials", help="material ledger of the dataset to split")
    s.add_argument("--ratios", type=float, nargs=3, metavar=("TRAIN", "VAL", "TEST"))
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--repeat", type=int, default=0, help="split repeat k (0 = the plain split; k >= 1 draws mlff2d.split.repeat_seed)")
    s.add_argument("--union", nargs="+", help="instead: combine these split CSVs (the combined alloy dataset)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_split)

    s = _stage(sub, "export", "write a model family's train/val/test files")
    s.add_argument("--family", choices=("mace", "m3gnet", "nequip"), required=True)
    s.add_argument("--clean", required=True)
    s.add_argument("--selected", required=True)
    s.add_argument("--split", required=True)
    s.add_argument("--outdir", required=True)
    s.set_defaults(func=cmd_export)

    s = _stage(sub, "relax-sets", "write start and reference structures of val/test (and train)")
    s.add_argument("--clean", required=True)
    s.add_argument("--split", required=True)
    s.add_argument("--sets", nargs="+", choices=("train", "val", "test"), default=["val", "test"])
    s.add_argument("--outdir", required=True)
    s.set_defaults(func=cmd_relax_sets)

    s = _stage(sub, "dataset-figures", "element, space-group and label distributions")
    s.add_argument("--clean", required=True)
    s.add_argument("--selected", nargs="+", default=[], help="LABEL=PATH for each e_cut")
    s.add_argument("--outdir", required=True)
    s.set_defaults(func=cmd_dataset_figures)

    s = _stage(sub, "train-elements", "training materials containing each element")
    s.add_argument("--clean", required=True)
    s.add_argument("--split", required=True, help="split CSV (material_id, split)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_train_elements)

    s = _stage(sub, "alloy-energy-figure", "energy per atom of each alloy dataset (thesis fig. 6.13)")
    s.add_argument("--clean", nargs="+", required=True, help="ALLOY=clean.parquet")
    s.add_argument("--out", required=True, help="the PNG (the PDF is written beside it)")
    s.set_defaults(func=cmd_alloy_energy_figure)

    s = _stage(sub, "train", "train one sweep point of a model family")
    s.add_argument("--family", required=True, choices=_families(), help="model family")
    s.add_argument("--data", required=True, help="export directory with train/val files")
    s.add_argument("--outdir", required=True, help="the sweep point's directory")
    s.add_argument("--lr", type=float, required=True, help="learning rate")
    s.add_argument("--batch-size", type=int, required=True, help="structures per batch (per device)")
    s.add_argument("--params", default="{}", help="JSON object of settings overriding the family's defaults")
    s.add_argument("--init-model", default=None, help="fine-tune from this trained model (transfer)")
    s.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when available)")
    s.add_argument("--gpus", type=int, default=0,
                   help="GPUs to train on, data-parallel when > 1 (default 0: one device, CUDA when available);"
                        " with --device cpu: that many CPU processes")
    s.set_defaults(func=cmd_train)

    s = _stage(sub, "curves", "validation curves of sweep points")
    s.add_argument("--points", nargs="+", required=True, help="POINT_DIR (or LABEL=POINT_DIR) of each sweep point; the legend shows each point's label")
    s.add_argument("--out", required=True, help="output stem (writes .png and .pdf)")
    s.add_argument("--title", default="")
    s.set_defaults(func=cmd_curves)

    s = _stage(sub, "relax", "relax one shard of a relaxation set with a sweep point's model")
    s.add_argument("--family", required=True, choices=_families(), help="model family of the point")
    s.add_argument("--point", required=True, help="sweep point directory (status.json, model)")
    s.add_argument("--start", required=True, help="start structures (extxyz)")
    s.add_argument("--shard", type=int, required=True)
    s.add_argument("--shard-size", type=int, required=True)
    s.add_argument("--fmax", type=float, default=0.1, help="eV/Å")
    s.add_argument("--max-steps", type=int, default=1000)
    s.add_argument("--records", required=True, help="output records (.parquet)")
    s.add_argument("--structures", required=True, help="output final structures (.extxyz)")
    s.add_argument("--device", default=None)
    s.add_argument("--engine", choices=("ase", "batched"), default=_relax_default("engine"),
                   help="ase: one structure per model call; batched: many (default: the config schema's)")
    s.add_argument("--batch-atoms", type=int, default=_relax_default("batch_atoms"),
                   help="batched engine: most atoms per model call, 0 = automatic (default: the config schema's)")
    s.set_defaults(func=cmd_relax)

    s = _stage(sub, "gather-relax", "concatenate relaxation shards in order")
    s.add_argument("--records", nargs="+", required=True)
    s.add_argument("--structures", nargs="+", required=True)
    s.add_argument("--records-out", required=True)
    s.add_argument("--structures-out", required=True)
    s.set_defaults(func=cmd_gather_relax)

    s = _stage(sub, "evaluate", "energy and area errors of relaxations against DFT")
    s.add_argument("--records", required=True)
    s.add_argument("--reference", required=True, help="DFT-relaxed structures (extxyz)")
    s.add_argument("--outdir", required=True)
    s.add_argument("--title", default="")
    s.add_argument("--train-elements", default=None, help="CSV element, n_train_materials (mlff2d train-elements)")
    s.set_defaults(func=cmd_evaluate)

    s = _stage(sub, "baseline", "errors of the per-element mean-energy, unrelaxed baseline")
    s.add_argument("--clean", required=True)
    s.add_argument("--split", required=True)
    s.add_argument("--set", required=True, choices=("val", "test"))
    s.add_argument("--start", required=True)
    s.add_argument("--reference", required=True)
    s.add_argument("--outdir", required=True)
    s.set_defaults(func=cmd_baseline)

    for name, func, what in (("tables", cmd_tables, "thesis tables 4.1 and 4.2"), ("ptables", cmd_ptables, "periodic-table maps")):
        s = _stage(sub, name, f"{what} from the evaluated sweep points")
        s.add_argument("--points", nargs="*", default=[], help="FAMILY=POINT_DIR for each sweep point")
        s.add_argument("--sets", nargs="+", default=["val", "test"])
        s.add_argument("--baseline", default=None, help="baseline directory (baseline/<set>/summary.json)")
        s.add_argument("--outdir", required=True)
        s.set_defaults(func=func)

    s = _stage(sub, "structure-map", "SOAP vectors, PCA on train, nearest-training distances and the map of a split")
    s.add_argument("--clean", required=True, help="clean frame store of the dataset")
    s.add_argument("--split", required=True, help="split CSV (material_id, split)")
    s.add_argument("--outdir", required=True, help="structure-map directory (soap.npy, pca.npz, structures.csv, map.png/pdf)")
    s.add_argument("--r-cut", type=float, required=True, help="SOAP cutoff (Å)")
    s.add_argument("--n-max", type=int, required=True, help="SOAP radial basis functions")
    s.add_argument("--l-max", type=int, required=True, help="SOAP maximum angular degree")
    s.add_argument("--sigma", type=float, required=True, help="Gaussian width (Å)")
    s.add_argument("--chunk", type=int, required=True, help="structures per block (bounds the memory)")
    s.set_defaults(func=cmd_structure_map)

    s = _stage(sub, "novelty", "one model's relaxation energy error against SOAP distance to training")
    s.add_argument("--structures", required=True, help="structures.csv of the model's dataset and split")
    s.add_argument("--errors", required=True, help="errors.csv of the model's evaluation")
    s.add_argument("--set", required=True, help="the relaxed set (val or test)")
    s.add_argument("--outdir", required=True, help="where novelty.csv/json/png/pdf and error_map.png/pdf go")
    s.add_argument("--title", default="", help="figure title")
    s.set_defaults(func=cmd_novelty)

    s = _stage(sub, "novelty-table", "gather novelty.json files into one CSV")
    s.add_argument("--summaries", nargs="+", required=True, help="MODEL=PATH of each novelty.json")
    s.add_argument("--out", required=True, help="output CSV")
    s.set_defaults(func=cmd_novelty_table)

    s = _stage(sub, "repeat-table", "mean ± std over split repeats, best only where the gap beats the spread")
    s.add_argument("--models", nargs="+", required=True, help="ROW::COLUMN=DIR, one per model and repeat")
    s.add_argument("--sets", nargs="+", default=["val", "test"], help="relaxed sets, in table order")
    s.add_argument("--out", required=True, help="output stem (writes .csv, .md, .tex)")
    s.add_argument("--caption", default="Relaxation MAE, mean ± std over split repeats", help="table caption")
    s.add_argument("--column-title", default="", help="prefix of the column headers, e.g. 'Cutoff ='")
    s.set_defaults(func=cmd_repeat_table)

    s = _stage(sub, "train-alloy", "train one alloy model, normal or transfer (thesis 4.3)")
    s.add_argument("--family", required=True, choices=_families(), help="model family")
    s.add_argument("--data", required=True, help="export directory with train/val files")
    s.add_argument("--outdir", required=True, help="the alloy model's directory")
    s.add_argument("--mode", required=True, choices=("normal", "transfer"), help="normal: from scratch; transfer: fine-tune a universal model")
    s.add_argument("--lr", type=float, required=True, help="learning rate")
    s.add_argument("--batch-size", type=int, required=True, help="structures per batch (per device)")
    s.add_argument("--params", default="{}", help="JSON object of settings overriding the family's defaults")
    s.add_argument("--freeze-blocks", type=int, default=0, help="transfer: freeze the first N interaction blocks")
    s.add_argument("--universal", nargs="*", default=[], help="transfer: the family's universal sweep point directories")
    s.add_argument("--transfer-from", default="best", help='transfer: "best" (lowest validation relaxation energy MAE), "best_direct" (lowest final'
                   ' direct validation energy MAE) or a sweep point label ecut~X/lr~Y/bs~Z')
    s.add_argument("--device", default=None, help="cpu or cuda (default: CUDA when available)")
    s.add_argument("--gpus", type=int, default=0, help="GPUs for data-parallel training (0: one device)")
    s.set_defaults(func=cmd_train_alloy)

    s = _stage(sub, "subset-export", "an export with a nested subset of its training materials")
    s.add_argument("--export", required=True, help="export directory")
    s.add_argument("--family", required=True, choices=("m3gnet", "mace", "nequip"))
    s.add_argument("--fraction", type=float, required=True, help="fraction of the training materials, (0, 1]")
    s.add_argument("--seed", type=int, default=42)
    s.add_argument("--outdir", required=True)
    s.set_defaults(func=cmd_subset_export)

    s = _stage(sub, "alloy-report", "alloy tables 4.3-4.7, learning curves and figures")
    s.add_argument("--models", nargs="*", default=[], help="alloy model directories (learning-curve ones included)")
    s.add_argument("--sets", nargs="+", default=["val", "test"])
    s.add_argument("--splits", nargs="+", required=True, help="alloy split names")
    s.add_argument("--families", nargs="+", default=["m3gnet", "mace"])
    s.add_argument("--tolerance", type=float, default=0.1, help="learning-curve match tolerance")
    s.add_argument("--curve-set", default="test", help="set of the learning curves and figures")
    s.add_argument("--baselines", default=None, help="root of the alloy composition baselines (<dataset>/split~<split>/<set>/)")
    s.add_argument("--tables", required=True, help="output directory of the tables")
    s.add_argument("--figures", required=True, help="output directory of the figures")
    s.set_defaults(func=cmd_alloy_report)

    s = _stage(sub, "diagnostics", "warn about models that do not beat the baseline, do not move or did not learn")
    s.add_argument("--models", nargs="*", default=[], help="MODEL_DIR=BASELINE_DIR pairs (BASELINE_DIR/<set>/summary.json)")
    s.add_argument("--sets", nargs="+", default=["val", "test"], help="relaxed sets to check")
    s.add_argument("--root", default=None, help="models are labelled by their path below this directory")
    s.add_argument("--md", required=True, help="diagnostics.md to write")
    s.add_argument("--csv", required=True, help="diagnostics.csv to write")
    s.set_defaults(func=cmd_diagnostics)

    s = _stage(sub, "demo-data", "generate the demo dataset with CHGNet (needs the 'demo' extra)")
    s.add_argument("--outdir", required=True)
    s.add_argument("--n-2d", type=int, default=None, help="first N 2D prototypes (default: all)")
    s.add_argument("--alloys", nargs="*", default=None, help="alloys to enumerate (default: all six)")
    s.add_argument("--max-configs", type=int, default=None, help="configurations per alloy")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=int, default=1, help="relaxations run in parallel")
    s.set_defaults(func=cmd_demo_data)

    s = _stage(sub, "synthetic-alexandria", "write synthetic Alexandria-format files")
    s.add_argument("--outdir", required=True)
    s.add_argument("--materials", type=int, default=100, help="number of materials (default 100)")
    s.add_argument("--steps", type=int, default=30, help="relaxation steps per material (default 30)")
    s.add_argument("--per-file", type=int, default=1000, help="materials per file (default 1000)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--no-compress", action="store_true", help="write .json instead of .json.bz2")
    s.set_defaults(func=cmd_synthetic)

    s = _stage(sub, "formation-energies", "alloy formation energies per site and per atom (thesis 4.4)")
    s.add_argument("--alloy", required=True, help="alloy dataset name, e.g. MoWS2 (metal order = name order)")
    s.add_argument("--relax-sets", required=True, help="directory with {train,val,test}_reference.extxyz")
    s.add_argument("--out", required=True, help="output formation_energies.csv")
    s.add_argument("--end-members", required=True, help="output end_members.json")
    s.add_argument("--table", default=None, help="read formation energies from this CSV instead")
    s.add_argument("--id-column", default="material_id", help="--table: column of the material ids")
    s.add_argument("--energy-column", default="formation_energy_per_site_eV", help="--table: column of the formation energies")
    s.add_argument("--unit", default="eV/site", choices=("eV/site", "eV/atom", "meV/atom"), help="--table: unit of that column")
    s.add_argument("--external-ce-column", default=None, help="external cluster-expansion prediction (same unit)")
    s.add_argument("--alloy-column", default=None, help="keep only rows whose value here is the alloy name")
    s.set_defaults(func=cmd_formation_energies)

    s = _stage(sub, "cluster-expansion", "icet cluster expansion fitted on the training split only")
    s.add_argument("--formation", required=True, help="formation_energies.csv")
    s.add_argument("--relax-sets", required=True, help="directory with {train,val,test}_reference.extxyz")
    s.add_argument("--outdir", required=True)
    s.add_argument("--settings", default="{}", help="JSON: cutoff_candidates, fit_method, cv_folds, prototypes (per alloy), ...")
    s.set_defaults(func=cmd_cluster_expansion)

    s = _stage(sub, "formation-baseline", "formation energy from the alloy fraction alone")
    s.add_argument("--formation", required=True)
    s.add_argument("--outdir", required=True)
    s.add_argument("--order", type=int, default=1, help="Redlich-Kister order")
    s.set_defaults(func=cmd_formation_baseline)

    s = _stage(sub, "formation-nequip", "energy-only NequIP on relaxed structures (nequip environment)")
    s.add_argument("--formation", required=True)
    for name in ("train", "val", "test"):
        s.add_argument(f"--{name}", required=True, help=f"{name} structures (extxyz)")
    s.add_argument("--outdir", required=True)
    s.add_argument("--params", default="{}", help="JSON of settings overriding mlff2d.nequip_model.DEFAULTS")
    s.set_defaults(func=cmd_formation_nequip)

    s = _stage(sub, "formation-report", "tables 4.8, 4.9 and figures 4.10, 4.11")
    s.add_argument("--alloys", nargs="+", required=True, help="ALLOY=DIR (results/<c>/formation/<alloy>/split~<s>)")
    s.add_argument("--split", default="")
    s.add_argument("--outdir", required=True)
    s.set_defaults(func=cmd_formation_report)

    s = _stage(sub, "check-config", "validate a config file, check its input paths, print it with every default")
    s.add_argument("configfile", help="the campaign's config file (YAML)")
    s.add_argument("--quiet", action="store_true", help="print only the verdict, not the filled-in config")
    s.set_defaults(func=cmd_check_config)

    s = _stage(sub, "slurm-profile", "write the Snakemake profile for this SLURM cluster "
                       "(partitions from sinfo, account from sacctmgr), for `snakemake --profile slurm`")
    s.add_argument("--name", default="slurm", help="profile name (default slurm); never overwrites one without --force")
    s.add_argument("--cpu-partition", help="partition of the CPU jobs (default: the cluster's default partition)")
    s.add_argument("--gpu-partition", help="partition of the trainings (default: the one with GPUs and the longest time limit)")
    s.add_argument("--account", help="account to charge, or 'none' (default: from sacctmgr; none without accounting)")
    s.add_argument("--force", action="store_true", help="replace an existing profile of that name")
    s.set_defaults(func=cmd_slurm_profile)
    _document(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mlff2d`` command."""
    args = build_parser().parse_args(argv)
    _set_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from mlff2d.config import ConfigError
    from mlff2d.ingest import IngestError
    from mlff2d.slurm_profile import ProfileError

    try:
        args.func(args)
    except (IngestError, ConfigError, ProfileError) as exc:
        print(f"mlff2d {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
