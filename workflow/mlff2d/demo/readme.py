"""The README of the demo dataset (see :mod:`mlff2d.demo.data`), written from its manifest."""

from __future__ import annotations

from typing import Any

from mlff2d.demo.chgnet import FMAX, FORCE_MAX, FUNCTIONAL, ISOLATION_CUTOFF, MAX_STEPS, STRESS_MAX_KBAR
from mlff2d.demo.jobs import (
    ALLOY_STARTS,
    MAX_ALLOY_SITES,
    MAX_CONFIGS,
    RATTLE_2D,
    RATTLE_ALLOY,
    SHEAR_ALLOY,
    SHEAR_MAX,
    STRAIN_ALLOY,
    STRAIN_MAX,
)
from mlff2d.demo.structures import ALLOYS, HALF_VACUUM, STARTS, Prototype, compound_name


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
    lines = [*_introduction(manifest), *_files_made(manifest), *_scope_and_format(), *_contents(manifest)]
    lines += [*_families(manifest), *_dropped(manifest)]
    return "\n".join(lines)


def _command(args: dict[str, Any]) -> str:
    """The command that regenerates the data with the manifest's arguments."""
    if args["n_2d"] is not None or args["max_configs"] != MAX_CONFIGS or args["alloys"] != list(ALLOYS) or args["seed"]:
        return (f"python -m mlff2d.demo.data OUTDIR --n-2d {args['n_2d']} --alloys {' '.join(args['alloys'])} "
                f"--max-configs {args['max_configs']} --seed {args['seed']} --starts {args.get('starts', ALLOY_STARTS)}")  # fmt: skip
    return "python -m mlff2d.demo.data resources/demo --workers 2"


def _introduction(manifest: dict[str, Any]) -> list[str]:
    """Title, the warning that these are not DFT data, and how the relaxations were run."""
    return [
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
        f"    {_command(manifest['arguments'])}",
        "",
        "(`mlff2d.demo.data.generate_demo`; deterministic: seeds derive from `seed` and each material's "
        "fixed position in the prototype list, CHGNet runs on one CPU thread.) Each structure is relaxed "
        f"with ASE's FIRE in `FrechetCellFilter(atoms, mask=[1, 1, 0, 0, 0, 1])` (positions and in-plane "
        f"cell; c fixed), fmax {FMAX} eV/Å, at most {MAX_STEPS} steps, and **every** step is recorded "
        "(energy, forces, stress), as a DFT code records its ionic steps. Trajectories that hit the step "
        "limit are kept (like unfinished DFT relaxations); `manifest.json` marks them `converged: false`.",
        "",
    ]


def _files_made(manifest: dict[str, Any]) -> list[str]:
    """What each file holds and how its structures were made."""
    args = manifest["arguments"]
    return [
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
    ]


def _scope_and_format() -> list[str]:
    """What the data can show, their format and units, and the header of the contents table."""
    return [
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


def _contents(manifest: dict[str, Any]) -> list[str]:
    """The contents table's rows (one per file and the total) and the elements."""
    t = manifest["totals"]
    lines: list[str] = []
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
    return lines


def _families(manifest: dict[str, Any]) -> list[str]:
    """The 2D compounds by family, each with its number of starts."""
    lines: list[str] = []
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
    return lines


def _dropped(manifest: dict[str, Any]) -> list[str]:
    """The drop criteria and the materials dropped."""
    lines = [
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
    return lines
