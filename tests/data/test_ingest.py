"""Ingest of every source format, unit handling, and every bad-input case."""

from __future__ import annotations

import math
from pathlib import Path

import ase.io
import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from conftest import MOS2_FRAC, calc, mos2_lattice, step, trajectory, write_alexandria

from mlff2d.data.ingest import IngestError, Source, ingest
from mlff2d.data.ingest_frames import vacuum_along_z
from mlff2d.io.store import read_frames, row_to_atoms


def run(tmp_path: Path, *sources: Source) -> tuple[pd.DataFrame, pd.DataFrame]:
    mats = ingest(list(sources), tmp_path / "out" / "frames.parquet", tmp_path / "out" / "materials.csv")
    return mats, read_frames(tmp_path / "out" / "frames.parquet")


def problems(frames: pd.DataFrame, mid: str) -> list[str]:
    return frames.loc[frames["material_id"] == mid, "problem"].tolist()


def test_alexandria_calcs_concatenated_and_units(tmp_path: Path) -> None:
    data = {
        "agm1": [calc(trajectory([-21.0, -21.3])), calc(trajectory([-21.4]))],
        "agm2": [calc(trajectory([-18.0]))],
    }
    write_alexandria(tmp_path / "in" / "a.json.bz2", data)
    mats, frames = run(tmp_path, Source(str(tmp_path / "in"), "alexandria"))
    assert mats.set_index("material_id")["n_frames"].to_dict() == {"agm1": 3, "agm2": 1}
    assert mats.set_index("material_id")["n_calcs"].to_dict() == {"agm1": 2, "agm2": 1}
    one = frames[frames["material_id"] == "agm1"]
    assert one["step"].tolist() == [0, 1, 2]
    assert one["energy"].tolist() == [-21.0, -21.3, -21.4]
    assert (frames["problem"] == "").all()
    # 10 kbar compression (VASP) -> -10 * 0.1 / 160.21766208 eV/Å³, tension positive
    stress = np.asarray(one.iloc[0]["stress"])
    assert stress[:2] == pytest.approx([-1.0 / 160.21766208] * 2)
    assert stress[2:] == pytest.approx([0.0] * 4)
    atoms = row_to_atoms(one.iloc[0])
    assert atoms.get_chemical_symbols() == ["Mo", "S", "S"]
    assert atoms.cell.cellpar()[0] == pytest.approx(3.19)
    assert atoms.get_forces()[1].tolist() == pytest.approx([0.01, -0.02, 0.0])


def test_plain_json_and_functional_filter(tmp_path: Path) -> None:
    data = {"agm1": [calc(trajectory([-21.0]), "PBE"), calc(trajectory([-22.0]), "SCAN")]}
    write_alexandria(tmp_path / "a.json", data)
    mats, frames = run(tmp_path, Source(str(tmp_path / "a.json"), "alexandria", functional="PBE"))
    assert frames["energy"].tolist() == [-21.0]
    assert mats.loc[0, "skipped_calcs"] == 1


def test_extxyz_source(tmp_path: Path) -> None:
    images = []
    for mid, energies in (("m1", [-20.0, -20.5]), ("m2", [-10.0])):
        for i, e in reversed(list(enumerate(energies))):  # out of order on purpose
            atoms = Atoms("MoS2", scaled_positions=MOS2_FRAC, cell=mos2_lattice(), pbc=True)
            atoms.info.update(material_id=mid, step=i)
            atoms.calc = SinglePointCalculator(atoms, energy=e, forces=np.zeros((3, 3)), stress=np.full(6, 0.5))
            images.append(atoms)
    ase.io.write(tmp_path / "t.extxyz", images, format="extxyz")
    mats, frames = run(tmp_path, Source(str(tmp_path / "t.extxyz"), "extxyz", stress_unit="GPa"))
    assert frames[frames["material_id"] == "m1"]["energy"].tolist() == [-20.0, -20.5]
    assert np.asarray(frames.iloc[0]["stress"]) == pytest.approx([0.5 / 160.21766208] * 6)
    assert len(mats) == 2


def test_ase_db_source(tmp_path: Path) -> None:
    import ase.db

    db = ase.db.connect(tmp_path / "t.db")
    for i, e in enumerate([-20.0, -20.2, -20.3]):
        atoms = Atoms("MoS2", scaled_positions=MOS2_FRAC, cell=mos2_lattice(), pbc=True)
        atoms.calc = SinglePointCalculator(atoms, energy=e, forces=np.zeros((3, 3)), stress=np.zeros(6))
        db.write(atoms, material_id="dbm", step=i)
    mats, frames = run(tmp_path, Source(str(tmp_path / "t.db"), "ase_db", stress_unit="eV/A3"))
    assert frames["energy"].tolist() == [-20.0, -20.2, -20.3]
    assert (frames["problem"] == "").all()


def write_vasprun(path: Path, energies: list[float], stress_kbar: float = 10.0) -> None:
    """A minimal vasprun.xml (what ASE's vasp-xml reader needs) for MoS2, one
    <calculation> per ionic step; stress in kbar, compression positive, as VASP writes it."""
    lat = mos2_lattice()
    vec = lambda rows: "".join(f"<v>{' '.join(f'{x:.8f}' for x in r)}</v>" for r in rows)  # noqa: E731
    structure = f'<crystal><varray name="basis">{vec(lat)}</varray></crystal><varray name="positions">{vec(MOS2_FRAC)}</varray>'
    steps = "".join(
        f'<calculation><scstep><energy><i name="e_fr_energy">{e}</i><i name="e_0_energy">{e}</i></energy></scstep>'
        f"<structure>{structure}</structure>"
        f'<varray name="forces">{vec(np.full((3, 3), 0.01))}</varray>'
        f'<varray name="stress">{vec(np.diag([stress_kbar, stress_kbar, 0.0]))}</varray>'
        f'<energy><i name="e_fr_energy">{e}</i><i name="e_0_energy">{e}</i></energy></calculation>'
        for e in energies
    )
    atoms = "".join(f"<rc><c>{s}</c><c>1</c></rc>" for s in ("Mo", "S", "S"))
    path.write_text(
        '<?xml version="1.0" encoding="ISO-8859-1"?><modeling>'
        '<kpoints><varray name="kpointlist"><v>0 0 0</v></varray><varray name="weights"><v>1</v></varray></kpoints>'
        f'<atominfo><array name="atoms"><set>{atoms}</set></array></atominfo>'
        f'<structure name="initialpos">{structure}</structure>{steps}</modeling>'
    )


def test_vasp_directory_source(tmp_path: Path) -> None:
    for name, energies in (("MoS2_a", [-21.0, -21.2, -21.25]), ("MoS2_b", [-20.0])):
        (tmp_path / "vasp" / name).mkdir(parents=True)
        write_vasprun(tmp_path / "vasp" / name / "vasprun.xml", energies)
    # stress_unit is ignored for VASP runs: ASE's reader already converts to eV/Å³, tension positive
    mats, frames = run(tmp_path, Source(str(tmp_path / "vasp"), "vasp", stress_unit="GPa"))
    assert mats.set_index("material_id")["n_frames"].to_dict() == {"MoS2_a": 3, "MoS2_b": 1}
    assert frames[frames["material_id"] == "MoS2_a"]["energy"].tolist() == pytest.approx([-21.0, -21.2, -21.25])
    assert np.asarray(frames.iloc[0]["stress"])[:2] == pytest.approx([-1.0 / 160.21766208] * 2)
    assert (frames["problem"] == "").all()


def test_vasp_unreadable_run_names_file(tmp_path: Path) -> None:
    run_dir = tmp_path / "vasp" / "broken"
    run_dir.mkdir(parents=True)
    (run_dir / "OUTCAR").write_text("not an outcar\n")
    with pytest.raises(IngestError, match=r"broken/OUTCAR: cannot parse VASP output"):
        run(tmp_path, Source(str(tmp_path / "vasp"), "vasp"))


# ----------------------------------------------------------------------------- bad input


def test_corrupt_bz2_names_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.json.bz2"
    path.write_bytes(b"BZh9" + b"\x00" * 100)
    with pytest.raises(IngestError, match=r"bad\.json\.bz2: cannot decompress"):
        run(tmp_path, Source(str(path), "alexandria"))


def test_truncated_bz2_names_file(tmp_path: Path) -> None:
    path = write_alexandria(tmp_path / "t.json.bz2", {"agm1": [calc(trajectory([-21.0] * 5))]})
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(IngestError, match=r"t\.json\.bz2"):
        run(tmp_path, Source(str(path), "alexandria"))


def test_truncated_json_names_file(tmp_path: Path) -> None:
    path = write_alexandria(tmp_path / "t.json", {"agm1": [calc(trajectory([-21.0]))]})
    path.write_text(path.read_text()[:-30])
    with pytest.raises(IngestError, match=r"t\.json: not valid JSON"):
        run(tmp_path, Source(str(path), "alexandria"))


def test_record_without_structure_names_record(tmp_path: Path) -> None:
    path = write_alexandria(tmp_path / "t.json", {"agm9": [calc([{"energy": -1.0}])]})
    with pytest.raises(IngestError, match=r"t\.json: material 'agm9' calc 0 step 0: no 'structure'"):
        run(tmp_path, Source(str(path), "alexandria"))


def test_same_material_in_two_files(tmp_path: Path) -> None:
    write_alexandria(tmp_path / "in" / "a.json", {"agm1": [calc(trajectory([-21.0]))]})
    write_alexandria(tmp_path / "in" / "b.json", {"agm1": [calc(trajectory([-21.0]))]})
    with pytest.raises(IngestError, match=r"'agm1' appears in two files: .*a\.json and .*b\.json"):
        run(tmp_path, Source(str(tmp_path / "in"), "alexandria"))


def test_frame_problems_are_recorded(tmp_path: Path) -> None:
    flat = np.array([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [0.0, 0.5, 0.0]])
    data = {
        "no_energy": [calc([step(energy=None)])],
        "null_forces": [calc([step(forces=[[0.1, None, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])])],
        "nan_energy": [calc([step(energy=float("nan"))])],
        "inf_force": [calc([step(forces=[[float("inf"), 0, 0], [0, 0, 0], [0, 0, 0]])])],
        "bad_stress": [calc([step(stress=[1.0, 2.0, 3.0, 4.0])])],
        "no_stress": [calc([{**step(), "stress": None}])],
        "unknown_el": [calc([step(symbols=("Xx", "S", "S"))])],
        # the layer is spread along c: no vacuum along z
        "no_vacuum": [calc([step(frac=np.array([[0.0, 0.0, 0.0], [1 / 3, 2 / 3, 0.33], [1 / 3, 2 / 3, 0.66]]), lattice=mos2_lattice(c=6.0))])],
        # vacuum along x: the third lattice vector is short, a is long
        "vacuum_x": [calc([step(lattice=np.array([[0.0, 0.0, 18.1], [3.19, 0.0, 0.0], [0.0, 3.19, 0.0]]), frac=flat)])],
        "zero_volume": [calc([step(lattice=np.array([[3.19, 0, 0], [6.38, 0, 0], [0, 0, 18.1]]))])],
        "empty": [calc([])],
        "fine": [calc([step()])],
    }
    write_alexandria(tmp_path / "t.json", data)
    mats, frames = run(tmp_path, Source(str(tmp_path / "t.json"), "alexandria"))
    expected = {
        "no_energy": "missing_energy",
        "null_forces": "null_forces",
        "nan_energy": "non_finite",
        "inf_force": "non_finite",
        "bad_stress": "bad_stress_shape",
        "no_stress": "missing_stress",
        "unknown_el": "unknown_element",
        "no_vacuum": "vacuum_not_z",
        "vacuum_x": "vacuum_not_z",
        "zero_volume": "zero_volume",
        "fine": "",
    }
    for mid, problem in expected.items():
        assert problems(frames, mid) == [problem], mid
    assert mats.set_index("material_id").loc["empty", "problem"] == "empty_trajectory"
    assert set(mats["material_id"]) == set(data)  # every material accounted for


def test_extxyz_frame_without_energy(tmp_path: Path) -> None:
    atoms = Atoms("MoS2", scaled_positions=MOS2_FRAC, cell=mos2_lattice(), pbc=True)
    atoms.info.update(material_id="x1", step=0)
    atoms.arrays["forces"] = np.zeros((3, 3))
    ase.io.write(tmp_path / "t.extxyz", [atoms], format="extxyz")
    _, frames = run(tmp_path, Source(str(tmp_path / "t.extxyz"), "extxyz"))
    assert frames["problem"].tolist() == ["missing_energy"]
    assert math.isnan(frames["energy"].iloc[0])


def test_extxyz_frame_without_id_names_frame(tmp_path: Path) -> None:
    atoms = Atoms("MoS2", scaled_positions=MOS2_FRAC, cell=mos2_lattice(), pbc=True)
    ase.io.write(tmp_path / "t.extxyz", [atoms, atoms], format="extxyz")
    with pytest.raises(IngestError, match=r"t\.extxyz: frame 0: no material id"):
        run(tmp_path, Source(str(tmp_path / "t.extxyz"), "extxyz"))


def test_missing_files_and_bad_settings(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="no input files"):
        run(tmp_path, Source(str(tmp_path / "nothing*.json"), "alexandria"))
    with pytest.raises(IngestError, match="unknown stress_unit 'bar'"):
        Source("x", "alexandria", stress_unit="bar")


def test_vacuum_check() -> None:
    pos = MOS2_FRAC @ mos2_lattice()
    assert vacuum_along_z(mos2_lattice(), pos, 5.0)
    assert not vacuum_along_z(mos2_lattice(), pos, 16.0)


def test_streaming_one_row_group_per_file(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    for i in range(3):
        write_alexandria(tmp_path / "in" / f"f{i}.json.bz2", {f"m{i}{j}": [calc(trajectory([-20.0, -20.1]))] for j in range(4)})
    run(tmp_path, Source(str(tmp_path / "in" / "*.json.bz2"), "alexandria"))
    pf = pq.ParquetFile(tmp_path / "out" / "frames.parquet")
    assert pf.num_row_groups == 3
    assert pf.metadata.num_rows == 24
    # the inputs really were bz2 streams, so the compressed reader is what read them
    assert all(f.read_bytes()[:3] == b"BZh" for f in (tmp_path / "in").glob("*.json.bz2"))


def test_parallel_workers_give_the_same_store(tmp_path: Path) -> None:
    from mlff2d.demo.synthetic import write_alexandria as synth

    synth(tmp_path / "in", 12, n_steps=5, per_file=3, seed=5)
    src = Source(str(tmp_path / "in"), "alexandria")
    one = ingest([src], tmp_path / "a" / "f.parquet", tmp_path / "a" / "m.csv", workers=1)
    two = ingest([src], tmp_path / "b" / "f.parquet", tmp_path / "b" / "m.csv", workers=2)
    assert one.equals(two)
    assert read_frames(tmp_path / "a" / "f.parquet").equals(read_frames(tmp_path / "b" / "f.parquet"))


@pytest.mark.parametrize(
    "site",
    [
        {"species": [{"element": "Mo", "occu": None}], "xyz": [0.0, 0.0, 9.0]},
        {"species": [], "xyz": [0.0, 0.0, 9.0]},
        {"species": [{"element": "Mo", "occu": 1}], "xyz": None},
        {"species": [{"element": "Mo", "occu": 1}]},
    ],
)
def test_malformed_site_names_the_record(tmp_path: Path, site: dict) -> None:
    bad = step()
    bad["structure"]["sites"][1] = site
    path = write_alexandria(tmp_path / "t.json", {"agm7": [calc([step(), bad])]})
    with pytest.raises(IngestError, match=r"t\.json: material 'agm7' calc 0 step 1: 'structure' is not a valid"):
        run(tmp_path, Source(str(path), "alexandria"))
