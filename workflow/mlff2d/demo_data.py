"""The embedded demo dataset: CHGNet relaxations of 2D monolayers standing in for DFT.

CHGNet (a universal machine-learned potential, ``chgnet==0.4.2``, pretrained weights shipped in
its wheel) plays the role of DFT: every structure is built with ASE, perturbed and relaxed with
FIRE in its in-plane cell (``FrechetCellFilter(mask=[1, 1, 0, 0, 0, 1])``), and *every* FIRE
step (energy, forces, stress) is recorded, as a DFT code records its ionic steps. The result is
written in the Alexandria geometry-optimisation format that :func:`mlff2d.ingest.read_alexandria`
reads, so the demo campaign exercises the same code path as the study's data.

Two parts (see :func:`generate_demo`):

* **2D set** (``2d/demo_2d.json.bz2``): about 120 monolayers of many families (1H/1T MX2,
  halides, MX3, oxides, honeycombs, MXenes, GaSe-type, quintuple layers, phosphorene, FeSe).
  Each prototype is first relaxed in its primitive cell (not recorded), so that the recorded
  trajectory starts a few per cent from CHGNet's equilibrium: it is then made a supercell,
  strained in-plane, sheared and rattled (seeded), and relaxed with every step recorded.
* **Alloy sets** (``alloys/<ALLOY>.json.bz2``): metal-sublattice configurations of 1H MX2
  enumerated with icet (up to 6 metal sites), a deterministic spread over compositions with both
  pure end members first, started at Vegard's-law lattice constants, rattled slightly and
  relaxed. ``alloys/formation_energies.csv`` holds formation energies per metal site (and per
  atom = per site / 3) relative to the relaxed end members of the same set.

Units in the files are Alexandria's (VASP's): energy total eV, forces eV/Å, stress kbar with
compression positive, as a 3×3 matrix. Seeds are derived per material from ``seed`` and the
material's fixed position in the prototype list, so a partial run (``n_2d``, ``max_configs``)
reproduces exactly the corresponding materials of the full run.

Run it: ``python -m mlff2d.demo_data resources/demo --workers 2``.
"""

from __future__ import annotations

import argparse
import bz2
import json
import logging
import os
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("mlff2d.demo_data")

#: Label of the "functional" of every calc in the demo files.
FUNCTIONAL = "PBE-CHGNet-standin"
#: Vacuum on each side of the layer (Å); the gap between periodic images is twice this.
HALF_VACUUM = 7.5
#: Relaxation settings of the recorded trajectories.
FMAX = 0.05
MAX_STEPS = 150
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
#: Drop criteria (a relaxation that "explodes"); the same limits as the pipeline's outlier filter.
ENERGY_RANGE = (-20.0, 0.0)
FORCE_MAX = 20.0  # eV/Å, norm of one atom's force
STRESS_MAX_KBAR = 500.0
ISOLATION_CUTOFF = 5.0

#: eV/Å³ → kbar: 1 eV/Å³ = 160.21766208 GPa = 1602.1766208 kbar.
EV_PER_A3_IN_KBAR = 1602.1766208

#: Alloy name → (first metal A, second metal B); x is the fraction of B.
ALLOYS: dict[str, tuple[str, str]] = {
    "MoWS2": ("Mo", "W"),
    "MoTaS2": ("Mo", "Ta"),
    "NbMoS2": ("Nb", "Mo"),
    "TiTaS2": ("Ti", "Ta"),
    "TiVS2": ("Ti", "V"),
    "IrRuS2": ("Ir", "Ru"),
}
#: Alloys whose formation energies are tabulated (the others are for transfer learning only).
FORMATION_ALLOYS = ("MoWS2", "MoTaS2", "NbMoS2", "TiTaS2")
#: The metals of the alloy study; the 2D set has 1H and 1T MX2 of each with X = S, Se, Te.
ALLOY_METALS = ("Mo", "W", "Ta", "Nb", "Ti", "V", "Zr", "Fe", "Ir", "Ru")
CHALCOGENS = ("S", "Se", "Te")
#: Metals of the 2D set beyond the alloy metals (1H and 1T MX2 of each).
EXTRA_METALS = ("Hf", "Cr")

# ----------------------------------------------------------------------------- prototypes


@dataclass(frozen=True)
class Prototype:
    """One 2D material of the demo set: a builder (``family``) and its parameters.

    ``supercell`` is a 2×2 integer matrix applied to the in-plane primitive vectors.
    """

    name: str
    family: str
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    supercell: tuple[tuple[int, int], tuple[int, int]] = ((1, 0), (0, 1))


SC_1 = ((1, 0), (0, 1))
SC_2x1 = ((2, 0), (0, 1))
SC_2x2 = ((2, 0), (0, 2))
SC_R3 = ((2, 1), (-1, 1))  # √3×√3 R30°
SC_3x3 = ((3, 0), (0, 3))

#: The supercells of the starts of one compound (3, 6 and 9 or 12 atoms for MX2): each start is
#: a material of its own, with its own strain, shear and rattle.
STARTS = (SC_1, SC_2x1, SC_R3)
STARTS_LARGE = (SC_1, SC_2x1, SC_2x2)


def _mx2(m: str, x: str, kind: str, sc: Any = SC_1, start: int = 0) -> Prototype:
    return Prototype(f"{m}{x}2-{kind}" + (f"-{start}" if start else ""), "mx2", {"m": m, "x": x, "kind": kind}, sc)


def compound_name(proto: Prototype) -> str:
    """The compound a start belongs to: its name without the start suffix (``MoS2-1H-2`` → ``MoS2-1H``)."""
    head, _, tail = proto.name.rpartition("-")
    return head if tail.isdigit() and head else proto.name


def prototypes() -> list[Prototype]:
    """The ordered list of 2D starts; material ``demo-2d-NNNN`` is entry NNNN (1-based).

    Dense chemistry, so that a small model trained for minutes generalises: 1H and 1T MX2 of
    the ten alloy metals and Hf and Cr with X = S, Se, Te, plus PbO-type FeX, every compound in
    :data:`STARTS` starting cells (each its own material, perturbed with its own seed). Every
    metal is then in 18 materials (Fe in 27) and every chalcogen in about 80.
    """
    protos: list[Prototype] = []
    for m in (*ALLOY_METALS, *EXTRA_METALS):
        for x in CHALCOGENS:
            for kind in ("1H", "1T"):
                starts = STARTS if (x, kind) != ("Te", "1T") else STARTS_LARGE
                protos += [_mx2(m, x, kind, sc, k) for k, sc in enumerate(starts)]
    for x, a, h in (("S", 3.60, 1.30), ("Se", 3.77, 1.47), ("Te", 3.82, 1.62)):
        for k, sc in enumerate(STARTS_LARGE):
            name = f"Fe{x}-PbO" + (f"-{k}" if k else "")
            protos.append(Prototype(name, "pbo", {"m": "Fe", "x": x, "a": a, "h": h}, (SC_1, SC_2x1, SC_2x2)[k]))
    return protos


def _hex_cell(a: float, c: float) -> np.ndarray:
    return np.array([[a, 0.0, 0.0], [-a / 2, a * np.sqrt(3) / 2, 0.0], [0.0, 0.0, c]])


def _with_vacuum(atoms: Any) -> Any:
    """Periodic in 3D with HALF_VACUUM Å of vacuum on each side along z (the c axis)."""
    atoms.pbc = True
    atoms.center(vacuum=HALF_VACUUM, axis=2)
    return atoms


def _layered(symbols: list[str], frac_xy: list[tuple[float, float]], z: list[float], cell_xy: np.ndarray) -> Any:
    """Atoms from in-plane fractional coordinates and heights z (Å) in an in-plane cell."""
    from ase import Atoms

    cell = np.zeros((3, 3))
    cell[:2, :2] = cell_xy
    cell[2, 2] = 1.0
    pos = np.array([[fx, fy, 0.0] for fx, fy in frac_xy]) @ cell
    pos[:, 2] = z
    return _with_vacuum(Atoms(symbols, positions=pos, cell=cell))


def _vertical(d: float, a: float) -> float:
    """Height difference of two atoms at bond length d whose in-plane offset is a/√3."""
    return float(np.sqrt(max(d**2 - a**2 / 3, 0.25)))


def build_primitive(proto: Prototype) -> Any:
    """The primitive cell (ASE Atoms, pbc all True, vacuum along z) of a prototype, from
    tabulated or covalent-radius starting guesses (CHGNet's pre-relaxation fixes the rest)."""
    from ase.build import mx2
    from ase.data import atomic_numbers, covalent_radii

    p = proto.params
    cell2 = _hex_cell(p.get("a", 1.0), 1.0)[:2, :2]
    if proto.family in ("mx2", "mx3"):
        m, x = p["m"], p["x"]
        d = 0.93 * (covalent_radii[atomic_numbers[m]] + covalent_radii[atomic_numbers[x]])
        kind = p.get("kind", "1T")
        ratio = 0.85 if kind == "1H" else 0.75  # height / in-plane offset of the M-X bond
        a = np.sqrt(3) * d / np.sqrt(1 + ratio**2)
        atoms = mx2(f"{m}{x}2", kind="2H" if kind == "1H" else "1T", a=a, thickness=2 * ratio * a / np.sqrt(3), vacuum=HALF_VACUUM)
        atoms = _with_vacuum(atoms)
        if proto.family == "mx3":
            atoms = _supercell(atoms, SC_R3)
            del atoms[[i for i, s in enumerate(atoms.get_chemical_symbols()) if s == m][0]]
        return atoms
    if proto.family == "honeycomb":
        return _layered([p["a_el"], p["b_el"]], [(0, 0), (1 / 3, 2 / 3)], [0.0, p["buckle"]], cell2)
    if proto.family == "m2x2":
        h = _vertical(p["d_mx"], p["a"])
        z = [p["d_mm"] / 2, -p["d_mm"] / 2, p["d_mm"] / 2 + h, -p["d_mm"] / 2 - h]
        return _layered([p["m"], p["m"], p["x"], p["x"]], [(1 / 3, 2 / 3)] * 2 + [(2 / 3, 1 / 3)] * 2, z, cell2)
    if proto.family == "mxene":
        h = _vertical(p["d_mx"], p["a"])
        if p["layers"] == 2:  # M (B) - X (A) - M (C)
            return _layered([p["m"], p["x"], p["m"]], [(1 / 3, 2 / 3), (0, 0), (2 / 3, 1 / 3)], [h, 0.0, -h], cell2)
        # M (A) centre, X (B, C), M (C, B) outside
        xy = [(0, 0), (1 / 3, 2 / 3), (2 / 3, 1 / 3), (2 / 3, 1 / 3), (1 / 3, 2 / 3)]
        return _layered([p["m"], p["x"], p["x"], p["m"], p["m"]], xy, [0.0, h, -h, 2 * h, -2 * h], cell2)
    if proto.family == "ql":  # B(C) A(B) B(A, centre) A(C) B(B)
        h_in, h_out = _vertical(p["d_in"], p["a"]), _vertical(p["d_out"], p["a"])
        symbols = [p["b_el"], p["a_el"], p["a_el"], p["b_el"], p["b_el"]]
        xy = [(0, 0), (1 / 3, 2 / 3), (2 / 3, 1 / 3), (2 / 3, 1 / 3), (1 / 3, 2 / 3)]
        return _layered(symbols, xy, [0.0, h_in, -h_in, h_in + h_out, -h_in - h_out], cell2)
    if proto.family == "phosphorene":  # puckered: zigzag chains along x in two planes
        a, b = p["a"], p["b"]
        u, w, h = 1.48, (b - 2 * 1.48) / 2, 2.10
        cell = np.array([[a, 0.0], [0.0, b]])
        xy = [(0, 0), (0.5, u / b), (0.5, (u + w) / b), (0, (2 * u + w) / b)]
        return _layered(["P"] * 4, xy, [0.0, 0.0, h, h], cell)
    if proto.family == "pbo":  # tetragonal FeSe: M square net, X above and below alternately
        cell = np.eye(2) * p["a"]
        xy = [(0, 0), (0.5, 0.5), (0, 0.5), (0.5, 0)]
        return _layered([p["m"], p["m"], p["x"], p["x"]], xy, [0.0, 0.0, p["h"], -p["h"]], cell)
    raise ValueError(f"unknown prototype family {proto.family!r}")


def _supercell(atoms: Any, sc: Any) -> Any:
    """In-plane supercell with the 2×2 integer matrix ``sc`` (c unchanged), wrapped."""
    from ase.build import make_supercell

    p = np.eye(3, dtype=int)
    p[:2, :2] = np.asarray(sc, dtype=int)
    if (p == np.eye(3, dtype=int)).all():
        return atoms.copy()
    out = make_supercell(atoms, p)
    out.wrap()
    return out


def reduce_in_plane(atoms: Any) -> Any:
    """Gauss-reduce the in-plane vectors a, b (shortest basis of the 2D lattice), then rotate
    about z so that a lies along x (c unchanged); positions are wrapped into the cell."""
    cell = atoms.cell.array.copy()
    a, b = cell[0].copy(), cell[1].copy()
    tol = 1e-8
    while True:
        if np.dot(b, b) < np.dot(a, a) * (1 - tol):
            a, b = b, a
        mu = int(np.floor(np.dot(a, b) / np.dot(a, a) + 0.5 - tol))
        if mu == 0:
            break
        b = b - mu * a
    if np.cross(a, b)[2] < 0:  # keep a right-handed cell
        b = -b
    if np.dot(a, b) > 0 and np.dot(b - a, b - a) <= np.dot(b, b) * (1 + tol):
        b = b - a  # prefer the obtuse (120°) form, as ase.build.mx2 writes hexagonal cells
    theta = np.arctan2(a[1], a[0])
    rot = np.array([[np.cos(theta), -np.sin(theta), 0.0], [np.sin(theta), np.cos(theta), 0.0], [0.0, 0.0, 1.0]])
    out = atoms.copy()
    out.set_cell(np.array([a, b, cell[2]]), scale_atoms=False)
    out.wrap()
    out.set_cell(out.cell.array @ rot, scale_atoms=True)  # row vectors rotated by -theta
    out.cell.array[0, 1] = 0.0
    out.wrap()
    return out


# ----------------------------------------------------------------------------- relaxation


@lru_cache(maxsize=1)
def _calculator() -> Any:
    """One CHGNet calculator per process (one thread; the small cells run fastest that way)."""
    import warnings

    import torch
    from chgnet.model import CHGNet

    warnings.filterwarnings("ignore", message="(?s).*tensor.detach")
    from chgnet.model.dynamics import CHGNetCalculator

    torch.set_num_threads(1)
    return CHGNetCalculator(model=CHGNet.load(verbose=False), use_device="cpu")


def relax(atoms: Any, fmax: float = FMAX, steps: int = MAX_STEPS, record: bool = True) -> tuple[list[dict[str, Any]], bool]:
    """Relax positions and the in-plane cell with FIRE; return every step and convergence.

    Each step is ``{"numbers", "positions", "cell", "energy" (eV), "forces" (eV/Å),
    "stress" (eV/Å³, ASE sign and Voigt order)}``: the state at which the optimiser evaluated
    the forces, from the starting structure (step 0) to the last one (at most ``steps`` + 1).
    """
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    atoms.calc = _calculator()
    filt = FrechetCellFilter(atoms, mask=[1, 1, 0, 0, 0, 1])
    opt = FIRE(filt, logfile=None)
    frames: list[dict[str, Any]] = []
    converged = False
    for converged in opt.irun(fmax=fmax, steps=steps):
        if record:
            frames.append(
                {
                    "numbers": atoms.numbers.copy(),
                    "positions": atoms.positions.copy(),
                    "cell": atoms.cell.array.copy(),
                    "energy": float(atoms.get_potential_energy()),
                    "forces": atoms.get_forces().copy(),
                    "stress": atoms.get_stress(voigt=True).copy(),
                }
            )
    atoms.calc = None
    return frames, bool(converged)


def frame_problem(frame: dict[str, Any]) -> str:
    """Why a recorded frame counts as an exploded relaxation ('' when it is sound): the
    pipeline's outlier limits, an isolated atom, or a cell that lost its vacuum along z."""
    from mlff2d.ingest import vacuum_along_z
    from mlff2d.outliers import has_isolated_atom

    n = len(frame["numbers"])
    values = np.concatenate([[frame["energy"]], frame["forces"].ravel(), frame["stress"], frame["positions"].ravel()])
    if not np.isfinite(values).all():
        return "non_finite"
    e = frame["energy"] / n
    if not ENERGY_RANGE[0] <= e <= ENERGY_RANGE[1]:
        return f"energy_per_atom={e:.3f}"
    fmax = float(np.linalg.norm(frame["forces"], axis=1).max())
    if fmax > FORCE_MAX:
        return f"force={fmax:.1f}"
    smax = float(np.abs(frame["stress"]).max() * EV_PER_A3_IN_KBAR)
    if smax > STRESS_MAX_KBAR:
        return f"stress_kbar={smax:.0f}"
    if has_isolated_atom(frame["positions"], frame["cell"], ISOLATION_CUTOFF):
        return "isolated_atom"
    if not vacuum_along_z(frame["cell"], frame["positions"], 5.0):
        return "vacuum_not_z"
    return ""


def _round(x: Any, nd: int) -> Any:
    return np.round(np.asarray(x, dtype=float), nd).tolist()


def structure_dict(numbers: np.ndarray, positions: np.ndarray, cell: np.ndarray) -> dict[str, Any]:
    """A pymatgen ``Structure.as_dict()`` (fractional ``abc`` only, no ``xyz``, to keep files
    small; ``Structure.from_dict`` needs only ``abc``), rounded to 6 decimals."""
    from ase.data import chemical_symbols

    frac = np.linalg.solve(cell.T, positions.T).T
    return {
        "@module": "pymatgen.core.structure",
        "@class": "Structure",
        "charge": 0,
        "lattice": {"matrix": _round(cell, 6), "pbc": [True, True, True]},
        "properties": {},
        "sites": [
            {"species": [{"element": chemical_symbols[z], "occu": 1}], "abc": f, "label": chemical_symbols[z], "properties": {}}
            for z, f in zip(numbers, _round(frac, 6))
        ],
    }


def to_alexandria_step(frame: dict[str, Any]) -> dict[str, Any]:
    """One recorded frame as an Alexandria step.

    Stress: CHGNet's model computes σ = (1/V) ∂E/∂ε in GPa and ``CHGNetCalculator`` multiplies
    it by ``ase.units.GPa``, so ``atoms.get_stress()`` is eV/Å³ with *tension positive* (ASE's
    convention). Checked against a central finite difference of the energy under strain on 1H
    MoS2 stretched to a = 3.30 Å: σ_xx = +0.02268 eV/Å³ from the calculator, +0.02270 from
    (1/V) ΔE/Δε. VASP/Alexandria write kbar with *compression positive*, hence
    kbar = -σ_ASE × 160.21766208 × 10. ``mlff2d.units.stress_to_ase(..., "kbar_vasp")`` undoes it.
    """
    from mlff2d.units import voigt_to_matrix

    kbar = -voigt_to_matrix(frame["stress"]) * EV_PER_A3_IN_KBAR
    return {
        "structure": structure_dict(frame["numbers"], frame["positions"], frame["cell"]),
        "energy": round(frame["energy"], 6),
        "forces": _round(frame["forces"], 5),
        "stress": _round(kbar, 4),
    }


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
    atoms = reduce_in_plane(_supercell(prim, proto.supercell))
    atoms = perturb(atoms, _rng(seed, 2, index), STRAIN_MAX, SHEAR_MAX, RATTLE_2D)
    frames, converged = relax(atoms)
    out = _result(mid, frames, converged, {"prototype": proto.name, "family": proto.family, "seconds": time.perf_counter() - t0})
    if pre and not out["problem"]:
        out["problem"] = f"prerelax_{pre}"
    return out


def _state(atoms: Any) -> dict[str, Any]:
    atoms.calc = _calculator()
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
    atoms = _prerelaxed(_mx2(metal, chalcogen, "1H"))
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
    atoms = reduce_in_plane(_with_vacuum(atoms))
    rng = _rng(seed, 3, _key(alloy), index, start)
    atoms = perturb(atoms, rng, STRAIN_ALLOY, SHEAR_ALLOY, RATTLE_ALLOY)
    frames, converged = relax(atoms)
    extra = {"alloy": alloy, "n_metal_sites": n_sites, "x": x, "start": start, "seconds": time.perf_counter() - t0}
    return _result(alloy_material_id(alloy, index, start), frames, converged, extra)


def _run(fn: Any, jobs: list[Any], workers: int) -> list[dict[str, Any]]:
    """Run jobs in order (results are independent of the worker that ran them)."""
    if workers <= 1 or len(jobs) <= 1:
        out = []
        for i, job in enumerate(jobs):
            out.append(fn(job))
            _log_progress(out[-1], i + 1, len(jobs))
        return out
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(workers, initializer=_init_worker) as pool:
        out = []
        # consecutive jobs (the starts of one compound) share a worker and its pre-relaxation
        for i, res in enumerate(pool.imap(fn, jobs, chunksize=len(STARTS))):
            out.append(res)
            _log_progress(res, i + 1, len(jobs))
        return out


def _init_worker() -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"


def _log_progress(res: dict[str, Any], i: int, n: int) -> None:
    log.info(
        "%d/%d %s: %d frames, converged=%s, %.1f s%s",
        i, n, res["material_id"], len(res["frames"]), res["converged"], res["seconds"],
        f", DROPPED ({res['problem']})" if res["problem"] else "",
    )  # fmt: skip


# ----------------------------------------------------------------------------- output


def write_alexandria_file(path: Path, results: list[dict[str, Any]]) -> Path:
    """Write the kept results as ``{material_id: [{"functional", "steps"}]}`` (.json.bz2)."""
    data = {
        r["material_id"]: [{"functional": FUNCTIONAL, "steps": [to_alexandria_step(f) for f in r["frames"]]}]
        for r in results
        if not r["problem"]
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bz2.compress(json.dumps(data, separators=(",", ":")).encode(), 9))
    return path


def formation_energies(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Formation energy per metal site of every kept configuration of one alloy, relative to the
    relaxed pure end members of the same set: E_f = [E - (1-x) N e_A - x N e_B] / N, with N metal
    sites and e_A, e_B the end members' final energies per metal site (the lowest among their
    starts, as :func:`mlff2d.formation.end_members` takes them). Per atom = per site / 3."""
    kept = [r for r in results if not r["problem"]]
    e_site = {r["material_id"]: r["frames"][-1]["energy"] / r["n_metal_sites"] for r in kept}
    ends: dict[float, float] = {}  # the lowest energy per site among the starts of each end member
    for r in kept:
        if r["x"] in (0.0, 1.0):
            ends[r["x"]] = min(ends.get(r["x"], np.inf), e_site[r["material_id"]])
    if set(ends) != {0.0, 1.0}:
        return []
    rows = []
    for r in kept:
        n, x = r["n_metal_sites"], r["x"]
        ef = e_site[r["material_id"]] - (1 - x) * ends[0.0] - x * ends[1.0]
        rows.append(
            {
                "alloy": r["alloy"],
                "material_id": r["material_id"],
                "n_metal_sites": n,
                "x": round(x, 6),
                "energy_per_site_eV": round(e_site[r["material_id"]], 6),
                "formation_energy_per_site_eV": round(ef, 6),
                "formation_energy_per_atom_eV": round(ef / 3, 6),
            }
        )
    return rows


def _stats(results: list[dict[str, Any]], path: Path, root: Path) -> dict[str, Any]:
    kept = [r for r in results if not r["problem"]]
    frames = [len(r["frames"]) for r in kept]
    atoms = [len(r["frames"][0]["numbers"]) for r in kept]
    elements = sorted({_symbol(z) for r in kept for z in r["frames"][0]["numbers"]})
    return {
        "path": str(path.relative_to(root)),
        "n_materials": len(kept),
        "n_dropped": len(results) - len(kept),
        "elements": elements,
        "n_elements": len(elements),
        "frames_per_trajectory": {
            "min": min(frames, default=0),
            "mean": round(float(np.mean(frames)), 3) if frames else 0.0,
            "max": max(frames, default=0),
        },
        "total_frames": int(sum(frames)),
        "atoms_per_structure": {"min": min(atoms, default=0), "max": max(atoms, default=0)},
        "n_converged": sum(r["converged"] for r in kept),
        "size_bytes": path.stat().st_size,
    }


def _fmax(frame: dict[str, Any]) -> float:
    """Largest atomic force (eV/Å) of a frame."""
    return float(np.linalg.norm(np.asarray(frame["forces"]), axis=1).max())


def _symbol(z: int) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[int(z)]


def _material_entry(r: dict[str, Any], file: str) -> dict[str, Any]:
    from ase.formula import Formula

    numbers = r["frames"][0]["numbers"] if r["frames"] else []
    formula = str(Formula.from_list([_symbol(z) for z in numbers]).reduce()[0]) if len(numbers) else ""
    entry = {
        "file": file,
        "formula": formula,
        "elements": sorted({_symbol(z) for z in numbers}),
        "n_atoms": len(numbers),
        "n_frames": len(r["frames"]),
        "converged": r["converged"],
        "fmax_start": round(_fmax(r["frames"][0]), 4) if r["frames"] else None,
    }
    for k in ("prototype", "family", "alloy", "n_metal_sites", "x", "start"):
        if k in r:
            entry[k] = round(r[k], 6) if k == "x" else r[k]
    if r["problem"]:
        entry["problem"] = r["problem"]
    return entry


def generate_demo(
    outdir: Path,
    n_2d: int | None = None,
    alloys: Sequence[str] | None = None,
    max_configs: int | None = None,
    seed: int = 0,
    workers: int = 1,
    starts: int = ALLOY_STARTS,
) -> dict[str, Any]:
    """Generate the demo dataset under ``outdir`` and return its manifest.

    Args:
        outdir: output root; writes ``2d/demo_2d.json.bz2``, ``alloys/<ALLOY>.json.bz2``,
            ``alloys/formation_energies.csv``, ``manifest.json`` and ``README.md``.
        n_2d: number of 2D prototypes (the first ``n_2d`` of :func:`prototypes`); None = all,
            0 = no 2D file.
        alloys: alloy names (keys of :data:`ALLOYS`); None = all six, [] = none.
        max_configs: configurations per alloy (a prefix of :func:`alloy_configurations`, end
            members first); None = :data:`MAX_CONFIGS`.
        seed: root of every random number (per material: seed, part, index).
        workers: processes (each loads CHGNet once and runs with one thread).
        starts: starts per alloy configuration (each a material of its own).

    Materials whose relaxation explodes (:func:`frame_problem`) are left out of the files and
    listed in the manifest under ``dropped``.
    """
    outdir = Path(outdir)
    t0 = time.perf_counter()
    protos = prototypes()
    protos = protos if n_2d is None else protos[:n_2d]
    alloys = list(ALLOYS) if alloys is None else list(alloys)
    unknown = [a for a in alloys if a not in ALLOYS]
    if unknown:
        raise ValueError(f"unknown alloys {unknown}; known: {list(ALLOYS)}")
    max_configs = MAX_CONFIGS if max_configs is None else max_configs

    files: dict[str, Any] = {}
    materials: dict[str, Any] = {}
    results_2d = _run(run_2d_job, [(i + 1, p, seed) for i, p in enumerate(protos)], workers)
    part_results: list[tuple[Path, list[dict[str, Any]]]] = []
    if results_2d:
        part_results.append((write_alexandria_file(outdir / "2d" / "demo_2d.json.bz2", results_2d), results_2d))
    alloy_jobs = [
        (a, i + 1, c, start, seed)
        for a in alloys
        for start in range(starts)
        for i, c in enumerate(alloy_configurations(a, max_configs))
    ]
    alloy_results = _run(run_alloy_job, alloy_jobs, workers)
    fe_rows: list[dict[str, Any]] = []
    for a in alloys:
        res = [r for r in alloy_results if r["alloy"] == a]
        part_results.append((write_alexandria_file(outdir / "alloys" / f"{a}.json.bz2", res), res))
        if a in FORMATION_ALLOYS:
            fe_rows += formation_energies(res)
    if fe_rows:
        import pandas as pd

        pd.DataFrame(fe_rows).to_csv(outdir / "alloys" / "formation_energies.csv", index=False)

    dropped = []
    for path, res in part_results:
        rel = str(path.relative_to(outdir))
        files[rel] = _stats(res, path, outdir)
        for r in res:
            materials[r["material_id"]] = _material_entry(r, rel)
            if r["problem"]:
                dropped.append({"material_id": r["material_id"], "formula": materials[r["material_id"]]["formula"],
                                "prototype": r.get("prototype", r.get("alloy", "")), "reason": r["problem"]})  # fmt: skip
    all_kept = [m for m in materials.values() if "problem" not in m]
    import chgnet

    manifest = {
        "description": "CHGNet relaxations standing in for DFT (see README.md); Alexandria format",
        "generator": "mlff2d.demo_data.generate_demo",
        "arguments": {"n_2d": n_2d, "alloys": alloys, "max_configs": max_configs, "seed": seed, "starts": starts},
        "chgnet_version": chgnet.__version__,
        "chgnet_model": "CHGNet.load() default (model 0.3.0)",
        "functional_label": FUNCTIONAL,
        "units": {"energy": "eV (total)", "forces": "eV/A", "stress": "kbar, compression positive (VASP sign), 3x3"},
        "settings": {
            "optimizer": "FIRE", "cell_filter": "FrechetCellFilter mask [1,1,0,0,0,1]", "fmax": FMAX,
            "max_steps": MAX_STEPS, "vacuum_A": 2 * HALF_VACUUM, "strain_max": STRAIN_MAX, "shear_max": SHEAR_MAX,
            "rattle_2d_A": RATTLE_2D, "strain_alloy": STRAIN_ALLOY, "shear_alloy": SHEAR_ALLOY,
            "rattle_alloy_A": RATTLE_ALLOY, "max_alloy_sites": MAX_ALLOY_SITES, "alloy_starts": starts,
        },  # fmt: skip
        "totals": {
            "n_materials": len(all_kept),
            "n_dropped": len(dropped),
            "elements": sorted({e for m in all_kept for e in m["elements"]}),
            "total_frames": int(sum(m["n_frames"] for m in all_kept)),
            "size_bytes": int(sum(f["size_bytes"] for f in files.values())),
            "max_atoms": max((m["n_atoms"] for m in all_kept), default=0),
        },
        "files": files,
        "formation_energies": "alloys/formation_energies.csv" if fe_rows else None,
        "dropped": dropped,
        "materials": materials,
    }
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("generated %d materials in %.0f s", len(all_kept), time.perf_counter() - t0)
    (outdir / "README.md").write_text(render_readme(manifest))
    return manifest


FAMILY_NAMES = {
    "mx2": "MX2 (1H, 1T dichalcogenides)",
    "mx3": "MX3 (BiI3 type)",
    "honeycomb": "honeycombs (planar or buckled)",
    "m2x2": "GaSe-type M2X2",
    "mxene": "MXenes",
    "ql": "quintuple layers",
    "phosphorene": "black phosphorene",
    "pbo": "PbO-type FeX",
}


def render_readme(manifest: dict[str, Any]) -> str:
    """The data README: what the files are, how they were made, units, counts, what was dropped."""
    t = manifest["totals"]
    args = manifest["arguments"]
    cmd = "python -m mlff2d.demo_data resources/demo --workers 2"
    if args["n_2d"] is not None or args["max_configs"] != MAX_CONFIGS or args["alloys"] != list(ALLOYS) or args["seed"]:
        cmd = (f"python -m mlff2d.demo_data OUTDIR --n-2d {args['n_2d']} --alloys {' '.join(args['alloys'])} "
               f"--max-configs {args['max_configs']} --seed {args['seed']} --starts {args.get('starts', ALLOY_STARTS)}")  # fmt: skip
    lines = [
        "# Demo data: CHGNet relaxations standing in for DFT",
        "",
        "**These are not DFT data.** Every energy, force and stress here was computed with CHGNet "
        f"{manifest['chgnet_version']} (a universal machine-learned interatomic potential, pretrained "
        "weights from its wheel) standing in for DFT, so that the whole campaign runs on a laptop with "
        "physically sensible (but not DFT-accurate) labels. Numbers from a campaign on these data say "
        "nothing about the accuracy of the models against DFT.",
        "",
        "## How they were made",
        "",
        f"    {cmd}",
        "",
        "(`mlff2d.demo_data.generate_demo`; deterministic: seeds derive from `seed` and each material's "
        "fixed position in the prototype list, CHGNet runs on one CPU thread.) Each structure is relaxed "
        f"with ASE's FIRE in `FrechetCellFilter(atoms, mask=[1, 1, 0, 0, 0, 1])` (positions and in-plane "
        f"cell; c fixed), fmax {FMAX} eV/Å, at most {MAX_STEPS} steps, and **every** step is recorded "
        "(energy, forces, stress), as a DFT code records its ionic steps. Trajectories that hit the step "
        "limit are kept (like unfinished DFT relaxations); `manifest.json` marks them `converged: false`.",
        "",
        "- `2d/demo_2d.json.bz2`: 2D monolayers of **dense chemistry**, so that a small model trained for "
        "minutes on two cores generalises: 1H and 1T MX2 of the ten alloy metals and Hf and Cr with X = S, Se, "
        "Te, plus PbO-type FeS, FeSe and FeTe. Each compound is built with ASE and first relaxed in its "
        f"primitive cell (not recorded); then each of its {len(STARTS)} **starts** (1×1, 2×1 and √3×√3 or 2×2 "
        "supercells) is a material of its own, strained in-plane (ε_xx, ε_yy uniform in "
        f"±{STRAIN_MAX:.0%}), sheared (ε_xy in ±{SHEAR_MAX:.0%}) and rattled (Gaussian, σ = {RATTLE_2D} Å) "
        "with its own seed, and relaxed with every step recorded. Every metal is in 18 materials (Fe in 27), "
        "every chalcogen in about 80. Ids `demo-2d-NNNN` (NNNN = position in the start list, so dropped "
        "materials leave gaps). Starts of one compound relax to the same minimum, and a split by material can "
        "put one start in the training set and another in the test set: the relaxation test then measures "
        "relaxing from a new start of known chemistry more than new chemistry.",
        "- `alloys/<ALLOY>.json.bz2`: metal-sublattice configurations of 1H MX2 (S fixed) enumerated with "
        "`icet.tools.enumerate_structures` on the primitive cell (pbc [True, True, False]) with up to "
        f"{MAX_ALLOY_SITES} metal sites (≤ 18 atoms; {'all of them' if args['max_configs'] is None else 'at most ' + str(args['max_configs'])}"
        ", end members first, then a round-robin over compositions, x closest to 1/2 first), each in "
        f"{args.get('starts', ALLOY_STARTS)} starts (ids `<ALLOY>-0NNN`, `<ALLOY>-1NNN`, ...; `-0001` = first "
        "metal, `-0002` = second metal). Started at Vegard's-law lattice constants from the relaxed end "
        f"members, strained (±{STRAIN_ALLOY:.0%}), sheared (±{SHEAR_ALLOY:.1%}) and rattled (σ = {RATTLE_ALLOY} Å) "
        "with the start's own seed, relaxed as above. MoWS2, MoTaS2, NbMoS2, TiTaS2 are the formation-energy "
        "alloys; TiVS2 and IrRuS2 are for transfer learning.",
        "- `alloys/formation_energies.csv`: `alloy, material_id, n_metal_sites, x` (fraction of the "
        "second metal in the name), `energy_per_site_eV` (final total energy / metal sites), "
        "`formation_energy_per_site_eV` = [E − (1−x)·N·e_A − x·N·e_B]/N relative to the two relaxed pure "
        "end members of the same set (N metal sites, e_A, e_B their energies per metal site), and "
        "`formation_energy_per_atom_eV` = per site / 3 (one metal per MX2 formula unit).",
        "- `manifest.json`: the statistics below, per file and per material (tests compare against it).",
        "",
        "## What these data can and cannot show",
        "",
        "They are made for learning: a small model trained for minutes on two cores generalises on them "
        "(dense chemistry; every element of a val/test material is in many training materials; starts "
        "far from equilibrium, so relaxations take tens of steps). They cannot show accuracy against DFT "
        "(the labels are CHGNet's), and the small models of the demo campaign are far from converged. "
        "The alloys' mixing energies (about 1 meV/atom for MoWS2, 5 for IrRuS2) are CHGNet's, not DFT's.",
        "",
        "## Format and units",
        "",
        "Alexandria geometry-optimisation JSON, bz2-compressed: `{material_id: [{\"functional\": "
        f"\"{FUNCTIONAL}\", \"steps\": [{{\"structure\", \"energy\", \"forces\", \"stress\"}}, ...]}}]}}`. "
        "`structure` is a pymatgen `Structure.as_dict()` with fractional coordinates (`abc`; the "
        "redundant `xyz` is left out to save space). Cells are periodic in all three directions, a and b "
        f"in the xy plane, {2 * HALF_VACUUM:.0f} Å of vacuum along z. Energy: total, eV (6 decimals). "
        "Forces: eV/Å (5 decimals). **Stress: kbar, compression positive (VASP's sign), 3×3** (4 "
        "decimals), computed over the whole cell volume, vacuum included; in the workflow config use "
        "`stress_unit: kbar_vasp`. CHGNet's ASE calculator returns eV/Å³ with tension positive (checked "
        "against a finite difference of the energy), so kbar = −σ_ASE × 1602.1766208.",
        "",
        "## Contents",
        "",
        "| file | materials | elements | frames (total) | frames per trajectory min / mean / max | atoms | converged | size |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, f in manifest["files"].items():
        fp, ap = f["frames_per_trajectory"], f["atoms_per_structure"]
        lines.append(
            f"| `{name}` | {f['n_materials']} | {f['n_elements']} | {f['total_frames']} | "
            f"{fp['min']} / {fp['mean']:.1f} / {fp['max']} | {ap['min']}–{ap['max']} | {f['n_converged']} | "
            f"{f['size_bytes'] / 1e6:.2f} MB |"
        )
    lines += [
        f"| **all** | {t['n_materials']} | {len(t['elements'])} | {t['total_frames']} | | ≤ {t['max_atoms']} | | "
        f"{t['size_bytes'] / 1e6:.2f} MB |",
        "",
        f"Elements ({len(t['elements'])}): {', '.join(t['elements'])}.",
        "",
    ]
    families: dict[str, dict[str, int]] = {}
    for m in manifest["materials"].values():
        if "family" in m and "problem" not in m:
            compound = compound_name(Prototype(m["prototype"], m["family"]))
            families.setdefault(m["family"], {}).setdefault(compound, 0)
            families[m["family"]][compound] += 1
    if families:
        lines += ["2D compounds by family (each with its number of starts, supercells of up to 20 atoms):", ""]
        lines += [f"- {FAMILY_NAMES.get(f, f)} ({len(c)} compounds, {sum(c.values())} materials): "
                  f"{', '.join(f'{k} ×{v}' for k, v in c.items())}" for f, c in families.items()]
        lines.append("")
    lines += [
        "## Dropped",
        "",
        "A material is left out when any recorded frame has E/N outside [−20, 0] eV/atom, an atomic force "
        f"above {FORCE_MAX:.0f} eV/Å, a stress component above {STRESS_MAX_KBAR:.0f} kbar, an atom with no "
        f"neighbour within {ISOLATION_CUTOFF:.0f} Å, or lost its vacuum along z (the pipeline's outlier "
        "limits), or when its unrecorded pre-relaxation did.",
        "",
    ]
    if manifest["dropped"]:
        lines += [f"{len(manifest['dropped'])} dropped:", "", "| id | formula | prototype | reason |", "| --- | --- | --- | --- |"]
        lines += [f"| {d['material_id']} | {d['formula']} | {d['prototype']} | {d['reason']} |" for d in manifest["dropped"]]
    else:
        lines.append("None were dropped.")
    lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m mlff2d.demo_data", description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--n-2d", type=int, default=None, help="first N 2D prototypes (default all)")
    parser.add_argument("--alloys", nargs="*", default=None, help=f"alloys (default all: {' '.join(ALLOYS)})")
    parser.add_argument("--max-configs", type=int, default=None, help=f"configurations per alloy (default {MAX_CONFIGS})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--starts", type=int, default=ALLOY_STARTS, help=f"starts per alloy configuration (default {ALLOY_STARTS})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    _init_worker()
    manifest = generate_demo(args.outdir, args.n_2d, args.alloys, args.max_configs, args.seed, args.workers, args.starts)
    log.info("wrote %s: %s", args.outdir, json.dumps(manifest["totals"]))


if __name__ == "__main__":
    main()
