"""Unit conversions at the boundaries, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from mlff2d.io.units import ase_stress_to_gpa, stress_to_ase, to_voigt, voigt_to_matrix


def test_vasp_kbar_to_ase_hand_computed() -> None:
    # 10 kbar compression (VASP sign) = -1 GPa tension = -1/160.21766208 eV/Å³
    assert stress_to_ase(np.array([10.0]), "kbar_vasp")[0] == pytest.approx(-0.006241509, rel=1e-6)
    # 160.21766208 kbar compression = -16.021766208 GPa = -0.1 eV/Å³
    assert stress_to_ase(np.array([160.21766208]), "kbar_vasp")[0] == pytest.approx(-0.1)


def test_gpa_and_ev_a3() -> None:
    assert stress_to_ase(np.array([160.21766208]), "GPa")[0] == pytest.approx(1.0)
    assert stress_to_ase(np.array([0.25]), "eV/A3")[0] == 0.25
    # M3GNet labels: eV/Å³ -> GPa, tension stays positive
    assert ase_stress_to_gpa(np.array([0.01]))[0] == pytest.approx(1.6021766208)
    # round trip VASP kbar -> ASE -> GPa equals the thesis's factor -0.1
    assert ase_stress_to_gpa(stress_to_ase(np.array([-37.0]), "kbar_vasp"))[0] == pytest.approx(3.7)


def test_unknown_unit() -> None:
    with pytest.raises(ValueError, match="unknown stress unit"):
        stress_to_ase(np.zeros(6), "bar")


def test_voigt_order() -> None:
    m = np.array([[1.0, 6.0, 5.0], [6.0, 2.0, 4.0], [5.0, 4.0, 3.0]])
    assert to_voigt(m).tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    assert np.array_equal(voigt_to_matrix(to_voigt(m)), m)
    assert to_voigt(m.ravel()).tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    with pytest.raises(ValueError, match="shape"):
        to_voigt(np.zeros(4))
