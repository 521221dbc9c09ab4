"""The 2D materials of the demo dataset (see :mod:`mlff2d.demo.data`): prototypes of many families
built with ASE, their supercell starts, and the alloys of the alloy sets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Vacuum on each side of the layer (Å); the gap between periodic images is twice this.
HALF_VACUUM = 7.5

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


def mx2_prototype(m: str, x: str, kind: str, sc: Any = SC_1, start: int = 0) -> Prototype:
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
                protos += [mx2_prototype(m, x, kind, sc, k) for k, sc in enumerate(starts)]
    for x, a, h in (("S", 3.60, 1.30), ("Se", 3.77, 1.47), ("Te", 3.82, 1.62)):
        for k, sc in enumerate(STARTS_LARGE):
            name = f"Fe{x}-PbO" + (f"-{k}" if k else "")
            protos.append(Prototype(name, "pbo", {"m": "Fe", "x": x, "a": a, "h": h}, (SC_1, SC_2x1, SC_2x2)[k]))
    return protos


def _hex_cell(a: float, c: float) -> np.ndarray:
    return np.array([[a, 0.0, 0.0], [-a / 2, a * np.sqrt(3) / 2, 0.0], [0.0, 0.0, c]])


def with_vacuum(atoms: Any) -> Any:
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
    return with_vacuum(Atoms(symbols, positions=pos, cell=cell))


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
        atoms = with_vacuum(atoms)
        if proto.family == "mx3":
            atoms = in_plane_supercell(atoms, SC_R3)
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


def in_plane_supercell(atoms: Any, sc: Any) -> Any:
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
