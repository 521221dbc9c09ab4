"""Energy-only NequIP models of alloy formation energies (thesis 4.4), run in the ``nequip``
environment (NequIP 0.19, e3nn 0.6; it cannot share an interpreter with mace-torch).

Inputs (:func:`build_inputs`): one structure file per set (train, val, test) – the structures
relaxed by an ML model (``{model}/relax/{set}/final.extxyz``) or the DFT-relaxed ones – and the
alloy's ``formation_energies.csv``. Each structure gets its formation energy **per cell**
(extensive: per-atom value × atoms) as ASE's ``energy``, in meV (:data:`TARGET_SCALE`); the
model sums atomic energies. A
structure whose relaxation failed (info ``failure`` other than ``step_limit``), that has no
formation energy, or whose atom count differs from the DFT structure, is left out and listed
in ``inputs.json``.

Training (:func:`train_and_predict`): a Hydra config is generated (``config.yaml``) and
``nequip-train`` runs it: ``NequIPLightningModule`` (the EMA module barely moves on small
data), ``EnergyOnlyLoss(per_atom_energy=True)``, ``EnergyOnlyMetrics`` (per-atom MAE
monitored), ``EnergyOnlyDataStatisticsManager``, a ``NequIPGNNModel`` with
``do_derivatives: false``, Adam (thesis: lr 0.0075, batch size 16) and a CSV logger. The run
ends with a ``test`` stage on the best checkpoint over the train, val and test files, whose
predictions ``TestTimeXYZFileWriter`` writes in file order; they become ``predictions.csv``
(material_id, set, n_atoms, reference and predicted formation energy per cell and per atom,
eV). ``metrics.csv`` holds one row per epoch (validation per-atom energy MAE in meV/atom).
``status.json`` is ``ok`` or ``failed`` with the reason: a failed training never raises, so
the tables show it as "–".

This module imports only NumPy, pandas, PyYAML and ASE at module level.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import pandas as pd
import yaml
from ase.calculators.singlepoint import SinglePointCalculator

from mlff2d.training import divergence
from mlff2d.config import schema_defaults
from mlff2d.formation.energies import read_formation_energies
from mlff2d.formation.nequip_config import DIVERGED, TARGET_SCALE, hydra_config

log = logging.getLogger(__name__)

SETS = ("train", "val", "test")
#: Settings of a formation-energy NequIP model: the config schema's ``formation.nequip`` defaults
#: (its ``resources`` are the scheduler's) and ``devices`` (> 1: data-parallel over that many
#: GPUs, nequip's SimpleDDPStrategy; set by the rule from the job's GPUs).
DEFAULTS: dict[str, Any] = {
    **{k: v for k, v in schema_defaults("formation.nequip").items() if k != "resources"},
    "devices": 1,
}
#: A predicted formation energy beyond this (eV/atom) is no result: the model diverged.
NONPHYSICAL_EV_PER_ATOM = 100.0
#: Failures of a relaxation whose final structure is still used (as in evaluation.py).
USABLE_FAILURES = ("", "step_limit")
PREDICTION_COLUMNS = ("material_id", "set", "n_atoms", "formation_energy_per_cell_eV", "predicted_per_cell_eV",
                      "formation_energy_per_atom_eV", "predicted_per_atom_eV")


# ------------------------------------------------------------------------------------- inputs


def build_inputs(formation_csv: str | Path, structure_files: Mapping[str, str | Path], outdir: str | Path) -> dict[str, Any]:
    """Write ``{set}.extxyz`` (formation energy per cell as ``energy``) and ``inputs.json``
    (counts and the structures left out, with reasons); returns the latter."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    table = read_formation_energies(formation_csv).set_index("material_id")
    info: dict[str, Any] = {"counts": {}, "left_out": {}}
    for set_name, path in structure_files.items():
        kept, left_out = [], {}
        images = ase.io.read(path, index=":") if Path(path).exists() and Path(path).stat().st_size else []
        for atoms in images:
            mid = str(atoms.info.get("material_id"))
            failure = str(atoms.info.get("failure", "") or "")
            if failure not in USABLE_FAILURES:
                left_out[mid] = failure
                continue
            if mid not in table.index:
                left_out[mid] = "no_formation_energy"
                continue
            row = table.loc[mid]
            if int(row["n_atoms"]) != len(atoms):
                left_out[mid] = f"atom_count {len(atoms)} != {int(row['n_atoms'])}"
                continue
            if not np.all(np.isfinite(atoms.positions)):
                left_out[mid] = "non_finite_positions"
                continue
            out = atoms.copy()
            out.info = {"material_id": mid}
            out.pbc = True
            e_cell = float(row["formation_energy_per_atom_eV"]) * len(atoms)
            out.calc = SinglePointCalculator(out, energy=e_cell * TARGET_SCALE)  # meV per cell
            kept.append(out)
        ase.io.write(outdir / f"{set_name}.extxyz", kept, format="extxyz")
        info["counts"][set_name] = len(kept)
        info["left_out"][set_name] = left_out
    (outdir / "inputs.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


# ------------------------------------------------------------------------------------- config


def resolve_settings(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """DEFAULTS overridden by ``params``; unknown keys are an error."""
    params = dict(params or {})
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown NequIP formation setting(s) {unknown}; known: {sorted(DEFAULTS)}")
    return {**DEFAULTS, **params}




def _symbols(paths: list[Path]) -> list[str]:
    symbols: set[str] = set()
    for p in paths:
        for atoms in ase.io.read(p, index=":"):
            symbols.update(atoms.get_chemical_symbols())
    return sorted(symbols)


def nequip_train_command() -> str:
    """``nequip-train`` of this interpreter's environment (else the one on the PATH)."""
    local = Path(sys.executable).parent / "nequip-train"
    return str(local) if local.exists() else "nequip-train"


# ------------------------------------------------------------------------------------- training


def read_metrics(run_dir: Path) -> pd.DataFrame:
    """Per-epoch validation metrics of the CSV logger: epoch (completed epochs, 1-based as in every
    family's metrics.csv), energy_mae_meV_per_atom,
    energy_rmse_meV_per_atom (validation, per atom), lr."""
    path = run_dir / "csv" / "version_0" / "metrics.csv"
    cols = ["epoch", "energy_mae_meV_per_atom", "train_loss"]
    if not path.exists():
        return pd.DataFrame(columns=cols)
    raw = pd.read_csv(path)
    mae = "val0_epoch/per_atom_energy_mae"
    loss = "train_loss_epoch/weighted_sum"
    out = pd.DataFrame(columns=cols)
    if mae in raw:
        val = raw[raw[mae].notna()].groupby("epoch")[mae].last() * 1000.0 / TARGET_SCALE
        out = pd.DataFrame({"epoch": val.index.astype(int) + 1, "energy_mae_meV_per_atom": val.to_numpy()})  # 1-based
        if loss in raw:
            out["train_loss"] = (out["epoch"] - 1).map(raw[raw[loss].notna()].groupby("epoch")[loss].last())
    return out


def read_predictions(run_dir: Path, data_dir: Path, test_sets: list[str]) -> pd.DataFrame:
    """Predictions of the test stage, matched to the input files by order (and checked)."""
    rows = []
    for k, set_name in enumerate(test_sets):
        inputs = ase.io.read(data_dir / f"{set_name}.extxyz", index=":")
        pred_file = run_dir / f"pred_dataset{k}.xyz"
        preds = ase.io.read(pred_file, index=":") if pred_file.exists() else []
        if len(preds) != len(inputs):
            raise RuntimeError(f"{pred_file}: {len(preds)} predictions for {len(inputs)} {set_name} structures")
        for atoms, pred in zip(inputs, preds):
            ref_scaled = float(atoms.get_potential_energy())
            echo = float(pred.info.get("original_dataset_energy", ref_scaled))
            if len(pred) != len(atoms) or abs(echo - ref_scaled) > 1e-3 * max(1.0, abs(ref_scaled)):
                raise RuntimeError(f"{pred_file}: prediction order does not match {set_name}.extxyz at {atoms.info['material_id']}")
            e_scaled = float(pred.get_potential_energy()) if pred.calc is not None else float(pred.info["energy"])
            ref, e = ref_scaled / TARGET_SCALE, e_scaled / TARGET_SCALE
            n = len(atoms)
            rows.append({"material_id": str(atoms.info["material_id"]), "set": set_name, "n_atoms": n,
                         "formation_energy_per_cell_eV": ref, "predicted_per_cell_eV": e,
                         "formation_energy_per_atom_eV": ref / n, "predicted_per_atom_eV": e / n})
    return pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))


def train_and_predict(data_dir: str | Path, outdir: str | Path, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Train one energy-only NequIP model on ``data_dir/{train,val}.extxyz`` and predict every
    set; writes ``config.yaml``, ``metrics.csv``, ``predictions.csv``, ``summary.json``,
    ``status.json`` into ``outdir`` (the run itself in ``outdir/run``, fresh each time).
    Never raises for a failed training: the status says why."""
    from mlff2d.formation.energies import error_stats
    from mlff2d.io.provenance import write_provenance

    data_dir, outdir = Path(data_dir).resolve(), Path(outdir).resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    start = time.time()
    status: dict[str, Any]
    try:
        s = resolve_settings(params)
        (outdir / "params.yaml").write_text(yaml.safe_dump(s, sort_keys=True))
        write_provenance(outdir)
        counts = {t: _count(data_dir / f"{t}.extxyz") for t in SETS}
        if counts["train"] < 2 or counts["val"] < 1:
            raise ValueError(f"too few usable structures to train: {counts}")
        test_sets = [t for t in SETS if counts[t] > 0]
        symbols = _symbols([data_dir / f"{t}.extxyz" for t in test_sets])
        run_dir = outdir / "run"
        shutil.rmtree(run_dir, ignore_errors=True)  # the xyz writer appends: start fresh
        run_dir.mkdir(parents=True)
        (outdir / "nequip-train.log").unlink(missing_ok=True)
        config = hydra_config(data_dir, run_dir, symbols, test_sets, s)
        stages = {"config": config}
        if int(s["devices"]) > 1:
            # DDP shards the test sets over the ranks: train data-parallel, then restart from the last
            # checkpoint on one device (nothing left to train) and predict there
            trainer = {k: v for k, v in config["trainer"].items() if k != "strategy"}
            stages = {"config": {**config, "run": ["train"]},
                      "config_test": {**config, "run": ["train", "test"], "ckpt_path": str(run_dir / "last.ckpt"),
                                      "trainer": {**trainer, "devices": 1}}}
        for name, stage in stages.items():
            (outdir / f"{name}.yaml").write_text(yaml.safe_dump(stage, sort_keys=False))
            _nequip_train(outdir, run_dir, name)
            if name == "config":  # the training's own per-epoch metrics
                metrics = read_metrics(run_dir)
                metrics.to_csv(outdir / "metrics.csv", index=False, lineterminator="\n")
                _check_divergence(run_dir, metrics, s["divergence_factor"])
        preds = read_predictions(run_dir, data_dir, test_sets)
        _check_predictions(preds, len(read_metrics(run_dir)))
        preds.to_csv(outdir / "predictions.csv", index=False, lineterminator="\n")
        summary = {"sets": {t: error_stats(preds.loc[preds["set"] == t, "predicted_per_atom_eV"],
                                           preds.loc[preds["set"] == t, "formation_energy_per_atom_eV"]) for t in SETS},
                   "counts": counts, "symbols": symbols}
        (outdir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        status = {"status": "ok", "model": str(run_dir / "best.ckpt")}
    except Exception as exc:  # a failed training must not stop the campaign
        status = {"status": "failed", "reason": divergence.failure_reason(exc), "traceback": traceback.format_exc()}
        if not (outdir / "metrics.csv").exists():
            pd.DataFrame(columns=["epoch", "energy_mae_meV_per_atom", "train_loss"]).to_csv(outdir / "metrics.csv", index=False)
        pd.DataFrame(columns=list(PREDICTION_COLUMNS)).to_csv(outdir / "predictions.csv", index=False)
        log.error("NequIP formation training in %s failed: %s", outdir, status["reason"])
    status["wall_time_s"] = round(time.time() - start, 3)
    (outdir / "status.json").write_text(json.dumps(status, indent=2) + "\n")
    return status


def _check_divergence(run_dir: Path, metrics: pd.DataFrame, factor: float | None) -> None:
    """Raise :class:`~mlff2d.training.divergence.TrainingDiverged` when the validation energy MAE turned
    NaN/inf or grew beyond ``factor`` × its best: as the run's :class:`DivergenceStop` callback
    recorded when it stopped the training, else as the logged metrics show."""
    if (run_dir / DIVERGED).exists():
        raise divergence.TrainingDiverged(json.loads((run_dir / DIVERGED).read_text())["reason"])
    column = ("energy_mae_meV_per_atom",)
    reason = divergence.diverged_at(metrics.to_dict("records"), factor, columns=column, growth=column)
    if reason:
        raise divergence.TrainingDiverged(reason)


def _check_predictions(preds: pd.DataFrame, epochs: int) -> None:
    """A diverged model whose validation metric looked finite: NequIP's metrics skip NaN
    predictions, so a model predicting NaN, or formation energies beyond
    :data:`NONPHYSICAL_EV_PER_ATOM`, is caught in its predictions."""
    values = preds["predicted_per_atom_eV"].to_numpy(dtype=float)
    bad = ~np.isfinite(values) | (np.abs(np.nan_to_num(values, nan=np.inf)) > NONPHYSICAL_EV_PER_ATOM)
    if bad.any():
        worst = values[bad][0]
        raise divergence.TrainingDiverged(
            f"diverged at epoch {epochs} (predicted formation energy = {worst:.4g} eV/atom; {int(bad.sum())} of "
            f"{len(values)} predictions are NaN/inf or beyond ±{NONPHYSICAL_EV_PER_ATOM:g} eV/atom)")


def _nequip_train(outdir: Path, run_dir: Path, config_name: str) -> None:
    """Run ``nequip-train`` on ``outdir/<config_name>.yaml`` in ``run_dir``; its output is
    appended to ``outdir/nequip-train.log``; a non-zero exit raises with the last lines."""
    cmd = [nequip_train_command(), "-cp", str(outdir), "-cn", config_name]
    log.info("running %s", " ".join(cmd))
    env = {**os.environ, "HYDRA_FULL_ERROR": "1"}
    proc = subprocess.run(cmd, cwd=run_dir, env=env, capture_output=True, text=True)
    with open(outdir / "nequip-train.log", "a") as fh:
        fh.write(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        read_metrics(run_dir).to_csv(outdir / "metrics.csv", index=False, lineterminator="\n")
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"nequip-train exited with {proc.returncode}: {' | '.join(tail)}")


def _count(path: Path) -> int:
    if not path.exists() or not path.stat().st_size:
        return 0
    return len(ase.io.read(path, index=":"))


def run(formation_csv: str | Path, structure_files: Mapping[str, str | Path], outdir: str | Path,
        params: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """:func:`build_inputs` into ``outdir/data``, then :func:`train_and_predict`."""
    outdir = Path(outdir)
    try:
        build_inputs(formation_csv, structure_files, outdir / "data")
    except Exception as exc:
        outdir.mkdir(parents=True, exist_ok=True)
        status = {"status": "failed", "reason": f"inputs: {type(exc).__name__}: {exc}"}
        pd.DataFrame(columns=list(PREDICTION_COLUMNS)).to_csv(outdir / "predictions.csv", index=False)
        pd.DataFrame(columns=["epoch", "energy_mae_meV_per_atom", "train_loss"]).to_csv(outdir / "metrics.csv", index=False)
        (outdir / "status.json").write_text(json.dumps(status, indent=2) + "\n")
        return status
    return train_and_predict(outdir / "data", outdir, params)
