"""``mlff2d`` relaxation stages (workflow/rules/relax.smk, repeats.smk, structure_maps.smk):
relaxation shards, their evaluation against DFT, the baseline, the tables and the structure maps."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mlff2d.cli._common import families, label_path, log, points, schema_option, stage


def cmd_relax(args: argparse.Namespace) -> None:
    from mlff2d.relaxation.relax import relax_shard
    from mlff2d.training.sweep import point_family

    try:
        family = point_family(args.point, args.family)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"mlff2d relax: {exc}") from exc
    records = relax_shard(family, Path(args.point), Path(args.start), args.shard, args.shard_size,
                          Path(args.records), Path(args.structures), fmax=args.fmax, max_steps=args.max_steps,
                          device=args.device, engine=args.engine, batch_atoms=args.batch_atoms)
    failed = records["failure"].fillna("").ne("").sum() if len(records) else 0
    log.info("shard %d: %d structures relaxed, %d not converged or failed", args.shard, len(records), failed)


def cmd_gather_relax(args: argparse.Namespace) -> None:
    from mlff2d.relaxation.relax import gather

    gather([Path(p) for p in args.records], [Path(p) for p in args.structures], Path(args.records_out), Path(args.structures_out))


def cmd_evaluate(args: argparse.Namespace) -> None:
    import pandas as pd

    from mlff2d.relaxation.evaluation import relaxation_errors, write_evaluation

    errors = relaxation_errors(pd.read_parquet(args.records), Path(args.reference))
    counts = pd.read_csv(args.train_elements) if args.train_elements else None
    write_evaluation(errors, Path(args.outdir), args.title, reference_file=Path(args.reference), train_counts=counts)


def cmd_baseline(args: argparse.Namespace) -> None:
    from mlff2d.relaxation.evaluation import baseline_errors, write_evaluation

    errors = baseline_errors(Path(args.clean), Path(args.split), args.set, Path(args.start), Path(args.reference))
    write_evaluation(errors, Path(args.outdir), f"baseline (per-element mean energy, unrelaxed): {args.set}")


def cmd_tables(args: argparse.Namespace) -> None:
    from mlff2d.relaxation.tables import write_relaxation_tables

    paths = write_relaxation_tables(points(args.points), args.sets, args.baseline, args.outdir)
    log.info("wrote %d table files to %s", len(paths), args.outdir)


def cmd_ptables(args: argparse.Namespace) -> None:
    from mlff2d.relaxation.tables import write_ptables

    log.info("wrote %s", write_ptables(points(args.points), args.sets, args.baseline, args.outdir))


def cmd_repeat_table(args: argparse.Namespace) -> None:
    from mlff2d.relaxation.repeats import parse_model_arg, write_repeats

    paths = write_repeats([parse_model_arg(m) for m in args.models], args.sets, args.out, args.caption, args.column_title)
    log.info("repeat table: %s", ", ".join(str(p) for p in paths))


def cmd_structure_map(args: argparse.Namespace) -> None:
    from mlff2d.data.structure_maps import structure_map

    soap = {"r_cut": args.r_cut, "n_max": args.n_max, "l_max": args.l_max, "sigma": args.sigma}
    frame = structure_map(args.clean, args.split, args.outdir, chunk=args.chunk, **soap)
    log.info("structure map: %s materials", frame["set"].value_counts().to_dict())


def cmd_novelty(args: argparse.Namespace) -> None:
    from mlff2d.data.structure_maps import novelty

    log.info("novelty: %s", novelty(args.structures, args.errors, args.set, args.outdir, args.title))


def cmd_novelty_table(args: argparse.Namespace) -> None:
    from mlff2d.data.structure_maps import novelty_table

    pairs = [label_path(x) for x in args.summaries]
    novelty_table([p for _, p in pairs], [m for m, _ in pairs], args.out)


def add_commands(sub: Any) -> None:
    """Register the relaxation stages' sub-commands."""
    _add_relax(sub)
    _add_evaluation(sub)
    _add_tables(sub)
    _add_structure_maps(sub)


def _add_relax(sub: Any) -> None:
    s = stage(sub, "relax", "relax one shard of a relaxation set with a sweep point's model")
    s.add_argument("--family", default=None, choices=families(),
                   help="model family of the point (default: the family in <point>/status.json, which the training wrote)")
    s.add_argument("--point", required=True, help="sweep point directory (status.json, model)")
    s.add_argument("--start", required=True, help="start structures (extxyz)")
    s.add_argument("--shard", type=int, required=True)
    s.add_argument("--shard-size", type=int, required=True)
    schema_option(s, "--fmax", "relax.fmax", type=float, help="eV/Å")
    schema_option(s, "--max-steps", "relax.max_steps", type=int)
    s.add_argument("--records", required=True, help="output records (.parquet)")
    s.add_argument("--structures", required=True, help="output final structures (.extxyz)")
    s.add_argument("--device", default=None)
    schema_option(s, "--engine", "relax.engine", choices=("ase", "batched"),
                  help="ase: one structure per model call; batched: many")
    schema_option(s, "--batch-atoms", "relax.batch_atoms", type=int,
                  help="batched engine: most atoms per model call, 0 = automatic")
    s.set_defaults(func=cmd_relax)

    s = stage(sub, "gather-relax", "concatenate relaxation shards in order")
    s.add_argument("--records", nargs="+", required=True)
    s.add_argument("--structures", nargs="+", required=True)
    s.add_argument("--records-out", required=True)
    s.add_argument("--structures-out", required=True)
    s.set_defaults(func=cmd_gather_relax)


def _add_evaluation(sub: Any) -> None:
    s = stage(sub, "evaluate", "energy and area errors of relaxations against DFT")
    s.add_argument("--records", required=True)
    s.add_argument("--reference", required=True, help="DFT-relaxed structures (extxyz)")
    s.add_argument("--outdir", required=True)
    s.add_argument("--title", default="")
    s.add_argument("--train-elements", default=None, help="CSV element, n_train_materials (mlff2d train-elements)")
    s.set_defaults(func=cmd_evaluate)

    s = stage(sub, "baseline", "errors of the per-element mean-energy, unrelaxed baseline")
    s.add_argument("--clean", required=True)
    s.add_argument("--split", required=True)
    s.add_argument("--set", required=True, choices=("val", "test"))
    s.add_argument("--start", required=True)
    s.add_argument("--reference", required=True)
    s.add_argument("--outdir", required=True)
    s.set_defaults(func=cmd_baseline)


def _add_tables(sub: Any) -> None:
    for name, func, what in (("tables", cmd_tables, "thesis tables 4.1 and 4.2"), ("ptables", cmd_ptables, "periodic-table maps")):
        s = stage(sub, name, f"{what} from the evaluated sweep points")
        s.add_argument("--points", nargs="*", default=[], help="FAMILY=POINT_DIR for each sweep point")
        schema_option(s, "--sets", "relax.sets", nargs="+", help="relaxed sets")
        s.add_argument("--baseline", default=None, help="baseline directory (baseline/<set>/summary.json)")
        s.add_argument("--outdir", required=True)
        s.set_defaults(func=func)

    s = stage(sub, "repeat-table", "mean ± std over split repeats, best only where the gap beats the spread")
    s.add_argument("--models", nargs="+", required=True, help="ROW::COLUMN=DIR, one per model and repeat")
    s.add_argument("--sets", nargs="+", default=["val", "test"], help="relaxed sets, in table order")
    s.add_argument("--out", required=True, help="output stem (writes .csv, .md, .tex)")
    s.add_argument("--caption", default="Relaxation MAE, mean ± std over split repeats", help="table caption")
    s.add_argument("--column-title", default="", help="prefix of the column headers, e.g. 'Cutoff ='")
    s.set_defaults(func=cmd_repeat_table)


def _add_structure_maps(sub: Any) -> None:
    s = stage(sub, "structure-map", "SOAP vectors, PCA on train, nearest-training distances and the map of a split")
    s.add_argument("--clean", required=True, help="clean frame store of the dataset")
    s.add_argument("--split", required=True, help="split CSV (material_id, split)")
    s.add_argument("--outdir", required=True, help="structure-map directory (soap.npy, pca.npz, structures.csv, map.png/pdf)")
    s.add_argument("--r-cut", type=float, required=True, help="SOAP cutoff (Å)")
    s.add_argument("--n-max", type=int, required=True, help="SOAP radial basis functions")
    s.add_argument("--l-max", type=int, required=True, help="SOAP maximum angular degree")
    s.add_argument("--sigma", type=float, required=True, help="Gaussian width (Å)")
    s.add_argument("--chunk", type=int, required=True, help="structures per block (bounds the memory)")
    s.set_defaults(func=cmd_structure_map)

    s = stage(sub, "novelty", "one model's relaxation energy error against SOAP distance to training")
    s.add_argument("--structures", required=True, help="structures.csv of the model's dataset and split")
    s.add_argument("--errors", required=True, help="errors.csv of the model's evaluation")
    s.add_argument("--set", required=True, help="the relaxed set (val or test)")
    s.add_argument("--outdir", required=True, help="where novelty.csv/json/png/pdf and error_map.png/pdf go")
    s.add_argument("--title", default="", help="figure title")
    s.set_defaults(func=cmd_novelty)

    s = stage(sub, "novelty-table", "gather novelty.json files into one CSV")
    s.add_argument("--summaries", nargs="+", required=True, help="MODEL=PATH of each novelty.json")
    s.add_argument("--out", required=True, help="output CSV")
    s.set_defaults(func=cmd_novelty_table)
