"""GAP (Gaussian approximation potential, quippy-ase 0.10.3) as a model family: a one-shot
kernel fit with ``gap_fit`` and the ``quippy`` ASE calculator.

**Training data.** GAP reads the ``mace`` export (:mod:`mlff2d.data.export`): extxyz with
``REF_energy`` (eV, info), ``REF_forces`` (eV/Å, arrays) and ``REF_stress`` (eV/Å³, ASE sign:
tension positive, Voigt xx yy zz yz xz xy, info). :func:`train` writes a clean copy of the
training frames (``outdir/gap/train.xyz``: species, positions, cell, ``REF_energy`` and
``REF_forces`` only) and hands that to ``gap_fit`` with ``energy_parameter_name=REF_energy``
and ``force_parameter_name=REF_forces``.

**No virials.** ``gap_fit`` fits a virial as all 9 components with one σ_V per configuration;
it has no per-component weight, so the out-of-plane components (zz, xz, yz of a cell whose
stress is divided by a volume that is mostly vacuum) cannot be left out of a virial fit, and
setting them to zero would teach a wrong label. The stress labels therefore never reach
``gap_fit`` (``REF_stress`` is not in the copy, ``virial_parameter_name`` names no key):
energies and forces only. The stress of the fitted model is the exact derivative of its
energy, and the validation in-plane stress MAE (xx, yy, xy in GPa,
:func:`mlff2d.families.in_plane_stress_mae`) is reported as for every family. ``sigma_virial``
is kept in :data:`DEFAULTS` (it is part of ``default_sigma``) but has no effect without labels.

**Isolated-atom energies (e0).** ``e0: least_squares`` (default): per-element energies fitted by
least squares to the training energies per atom (``E/N = Σ_el x_el μ_el``, NumPy's minimum-norm
solution when the compositions do not fix every μ), the same model as the composition baseline
of :func:`mlff2d.relaxation.evaluation.fit_element_energies`; passed to ``gap_fit`` as
``e0={El:μ:...}``, so GAP learns the residual from the composition baseline. ``e0: average``
is gap_fit's ``e0_method=average`` (one per-atom mean for every species; GAP's own docs say
this only makes sense with one element). The Alexandria data has no isolated-atom frames, so
gap_fit's default (``isolated``) does not apply.

**Descriptors.** A 2-body distance term (``distance_2b``, squared-exponential kernel) for every
species pair that occurs within ``cutoff_2b`` in the training frames, plus a SOAP term
(``add_species=T``: one per central species, dot-product kernel ** ``soap_zeta``). The pairs
are listed one by one because gap_fit's own ``add_species`` for ``distance_2b`` also adds pairs
that never occur (W-Mo in a MoS2 + WS2 set) and then aborts in ``select_uniform`` (no data for
their sparse points). gap_fit reads its arguments from ``gap/gap_fit.cfg`` (``config_file=``):
with tens of species the pair list is longer than the command line it accepts. The full SOAP
grows with the square of the number of species (a universal 2D set of 40+ elements: tens of
thousands of components and GBs per descriptor); ``soap_mix_channels`` K > 0 compresses it to
K mixed channels (``R_mix=T Z_mix=T K=...``, Darby et al., npj Comput. Mater. 8, 166 (2022)),
which is what makes a universal GAP fit at all.

**Defaults** are those of the annotated ``gap_fit`` command-line example in the GAP
documentation (libAtoms, "The gap_fit program", https://libatoms.github.io/GAP/gap_fit.html):
2b cutoff 5.0 Å, 15 sparse points, δ 2.0 eV, θ 2.5 Å, uniform sparsification; SOAP
l_max 6, n_max 12, atom_sigma 0.5 Å, cutoff 5.0 Å, transition width 1.0 Å, 8000 sparse points
(CUR), δ 0.2 eV, ζ 4; ``default_sigma={0.002 0.2 0.2 0.0}`` (energy eV/atom, force eV/Å,
virial eV/atom, hessian); ``sparse_jitter=1e-8``.

**Sweep.** GAP has no learning rate and no batch size. The sweep still passes ``lr`` and
``batch_size`` (:func:`mlff2d.training.sweep.resolve_params` adds them, the sweep point's directory is
named by them): they are accepted, ignored by the fit and recorded in ``params.yaml`` as the
sweep gives them. The sweep grid keys are fixed by :func:`mlff2d.training.sweep.grid_table`
(``e_cut``, ``lr``, ``batch_size``): a GAP grid varies ``e_cut`` only (with ``lr: [1.0]``,
``batch_size: [1]``); hyper-parameters such as ``soap_cutoff`` and ``soap_n_sparse`` are set
through the block's ``params`` (one value per campaign). Varying them on a grid would need grid
keys beyond e_cut/lr/bs in the sweep and the rules.

**Outputs** under ``outdir``: ``model/gap.xml`` and its ``gap.xml.sparseX.*`` files (written to
``model.tmp`` and renamed, so ``model`` never holds half a fit), ``gap/train.xyz``,
``gap/gap_fit.log`` (gap_fit's stdout and stderr; a failed fit raises with its tail),
``metrics.csv`` with one row (``epoch`` 1, validation energy MAE meV/atom, force MAE meV/Å,
in-plane stress MAE GPa, ``time_s``: the wall time of gap_fit) and a log line in the format of
:func:`mlff2d.families.epoch_line`. A one-shot fit has no checkpoints: a rerun fits again.

**Calculator.** ``quippy.potential.Potential(param_filename=...)``: energy eV, forces eV/Å,
stress eV/Å³ with ASE's sign (tension positive, ``(1/V) ∂E/∂ε``; checked against finite
differences in the tests). quip evaluates one Atoms per call (no batched call over several
structures), so there is no ``batch_evaluator``: the relaxation runs through the calculator.
GAP runs on CPU (OpenMP threads; ``OMP_NUM_THREADS``); ``device`` is accepted and ignored.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
import pandas as pd
from ase import Atoms
from ase.data import chemical_symbols

from mlff2d.training import divergence
from mlff2d.families import METRIC_COLUMNS, STRESS_UNIT, FamilySpec, element_energies, epoch_line, in_plane_stress_mae
from mlff2d.io.units import EV_PER_A3_IN_GPA, voigt_to_matrix

logger = logging.getLogger(__name__)

SPEC = FamilySpec(
    name="gap",
    label="GAP",
    export_format="mace",
    env="main",
    transfer=False,
    epochs=False,
    sweep_default=None,
    alloy_default={
        "enabled": False, "e_cuts": None, "splits": None,
        "normal": {"lr": 1.0, "batch_size": 1}, "transfer": {"lr": 1.0, "batch_size": 1},
        "description": "GAP alloy models (normal mode only: a kernel fit cannot be fine-tuned); lr and batch size are ignored.",
    },
    description="GAP (quippy-ase gap_fit: 2-body + SOAP, energies and forces) one-shot kernel fit; "
                "lr and batch_size are ignored, hyper-parameters come from params.",
)

DEFAULTS: dict[str, Any] = {
    # 2-body distance term (distance_2b, ard_se kernel), one per species pair seen in training
    "cutoff_2b": 5.0,  # Å
    "n_sparse_2b": 15,
    "delta_2b": 2.0,  # eV
    "theta_2b": 2.5,  # Å (theta_uniform)
    # SOAP term (add_species=T, dot_product kernel ** zeta)
    "soap_cutoff": 5.0,  # Å
    "soap_cutoff_transition_width": 1.0,  # Å
    "soap_n_max": 12,
    "soap_l_max": 6,
    "soap_atom_sigma": 0.5,  # Å
    "soap_zeta": 4,
    "soap_n_sparse": 8000,
    "soap_delta": 0.2,  # eV
    # compressed SOAP (Darby et al., npj Comput. Mater. 2022): K mixed species/radial channels
    # (gap_fit Z_mix=T R_mix=T K=...); 0 = the full SOAP, whose size grows with the square of the
    # number of species (44 species at n_max 4, l_max 3: 51521 components per environment)
    "soap_mix_channels": 0,
    # default_sigma {energy force virial hessian}; no virial labels are given (module docstring)
    "sigma_energy": 0.002,  # eV/atom
    "sigma_forces": 0.2,  # eV/Å
    "sigma_virial": 0.2,  # eV/atom; no effect (virials are not fitted)
    "sparse_jitter": 1.0e-8,
    "e0": "least_squares",  # "least_squares" (per-element, fitted on train) or "average" (gap_fit's)
    "seed": 123,  # gap_fit rnd_seed
    "extra_args": {},  # further gap_fit options, e.g. {"openmp_chunk_size": 1000}
    # accepted from the sweep, ignored by the fit (recorded in params.yaml)
    "lr": 0.0,
    "batch_size": 1,
    **divergence.DEFAULTS,
}

_E0_METHODS = ("least_squares", "average")
ENERGY_KEY, FORCES_KEY = "REF_energy", "REF_forces"


def gap_fit_executable() -> Path:
    """``gap_fit`` of this Python's environment (the bin directory next to ``sys.executable``,
    not resolved through symlinks, so a venv's own bin is used), else the one on PATH."""
    here = Path(sys.executable).parent / "gap_fit"
    if here.is_file() and os.access(here, os.X_OK):
        return here
    found = shutil.which("gap_fit")
    if found:
        return Path(found)
    raise FileNotFoundError(f"gap_fit not found next to {sys.executable} nor on PATH; install quippy-ase==0.10.3")


def species_pairs(frames: Sequence[Atoms], cutoff: float) -> list[tuple[int, int]]:
    """The (Z1, Z2) pairs, Z1 <= Z2, with at least one distance below ``cutoff`` in ``frames``."""
    from ase.neighborlist import neighbor_list

    pairs: set[tuple[int, int]] = set()
    for atoms in frames:
        i, j = neighbor_list("ij", atoms, float(cutoff))
        zi, zj = atoms.numbers[i], atoms.numbers[j]
        pairs.update(zip(np.minimum(zi, zj).tolist(), np.maximum(zi, zj).tolist()))
    return sorted(pairs)


def gap_string(p: Mapping[str, Any], pairs: Sequence[tuple[int, int]]) -> str:
    """The ``gap={...}`` descriptor string: one distance_2b per pair, then SOAP."""
    two_body = [
        f"distance_2b Z1={z1} Z2={z2} cutoff={p['cutoff_2b']} n_sparse={int(p['n_sparse_2b'])} covariance_type=ard_se "
        f"delta={p['delta_2b']} theta_uniform={p['theta_2b']} sparse_method=uniform add_species=F"
        for z1, z2 in pairs
    ]  # fmt: skip
    soap = (f"soap cutoff={p['soap_cutoff']} cutoff_transition_width={p['soap_cutoff_transition_width']} "
            f"n_max={int(p['soap_n_max'])} l_max={int(p['soap_l_max'])} atom_sigma={p['soap_atom_sigma']} "
            f"n_sparse={int(p['soap_n_sparse'])} delta={p['soap_delta']} covariance_type=dot_product "
            f"zeta={p['soap_zeta']} sparse_method=cur_points add_species=T")
    if int(p["soap_mix_channels"]) > 0:
        soap += f" R_mix=T Z_mix=T K={int(p['soap_mix_channels'])}"
    return "{" + " : ".join([*two_body, soap]) + "}"


def gap_fit_args(train_file: Path, p: Mapping[str, Any], pairs: Sequence[tuple[int, int]],
                 e0: Mapping[str, float] | None) -> list[str]:
    """The ``gap_fit`` arguments (``key=value`` words) of one fit."""
    args = {
        "at_file": str(train_file),
        "gap": gap_string(p, pairs),
        "default_sigma": f"{{{p['sigma_energy']} {p['sigma_forces']} {p['sigma_virial']} 0.0}}",
        "energy_parameter_name": ENERGY_KEY,
        "force_parameter_name": FORCES_KEY,
        "virial_parameter_name": "mlff2d_no_virial",  # no such key: virials are not fitted
        "sparse_jitter": str(p["sparse_jitter"]),
        "do_copy_at_file": "F",
        "sparse_separate_file": "T",
        "gp_file": "gap.xml",
        "rnd_seed": str(int(p["seed"])),
    }
    if e0 is None:
        args["e0_method"] = "average"
    else:
        args["e0"] = "{" + ":".join(f"{el}:{mu!r}" for el, mu in e0.items()) + "}"
    args.update({str(k): str(v) for k, v in dict(p["extra_args"]).items()})
    return [f"{k}={v}" for k, v in args.items()]


def _clean_copy(frames: Sequence[Atoms], path: Path) -> None:
    """Species, positions, cell, pbc and the energy and force labels only (no stress, no ids)."""
    out = []
    for atoms in frames:
        clean = Atoms(numbers=atoms.numbers, positions=atoms.positions, cell=atoms.cell, pbc=True)
        clean.info[ENERGY_KEY] = float(atoms.info[ENERGY_KEY])
        clean.arrays[FORCES_KEY] = np.asarray(atoms.arrays[FORCES_KEY], dtype=float)
        out.append(clean)
    ase.io.write(path, out, format="extxyz")


def _tail(text: str, n: int = 20) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    at = [k for k, line in enumerate(lines) if "SYSTEM ABORT" in line]  # QUIP's error and its next lines
    head = [line.strip() for line in lines[at[-1] : at[-1] + 4]] if at else []
    return " | ".join(head) + "\n--- last lines ---\n" + "\n".join(lines[-n:])


def validation_row(calc: Any, frames: Sequence[Atoms], fit_s: float) -> dict[str, Any]:
    """The metrics.csv row of a fitted model on the validation frames (mace export labels)."""
    de, df, ds = [], [], []
    for atoms in frames:
        a = atoms.copy()
        a.calc = calc
        de.append(abs(a.get_potential_energy() - float(atoms.info[ENERGY_KEY])) / len(a))
        df.append(np.abs(a.get_forces() - np.asarray(atoms.arrays[FORCES_KEY])).ravel())
        if "REF_stress" in atoms.info:
            ds.append(voigt_to_matrix(a.get_stress()) - voigt_to_matrix(np.asarray(atoms.info["REF_stress"], dtype=float)))
    return {
        "epoch": 1,
        "energy_mae_meV_per_atom": 1000.0 * float(np.mean(de)),
        "forces_mae_meV_per_A": 1000.0 * float(np.mean(np.concatenate(df))),
        "stress_mae": in_plane_stress_mae(np.array(ds), EV_PER_A3_IN_GPA) if ds else float("nan"),
        "stress_unit": STRESS_UNIT,
        "time_s": float(fit_s),
    }


def train(
    data_dir: str | Path,
    outdir: str | Path,
    params: Mapping[str, Any],
    init_model: str | Path | None = None,
    device: str | None = None,
    devices: int = 1,
) -> Path:
    """Fit a GAP on ``data_dir/train.extxyz`` (mace export), validate on ``val.extxyz``; returns
    ``outdir/model/gap.xml`` (see the module docstring for data, e0, virials and outputs).

    Raises:
        ValueError: ``init_model`` given (GAP has no fine-tuning), an unknown setting or e0.
        FileNotFoundError: missing data or no ``gap_fit``.
        RuntimeError: gap_fit failed (its output's tail is the message; full log in
            ``outdir/gap/gap_fit.log``).
    """
    p = _settings(params, init_model, device, devices)
    data_dir, outdir = Path(data_dir).resolve(), Path(outdir).resolve()
    train_frames, val_frames = _read_data(data_dir)
    model, fit_s, log = _fit(train_frames, p, outdir)
    row = validation_row(calculator(model), val_frames, fit_s)
    pd.DataFrame([row], columns=METRIC_COLUMNS).to_csv(outdir / "metrics.csv", index=False)
    line = epoch_line(1, 1, row, fit_s, None)
    logger.info(line)
    with log.open("a") as handle:
        handle.write("\nmlff2d: " + line + "\n")
    divergence.DivergenceGuard(p["divergence_factor"]).check(1, {c: row[c] for c in divergence.WATCHED})
    return model


def _settings(params: Mapping[str, Any], init_model: str | Path | None, device: str | None, devices: int) -> dict[str, Any]:
    """:data:`DEFAULTS` updated by ``params``, checked (no ``init_model``, known settings and e0)."""
    if init_model is not None:
        raise ValueError("GAP has no fine-tuning: a kernel fit cannot start from a trained model "
                         f"(init_model={init_model}); train GAP alloy models in normal mode")
    unknown = sorted(set(params) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown gap training setting(s) {unknown}; known: {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    if p["e0"] not in _E0_METHODS:
        raise ValueError(f"gap e0 must be one of {_E0_METHODS}, got {p['e0']!r}")
    if device not in (None, "cpu"):
        logger.info("GAP runs on CPU (OpenMP threads); device %r ignored", device)
    if int(devices) > 1:
        logger.info("GAP fits on one node with OpenMP threads; devices=%d ignored", int(devices))
    return p


def _read_data(data_dir: Path) -> tuple[list[Atoms], list[Atoms]]:
    """The frames of ``data_dir/train.extxyz`` and ``val.extxyz`` (neither may be missing or empty)."""
    for split in ("train", "val"):
        if not (data_dir / f"{split}.extxyz").is_file():
            raise FileNotFoundError(data_dir / f"{split}.extxyz")
    train_frames = ase.io.read(data_dir / "train.extxyz", index=":", format="extxyz")
    val_frames = ase.io.read(data_dir / "val.extxyz", index=":", format="extxyz")
    if not train_frames or not val_frames:
        raise ValueError(f"{data_dir}: empty train or val set ({len(train_frames)}, {len(val_frames)} frames)")
    return train_frames, val_frames


def _fit(train_frames: list[Atoms], p: Mapping[str, Any], outdir: Path) -> tuple[Path, float, Path]:
    """Run gap_fit in ``outdir/model.tmp``, then rename it ``outdir/model``; returns the model
    ``gap.xml``, the fit time (s) and the log ``outdir/gap/gap_fit.log``."""
    work, target, tmp = outdir / "gap", outdir / "model", outdir / "model.tmp"
    work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    train_file = work / "train.xyz"
    _clean_copy(train_frames, train_file)
    pairs = species_pairs(train_frames, float(p["cutoff_2b"]))
    e0 = element_energies(train_frames, [a.info[ENERGY_KEY] for a in train_frames]) if p["e0"] == "least_squares" else None
    args = gap_fit_args(train_file, p, pairs, e0)
    # the arguments go through a file: one distance_2b per pair makes a command line longer than
    # gap_fit reads (it aborts "Problem reading command argument" beyond a few thousand characters)
    config_file = work / "gap_fit.cfg"
    config_file.write_text("\n".join(args) + "\n")
    command = [str(gap_fit_executable()), f"config_file={config_file}"]
    log = work / "gap_fit.log"
    logger.info("gap_fit on %d frames, %d 2-body pairs: %s", len(train_frames), len(pairs), " ".join(command))
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=tmp, capture_output=True, text=True)
    fit_s = time.perf_counter() - start
    log.write_text(" ".join(command) + "\n" + " ".join(args) + "\n\n" + proc.stdout + ("\n--- stderr ---\n" + proc.stderr if proc.stderr else ""))
    if proc.returncode != 0 or not (tmp / "gap.xml").is_file():
        pd.DataFrame(columns=METRIC_COLUMNS).to_csv(outdir / "metrics.csv", index=False)
        raise RuntimeError(f"gap_fit failed (exit {proc.returncode}, log {log}):\n{_tail(proc.stdout + proc.stderr)}")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target / "gap.xml", fit_s, log


def calculator(model_path: str | Path, device: str | None = None) -> Any:
    """ASE calculator of a fitted GAP (quippy ``Potential``): energy eV, forces eV/Å, stress
    eV/Å³ with ASE's sign (tension positive). CPU only; ``device`` is ignored."""
    from quippy.potential import Potential

    path = Path(model_path).resolve()
    if not path.is_file():
        raise FileNotFoundError(path)
    return Potential(param_filename=str(path))

