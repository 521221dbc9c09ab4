"""Relaxation of the val/test start structures with a trained force field (thesis 4.1–4.2).

Every model family is used only through its ASE calculator
(``mlff2d.families.get_family(family).calculator(model, device)``, engine ``ase``) or its
batched evaluation (``batch_evaluator(model, device)``, engine ``batched``, the default: many
structures per model call, :mod:`mlff2d.relaxation.batched`, same outcomes), so this module never
branches on the family.

One relaxation (:func:`relax_structure`): ASE's FIRE on
``FrechetCellFilter(atoms, mask=[1, 1, 0, 0, 0, 1])`` – positions and the in-plane cell relax,
the out-of-plane cell vector stays exactly fixed – until the largest force (and in-plane cell
"force") is below ``fmax`` or ``max_steps`` FIRE steps have been taken. Atoms are made
periodic in all three directions (a 2D cell carries vacuum along z; matgl treats non-periodic
Atoms as a molecule). The filter is :func:`mlff2d.relaxation.cell_filter.cell_filter`: ASE's FIRE path at
a fraction of its cost, so ≥ 90 % of a relaxation is spent inside the calculator even for a
tiny M3GNet.

Outcomes (``failure`` in the record; the non-finite check runs after every FIRE step, the
explosion check every ``check_every`` steps and on the last one):

* ``""`` – converged within ``max_steps``;
* ``"exception: <Type>: <message>"`` – anything raised, by the calculator or the optimiser;
* ``"non_finite_energy"`` – the calculator returned a NaN/inf energy, force or stress
  component (the run stops at the first one);
* ``"exploded"`` – the structure fell apart (:func:`mlff2d.relaxation.checks.explosion`): two atoms
  closer than ``min_distance`` (0.5 Å), the in-plane area per atom changed by more than a
  factor ``max_area_factor`` (3) either way, or the layer split into more pieces than it
  started with at a ``bond_cutoff`` of 5 Å (an atom or group that flew more than 5 Å from the
  rest of the layer counts as a new piece);
* ``"step_limit"`` – ``max_steps`` steps without converging.

Energy per atom and area per atom are recorded for converged and step-limit runs (the final
structure is a real structure); they are NaN for the other failures. A failure never raises.

A shard (:func:`relax_shard`) relaxes a contiguous slice of a start file with the model of one
sweep point, loading the model once. A point whose training failed, or whose model does
not load, gives every structure ``"training_failed: <reason>"`` / ``"model_failed: <reason>"``
and the shard still writes its files. :func:`gather` concatenates the shards in order.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from ase import Atoms

from mlff2d.config import schema_default
# the checks and the filter live in their own modules; their public names are also importable from here
from mlff2d.relaxation.checks import BOND_CUTOFF, MAX_AREA_FACTOR, MIN_DISTANCE, TimedCalculator, area_per_atom, explosion
from mlff2d.relaxation.checks import _min_image_distances, _n_pieces
from mlff2d.relaxation.cell_filter import IN_PLANE_MASK, cell_filter  # noqa: F401

logger = logging.getLogger(__name__)

RECORD_SCHEMA = pa.schema(
    [
        ("material_id", pa.string()),
        ("formula", pa.string()),
        ("n_atoms", pa.int64()),
        ("converged", pa.bool_()),
        ("steps", pa.int64()),
        ("energy_per_atom", pa.float64()),  # eV/atom
        ("area_per_atom", pa.float64()),  # Å²/atom
        ("wall_time_s", pa.float64()),
        ("calc_time_s", pa.float64()),
        ("failure", pa.string()),
    ],
    metadata={b"units": b"energy_per_atom eV/atom; area_per_atom A^2/atom; times s"},
)
RECORD_COLUMNS = RECORD_SCHEMA.names


def _clean_message(text: str, limit: int = 300) -> str:
    """One line without double quotes or backslashes (it goes into extxyz comment lines, whose
    reader drops backslashes), at most ``limit`` characters."""
    text = re.sub(r"\s+", " ", str(text)).strip().replace('"', "'").replace("\\", "/")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _exception_text(exc: BaseException) -> str:
    return _clean_message(f"{type(exc).__name__}: {exc}")


def _prepare(atoms: Atoms) -> Atoms:
    """A bare periodic copy (no calculator, no labels) keeping ``material_id``."""
    out = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell.array, pbc=True)
    out.info["material_id"] = str(atoms.info.get("material_id", ""))
    return out


def _record(atoms: Atoms, **values: Any) -> dict[str, Any]:
    rec = {
        "material_id": str(atoms.info.get("material_id", "")),
        "formula": atoms.get_chemical_formula(),
        "n_atoms": len(atoms),
        "converged": False,
        "steps": 0,
        "energy_per_atom": math.nan,
        "area_per_atom": math.nan,
        "wall_time_s": 0.0,
        "calc_time_s": 0.0,
        "failure": "",
    }
    rec.update(values)
    return rec


def relax_structure(
    atoms: Atoms,
    calc: Any,
    fmax: float = schema_default("relax.fmax"),
    max_steps: int = schema_default("relax.max_steps"),
    min_distance: float = MIN_DISTANCE,
    bond_cutoff: float = BOND_CUTOFF,
    max_area_factor: float = MAX_AREA_FACTOR,
    check_every: int = 5,
) -> tuple[Atoms, dict[str, Any]]:
    """Relax positions and the in-plane cell of ``atoms`` with ``calc``; never raises.

    Args:
        atoms: the start structure (not modified; ``info["material_id"]`` is carried over).
        calc: an ASE calculator (energy eV, forces eV/Å, stress eV/Å³).
        fmax: convergence threshold (eV/Å) on the filter's forces, cell included.
        max_steps: the most FIRE steps.
        min_distance, bond_cutoff, max_area_factor: the explosion limits (module docstring).
        check_every: run the explosion check every this many steps and on the last one (FIRE
            moves an atom at most 0.2 Å per step, so 5 steps are at most 1 Å).

    Returns:
        The final structure (periodic, no calculator; the start structure after an exception)
        and its record (keys :data:`RECORD_COLUMNS`).
    """
    t0 = time.perf_counter()
    check_every = max(1, int(check_every))
    start = _prepare(atoms)
    work = start.copy()
    timed = TimedCalculator(calc)
    run = _Run()
    energy = area = math.nan
    final = work
    try:
        start_area = area_per_atom(start)
        start_pieces = _n_pieces(_min_image_distances(start.positions, start.cell.array, bond_cutoff), bond_cutoff)
        if callable(getattr(calc, "reset", None)):
            calc.reset()  # no results cached from the previous structure (same geometry, other id)
        work.calc = timed
        exploded = functools.partial(explosion, start_area=start_area, start_pieces=start_pieces, min_distance=min_distance,
                                     bond_cutoff=bond_cutoff, max_area_factor=max_area_factor)
        _fire(work, timed, run, fmax, max_steps, check_every, exploded)
        if run.failure in ("", "step_limit"):
            energy = float(work.get_potential_energy()) / len(work)
            area = area_per_atom(work)
    except Exception as exc:  # a failed relaxation is a result, not an error
        run.failure = f"exception: {_exception_text(exc)}"
        run.converged, energy, area, final = False, math.nan, math.nan, start
    work.calc = None
    if run.failure and run.failure != "step_limit" and not np.isfinite(final.positions).all():
        final = start
    record = _record(start, converged=run.converged, steps=int(run.steps), energy_per_atom=energy, area_per_atom=area,
                     wall_time_s=time.perf_counter() - t0, calc_time_s=timed.seconds, failure=run.failure)
    return _final_structure(final, run.converged, run.failure), record


@dataclass
class _Run:
    """Where a relaxation stands: FIRE steps taken, converged, failure (``""`` while none)."""

    steps: int = 0
    converged: bool = False
    failure: str = ""


def _fire(work: Atoms, timed: TimedCalculator, run: _Run, fmax: float, max_steps: int, check_every: int,
          exploded: Callable[[Atoms], str]) -> None:
    """FIRE on :func:`cell_filter` of ``work`` until converged, a non-finite value, an explosion
    (checked every ``check_every`` steps and on the last one) or ``max_steps``; ``run`` follows
    along (its steps stay right when something raises)."""
    from ase.optimize import FIRE

    opt = FIRE(cell_filter(work), logfile=None)
    converged = False
    for converged in opt.irun(fmax=fmax, steps=max_steps):
        run.steps = opt.nsteps
        if timed.non_finite:
            run.failure = "non_finite_energy"
            break
        if run.steps % check_every and not converged and run.steps < max_steps:
            continue  # the explosion check runs every check_every steps and at the end
        why = exploded(work)
        if why:
            logger.warning("%s exploded after %d steps: %s", work.info["material_id"], run.steps, why)
            run.failure = "exploded"
            break
    run.converged = bool(converged) and not run.failure
    if not run.converged and not run.failure:
        run.failure = "step_limit"


def _final_structure(atoms: Atoms, converged: bool, failure: str) -> Atoms:
    """A bare periodic copy with info ``material_id``, ``converged`` and, for a failure,
    ``failure`` (ASE's extxyz cannot write an empty string: it would not read back)."""
    out = _prepare(atoms)
    out.info["converged"] = bool(converged)
    if failure:
        out.info["failure"] = failure
    return out


# ---------------------------------------------------------------------------------------- shards


def count_structures(path: str | Path) -> int:
    """Number of frames in an extxyz file, without parsing them."""
    n = 0
    with open(path) as f:
        while True:
            line = f.readline()
            if not line:
                return n
            if not line.strip():
                continue
            natoms = int(line.split()[0])
            for _ in range(natoms + 1):
                if not f.readline():
                    raise ValueError(f"{path}: truncated frame {n}")
            n += 1


def n_shards(start_file: str | Path, shard_size: int) -> int:
    """ceil(N / shard_size), at least 1 (an empty set has one shard that writes empty files)."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    return max(1, math.ceil(count_structures(start_file) / shard_size))


def read_shard(start_file: str | Path, shard: int, shard_size: int) -> list[Atoms]:
    """Structures [shard*shard_size, (shard+1)*shard_size) of ``start_file`` (fewer at the end)."""
    if shard < 0 or shard_size < 1:
        raise ValueError(f"need shard >= 0 and shard_size >= 1, got {shard}, {shard_size}")
    lo, hi = shard * shard_size, (shard + 1) * shard_size
    if lo >= count_structures(start_file):
        return []
    return list(ase.io.read(start_file, index=f"{lo}:{hi}", format="extxyz"))


ENGINES = ("ase", "batched")


def _load_model(family: str, point_dir: Path, device: str | None, engine: str) -> tuple[Any, str]:
    """The sweep point's model, or None and the failure every structure gets: an ASE calculator
    (engine ``ase``) or a batched evaluator (``batched``; the family's ``batch_evaluator``, else
    its calculator one structure at a time)."""
    status = json.loads((point_dir / "status.json").read_text())
    if status.get("status") != "ok":
        return None, "training_failed: " + _clean_message(status.get("reason") or f"status {status.get('status')!r}")
    from mlff2d.families import get_family

    model = Path(status.get("model", ""))
    if not model.is_absolute() and not model.exists():
        model = point_dir / model
    try:
        module = get_family(family)
        if engine == "ase":
            return module.calculator(model, device), ""
        from mlff2d.relaxation.batched import calculator_evaluator

        if callable(getattr(module, "batch_evaluator", None)):
            return module.batch_evaluator(model, device), ""
        return calculator_evaluator(module.calculator(model, device)), ""
    except Exception as exc:
        if not model.exists():
            return None, (f"model_missing: {model} is gone (deleted after training?); retrain with "
                          f"snakemake --forcerun {point_dir / 'status.json'}")
        return None, f"model_failed: {_exception_text(exc)}"


def write_records(records: Sequence[dict[str, Any]] | pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """Write relaxation records (columns :data:`RECORD_COLUMNS`) to Parquet; returns them."""
    frame = pd.DataFrame(records, columns=RECORD_COLUMNS)
    table = pa.Table.from_pandas(frame, schema=RECORD_SCHEMA, preserve_index=False)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")  # a kill or a full disk never leaves half a file
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return frame


def relax_shard(
    family: str,
    point_dir: str | Path,
    start_file: str | Path,
    shard: int,
    shard_size: int,
    records_out: str | Path,
    structures_out: str | Path,
    fmax: float = schema_default("relax.fmax"),
    max_steps: int = schema_default("relax.max_steps"),
    device: str | None = None,
    engine: str = schema_default("relax.engine"),
    batch_atoms: int = schema_default("relax.batch_atoms"),
) -> pd.DataFrame:
    """Relax one shard of ``start_file`` with the model of sweep point ``point_dir``.

    Reads ``point_dir/status.json`` (a missing file is an error: it is the training rule's
    output) and loads the model once. ``engine`` ``ase`` relaxes one structure at a time with
    the ASE calculator (:func:`relax_structure`); ``batched`` relaxes many per model call
    (:func:`mlff2d.relaxation.batched.relax_batched`, at most ``batch_atoms`` atoms per call, 0:
    automatic), with the same outcomes. Writes the records (Parquet, :data:`RECORD_SCHEMA`)
    and the final structures (extxyz, same order, info ``material_id``, ``converged`` and
    ``failure`` – absent when converged, as extxyz cannot hold an empty string; the start
    structure where there is no final one) and returns the records.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown relaxation engine {engine!r}; one of {ENGINES}")
    point_dir = Path(point_dir)
    structures = read_shard(start_file, shard, shard_size)
    model, load_failure = (None, "") if not structures else _load_model(family, point_dir, device, engine)
    if load_failure:
        logger.warning("%s: %s; recording it for all %d structures", point_dir, load_failure, len(structures))
        finals = [_final_structure(atoms, False, load_failure) for atoms in structures]
        results = [(final, _record(final, failure=load_failure)) for final in finals]
    elif engine == "batched" and structures:
        from mlff2d.relaxation.batched import Limits, batch_budget, relax_batched
        from mlff2d.families import pick_device

        budget = batch_budget(batch_atoms, pick_device(device))
        results = relax_batched(structures, model, Limits(fmax=fmax, max_steps=max_steps), budget)
    else:
        results = []
        start = time.perf_counter()
        for k, atoms in enumerate(structures, 1):  # one at a time: progress as it goes
            results.append(relax_structure(atoms, model, fmax=fmax, max_steps=max_steps))
            _log_record(results[-1][1], f"{k}/{len(structures)}", (time.perf_counter() - start) / k * (len(structures) - k))
    for k, (_, record) in enumerate(results if engine == "batched" and not load_failure else [], 1):
        _log_record(record, f"{k}/{len(results)}")
    _write_structures([final for final, _ in results], structures_out)
    return write_records([record for _, record in results], records_out)


def _log_record(record: Mapping[str, Any], progress: str, eta_s: float | None = None) -> None:
    """One line per relaxed structure: k/N, outcome, steps, time (and the shard's ETA)."""
    logger.info(
        "%s %s %s: %s after %d steps, %.2f s (%.0f %% in the model)%s",
        progress, record["material_id"], record["formula"], record["failure"] or "converged", record["steps"],
        record["wall_time_s"], 100 * record["calc_time_s"] / max(record["wall_time_s"], 1e-12),
        "" if eta_s is None else f", shard ETA {eta_s:.0f} s",
    )  # fmt: skip


def _write_structures(finals: Sequence[Atoms], path: str | Path) -> None:
    """Write the final structures (extxyz) through a temporary file."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(path).with_name(f".{Path(path).name}.tmp")
    ase.io.write(tmp, list(finals), format="extxyz")
    os.replace(tmp, path)


def gather(
    records_files: Sequence[str | Path],
    structures_files: Sequence[str | Path],
    records_out: str | Path,
    structures_out: str | Path,
) -> pd.DataFrame:
    """Concatenate shard outputs in the given order; returns the gathered records."""
    if len(records_files) != len(structures_files):
        raise ValueError(f"{len(records_files)} records files but {len(structures_files)} structures files")
    frames = [pd.read_parquet(p, columns=RECORD_COLUMNS) for p in records_files]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=RECORD_COLUMNS)
    Path(structures_out).parent.mkdir(parents=True, exist_ok=True)
    with open(structures_out, "w") as out:
        for path in structures_files:
            text = Path(path).read_text()
            out.write(text if not text or text.endswith("\n") else text + "\n")
    return write_records(frame, records_out)
