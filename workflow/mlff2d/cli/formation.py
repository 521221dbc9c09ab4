"""``mlff2d`` formation-energy stages (workflow/rules/formation.smk): formation energies, the
cluster expansion, the composition baseline, energy-only NequIP models and their report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mlff2d import layout
from mlff2d.cli._common import log, points, schema_option, stage


def cmd_formation_energies(args: argparse.Namespace) -> None:
    from mlff2d.formation.energies import write_formation_energies

    table = None
    if args.table:
        table = {"table": args.table, "id_column": args.id_column, "energy_column": args.energy_column,
                 "unit": args.unit, "external_ce_column": args.external_ce_column or None,
                 "alloy_column": args.alloy_column or None}
    frame = write_formation_energies(args.alloy, args.relax_sets, args.out, args.end_members, table=table)
    log.info("%s: formation energies of %d structures", args.alloy, len(frame))


def cmd_cluster_expansion(args: argparse.Namespace) -> None:
    from mlff2d.formation.cluster_expansion import run_cluster_expansion

    summary = run_cluster_expansion(args.formation, args.relax_sets, args.outdir, json.loads(args.settings))
    log.info("cluster expansion: cutoffs %s, MAE (meV/atom) %s", summary["cutoffs"],
             {k: round(v["mae"], 4) for k, v in summary["sets"].items()})


def cmd_formation_baseline(args: argparse.Namespace) -> None:
    from mlff2d.formation.energies import composition_baseline, error_stats, read_formation_energies

    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    pred = composition_baseline(read_formation_energies(args.formation), order=args.order)
    pred.to_csv(out / "predictions.csv", index=False, lineterminator="\n")
    sets = {s: error_stats(g["predicted_per_atom_eV"], g["formation_energy_per_atom_eV"]) for s, g in pred.groupby("set")}
    (out / "summary.json").write_text(json.dumps({"model": "Redlich-Kister in x", "order": args.order, "sets": sets}, indent=2) + "\n")


def cmd_formation_nequip(args: argparse.Namespace) -> None:
    from mlff2d.formation.nequip_model import run

    status = run(args.formation, {"train": args.train, "val": args.val, "test": args.test}, args.outdir, json.loads(args.params))
    log.info("NequIP formation model in %s: %s", args.outdir, status["status"])


def cmd_formation_report(args: argparse.Namespace) -> None:
    from mlff2d.formation.report import write_report

    paths = write_report(points(args.alloys), args.outdir, split=args.split)
    log.info("wrote %d formation tables and figures to %s", len(paths), args.outdir)


def add_commands(sub: Any) -> None:
    """Register the formation-energy stages' sub-commands."""
    _add_formation_energies(sub)

    s = stage(sub, "cluster-expansion", "icet cluster expansion fitted on the training split only")
    s.add_argument("--formation", required=True, help="formation_energies.csv")
    s.add_argument("--relax-sets", required=True, help="directory with {train,val,test}_reference.extxyz")
    s.add_argument("--outdir", required=True)
    s.add_argument("--settings", default="{}", help="JSON: cutoff_candidates, fit_method, cv_folds, prototypes (per alloy), ...")
    s.set_defaults(func=cmd_cluster_expansion)

    s = stage(sub, "formation-baseline", "formation energy from the alloy fraction alone")
    s.add_argument("--formation", required=True)
    s.add_argument("--outdir", required=True)
    schema_option(s, "--order", "formation.baseline_order", type=int, help="Redlich-Kister order")
    s.set_defaults(func=cmd_formation_baseline)

    s = stage(sub, "formation-nequip", "energy-only NequIP on relaxed structures (nequip environment)")
    s.add_argument("--formation", required=True)
    for name in ("train", "val", "test"):
        s.add_argument(f"--{name}", required=True, help=f"{name} structures (extxyz)")
    s.add_argument("--outdir", required=True)
    s.add_argument("--params", default="{}", help="JSON of settings overriding mlff2d.formation.nequip_model.DEFAULTS")
    s.set_defaults(func=cmd_formation_nequip)

    s = stage(sub, "formation-report", "tables 4.8, 4.9 and figures 4.10, 4.11")
    s.add_argument("--alloys", nargs="+", required=True, help=f"ALLOY=DIR (results/<campaign>/{layout.FORMATION_ALLOY})")
    s.add_argument("--split", default="")
    s.add_argument("--outdir", required=True)
    s.set_defaults(func=cmd_formation_report)


def _add_formation_energies(sub: Any) -> None:
    s = stage(sub, "formation-energies", "alloy formation energies per site and per atom (thesis 4.4)")
    s.add_argument("--alloy", required=True, help="alloy dataset name, e.g. MoWS2 (metal order = name order)")
    s.add_argument("--relax-sets", required=True, help="directory with {train,val,test}_reference.extxyz")
    s.add_argument("--out", required=True, help="output formation_energies.csv")
    s.add_argument("--end-members", required=True, help="output end_members.json")
    s.add_argument("--table", default=None, help="read formation energies from this CSV instead")
    schema_option(s, "--id-column", "formation.table.id_column", help="--table: column of the material ids")
    schema_option(s, "--energy-column", "formation.table.energy_column", help="--table: column of the formation energies")
    schema_option(s, "--unit", "formation.table.unit", choices=("eV/site", "eV/atom", "meV/atom"), help="--table: unit of that column")
    schema_option(s, "--external-ce-column", "formation.table.external_ce_column", help="external cluster-expansion prediction (same unit)")
    schema_option(s, "--alloy-column", "formation.table.alloy_column", help="keep only rows whose value here is the alloy name")
    s.set_defaults(func=cmd_formation_energies)
