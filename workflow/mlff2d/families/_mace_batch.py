"""One batched forward pass of a MACE model (see :func:`mlff2d.families.mace.batch_evaluator`)."""

from __future__ import annotations

from typing import Any


def _periodic(atoms: Any) -> Any:
    """``atoms``, or a copy periodic in all three directions when it has a full cell."""
    if atoms.pbc.all() or atoms.cell.rank < 3:
        return atoms
    out = atoms.copy()
    out.pbc = True
    return out


def evaluate_batch(calc: Any, structures: list[Any]) -> list[tuple[float, Any, Any]]:
    """One forward pass of ``calc``'s model over ``structures`` (see :func:`mlff2d.families.mace.batch_evaluator`)."""
    import torch
    from ase.stress import full_3x3_to_voigt_6_stress
    from mace import data as mace_data
    from mace.tools import torch_geometric, torch_tools

    if not structures:
        return []
    structures = [_periodic(atoms) for atoms in structures]
    keyspec = mace_data.KeySpecification(info_keys=calc.info_keys, arrays_keys={**calc.arrays_keys, calc.charges_key: "charges"})
    with torch_tools.default_dtype(calc.default_dtype):
        graphs = [
            mace_data.AtomicData.from_config(
                mace_data.config_from_atoms(atoms, key_specification=keyspec, head_name=calc.head),
                z_table=calc.z_table, cutoff=calc.r_max, heads=calc.available_heads,
            )
            for atoms in structures
        ]  # fmt: skip
    batch = torch_geometric.Batch.from_data_list(graphs).to(calc.device)
    model = calc.models[0]
    dtype = next(model.parameters()).dtype
    batch_dict = {k: (v.to(dtype) if torch.is_tensor(v) and torch.is_floating_point(v) else v) for k, v in batch.to_dict().items()}
    out = model(batch_dict, compute_stress=True, training=False)
    e_unit, l_unit = calc.energy_units_to_eV, calc.length_units_to_A
    energies = (out["energy"].detach().cpu().numpy() * e_unit).tolist()
    forces = out["forces"].detach().cpu().numpy() * (e_unit / l_unit)
    stresses = out["stress"].detach().cpu().numpy() * (e_unit / l_unit**3)
    ptr = batch["ptr"].cpu().numpy()
    return [
        (float(energies[i]), forces[ptr[i] : ptr[i + 1]], full_3x3_to_voigt_6_stress(stresses[i]))
        for i in range(len(structures))
    ]
