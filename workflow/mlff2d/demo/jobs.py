"""The relaxation jobs of the demo dataset (see :mod:`mlff2d.demo.data`): a perturbed start of a 2D
material or of an alloy configuration, relaxed by CHGNet with every step recorded, and running
the jobs in worker processes."""

from __future__ import annotations

import logging
import os
import time
import zlib
from fractions import Fraction
from dataclasses import replace
from functools import lru_cache
from typing import Any

import numpy as np

from mlff2d.demo.chgnet import FMAX, chgnet_calculator, frame_problem, relax
from mlff2d.demo.structures import (
    ALLOYS,
    HALF_VACUUM,
    SC_1,
    STARTS,
    Prototype,
    build_primitive,
    compound_name,
    in_plane_supercell,
    mx2_prototype,
    reduce_in_plane,
    with_vacuum,
)

log = logging.getLogger("mlff2d.demo.data")

#: Perturbation of the 2D set: in-plane normal strains, shear strain, rattle stdev (Å). Far
#: enough from equilibrium that CHGNet's relaxation takes tens of steps from forces of 1–3 eV/Å.
STRAIN_MAX = 0.06
SHEAR_MAX = 0.03
RATTLE_2D = 0.07
#: Perturbation of the alloy configurations: in-plane strain, shear, rattle stdev (Å).
STRAIN_ALLOY = 0.03
SHEAR_ALLOY = 0.015
RATTLE_ALLOY = 0.05
#: Default cap of configurations per alloy (None: every enumerated configuration, 53 for 1H MX2).
MAX_CONFIGS: int | None = None
#: Starts per alloy configuration (each a material: ``<ALLOY>-0NNN``, ``<ALLOY>-1NNN``, ...).
ALLOY_STARTS = 2
#: Largest alloy cell, in metal sites.
MAX_ALLOY_SITES = 6
MAX_ATOMS = 20


# ----------------------------------------------------------------------------- jobs


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng([seed, *key])


def _key(name: str) -> int:
    return zlib.crc32(name.encode())


def perturb(atoms: Any, rng: np.random.Generator, strain_max: float, shear_max: float, rattle: float) -> Any:
    """In-plane strain (ε_xx, ε_yy uniform in ±strain_max), shear (ε_xy in ±shear_max) and a
    Gaussian rattle of every atom (stdev ``rattle`` Å)."""
    out = atoms.copy()
    exx, eyy = rng.uniform(-strain_max, strain_max, 2)
    exy = rng.uniform(-shear_max, shear_max)
    eps = np.array([[1 + exx, exy, 0.0], [exy, 1 + eyy, 0.0], [0.0, 0.0, 1.0]])
    out.set_cell(out.cell.array @ eps, scale_atoms=True)
    out.positions = out.positions + rng.normal(0.0, rattle, out.positions.shape)
    return out


def _prerelaxed(proto: Prototype) -> Any:
    """The compound's primitive cell relaxed by CHGNet (once per compound and process)."""
    return _prerelaxed_compound(replace(proto, name=compound_name(proto), supercell=SC_1)).copy()


@lru_cache(maxsize=None)
def _prerelaxed_compound(proto: Prototype) -> Any:
    atoms = build_primitive(proto)
    relax(atoms, fmax=FMAX, steps=300, record=False)
    return atoms


def _result(mid: str, frames: list[dict[str, Any]], converged: bool, extra: dict[str, Any]) -> dict[str, Any]:
    problems = [p for p in (frame_problem(f) for f in frames) if p]
    if not frames:
        problems = ["no_frames"]
    return {"material_id": mid, "frames": frames, "converged": converged, "problem": problems[0] if problems else "", **extra}


def run_2d_job(job: tuple[int, Prototype, int]) -> dict[str, Any]:
    """Relax the 2D material at (1-based) ``index``: pre-relax the primitive cell (not
    recorded), build the supercell, perturb it and relax it with every step recorded."""
    index, proto, seed = job
    mid = f"demo-2d-{index:04d}"
    t0 = time.perf_counter()
    prim = _prerelaxed(proto)
    pre = frame_problem(_state(prim)) if len(prim) else "empty"
    atoms = reduce_in_plane(in_plane_supercell(prim, proto.supercell))
    atoms = perturb(atoms, _rng(seed, 2, index), STRAIN_MAX, SHEAR_MAX, RATTLE_2D)
    frames, converged = relax(atoms)
    out = _result(mid, frames, converged, {"prototype": proto.name, "family": proto.family, "seconds": time.perf_counter() - t0})
    if pre and not out["problem"]:
        out["problem"] = f"prerelax_{pre}"
    return out


def _state(atoms: Any) -> dict[str, Any]:
    atoms.calc = chgnet_calculator()
    state = {
        "numbers": atoms.numbers,
        "positions": atoms.positions,
        "cell": atoms.cell.array,
        "energy": float(atoms.get_potential_energy()),
        "forces": atoms.get_forces(),
        "stress": atoms.get_stress(),
    }
    atoms.calc = None
    return state


@lru_cache(maxsize=None)
def end_member_lattice(metal: str, chalcogen: str = "S") -> float:
    """CHGNet's relaxed lattice constant (Å) of 1H M(X)2 (pre-relaxed primitive cell)."""
    atoms = _prerelaxed(mx2_prototype(metal, chalcogen, "1H"))
    return float(np.linalg.norm(atoms.cell.array[0]))


def alloy_configurations(alloy: str, max_configs: int | None = MAX_CONFIGS) -> list[Any]:
    """The chosen configurations of an alloy, in id order: the two pure end members, then a
    round-robin over compositions (x closest to 1/2 first), smaller cells first within one
    composition. Enumerated with icet on the 1H primitive cell (pbc [True, True, False]),
    metal sublattice only, up to ``MAX_ALLOY_SITES`` metal sites. A prefix of the full list."""
    from ase.build import mx2
    from icet.tools import enumerate_structures

    a_el, b_el = ALLOYS[alloy]
    prim = mx2(f"{a_el}S2", kind="2H", a=3.2, thickness=3.13, vacuum=HALF_VACUUM)  # geometry rescaled later
    prim.pbc = [True, True, False]
    configs = list(enumerate_structures(prim, range(1, MAX_ALLOY_SITES + 1), [[a_el, b_el], ["S"], ["S"]]))

    def x_of(atoms: Any) -> Fraction:
        sym = atoms.get_chemical_symbols()
        return Fraction(sym.count(b_el), sym.count(a_el) + sym.count(b_el))

    ends = [c for c in configs if x_of(c) == 0] + [c for c in configs if x_of(c) == 1]
    groups: dict[Fraction, list[Any]] = {}
    for c in configs:
        if 0 < x_of(c) < 1:
            groups.setdefault(x_of(c), []).append(c)
    order = sorted(groups, key=lambda x: (abs(x - Fraction(1, 2)), x))
    chosen = list(ends)
    depth = 0
    while any(depth < len(groups[x]) for x in order):
        chosen += [groups[x][depth] for x in order if depth < len(groups[x])]
        depth += 1
    return chosen if max_configs is None else chosen[:max_configs]


def alloy_material_id(alloy: str, index: int, start: int = 0) -> str:
    """``<ALLOY>-SNNN``: configuration ``index`` (1-based) of :func:`alloy_configurations`, start S."""
    return f"{alloy}-{start}{index:03d}"


def run_alloy_job(job: tuple[str, int, Any, int, int]) -> dict[str, Any]:
    """Relax one start of one alloy configuration: Vegard lattice constant from the relaxed end
    members, reduced in-plane cell, vacuum, then strained, sheared and rattled with the start's
    own seed; every step recorded."""
    alloy, index, config, start, seed = job
    a_el, b_el = ALLOYS[alloy]
    t0 = time.perf_counter()
    sym = config.get_chemical_symbols()
    n_sites = sym.count(a_el) + sym.count(b_el)
    x = sym.count(b_el) / n_sites
    a_x = (1 - x) * end_member_lattice(a_el) + x * end_member_lattice(b_el)
    atoms = config.copy()
    scale = np.diag([a_x / 3.2, a_x / 3.2, 1.0])
    atoms.set_cell(atoms.cell.array @ scale, scale_atoms=True)
    atoms = reduce_in_plane(with_vacuum(atoms))
    rng = _rng(seed, 3, _key(alloy), index, start)
    atoms = perturb(atoms, rng, STRAIN_ALLOY, SHEAR_ALLOY, RATTLE_ALLOY)
    frames, converged = relax(atoms)
    extra = {"alloy": alloy, "n_metal_sites": n_sites, "x": x, "start": start, "seconds": time.perf_counter() - t0}
    return _result(alloy_material_id(alloy, index, start), frames, converged, extra)


def run_jobs(fn: Any, jobs: list[Any], workers: int) -> list[dict[str, Any]]:
    """Run jobs in order (results are independent of the worker that ran them)."""
    if workers <= 1 or len(jobs) <= 1:
        out = []
        for i, job in enumerate(jobs):
            out.append(fn(job))
            _log_progress(out[-1], i + 1, len(jobs))
        return out
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(workers, initializer=init_worker) as pool:
        out = []
        # consecutive jobs (the starts of one compound) share a worker and its pre-relaxation
        for i, res in enumerate(pool.imap(fn, jobs, chunksize=len(STARTS))):
            out.append(res)
            _log_progress(res, i + 1, len(jobs))
        return out


def init_worker() -> None:
    """One thread per process for the numerical libraries (CHGNet runs fastest that way here)."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"


def _log_progress(res: dict[str, Any], i: int, n: int) -> None:
    log.info(
        "%d/%d %s: %d frames, converged=%s, %.1f s%s",
        i, n, res["material_id"], len(res["frames"]), res["converged"], res["seconds"],
        f", DROPPED ({res['problem']})" if res["problem"] else "",
    )  # fmt: skip
