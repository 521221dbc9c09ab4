"""One in-plane stress metric for every family: the mean |Δσ| over xx, yy and xy (once each), in
GPa. Checked on a hand-computed example through each family's own recorder (M3GNet's Lightning
callback, MACE's per-epoch metric object and its metrics.csv reader), no training."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from mlff2d.families import IN_PLANE_STRESS_3X3, STRESS_UNIT, in_plane_stress_mae
from mlff2d.io.units import EV_PER_A3_IN_GPA

#: Stress differences (eV/Å³) of two structures. In-plane: xx, yy, xy = 1, -2, 3 (·1e-3) and
#: 0, 1, -1; yx repeats xy; the z components are large and must not count.
DELTA_EV_A3 = 1e-3 * np.array(
    [
        [[1.0, 3.0, 50.0], [3.0, -2.0, 60.0], [50.0, 60.0, 500.0]],
        [[0.0, -1.0, 70.0], [-1.0, 1.0, 80.0], [70.0, 80.0, -900.0]],
    ]
)
#: By hand: (1 + 2 + 3 + 0 + 1 + 1) / 6 · 1e-3 eV/Å³, in GPa.
EXPECTED_GPA = 8.0 / 6.0 * 1e-3 * 160.21766208


def test_the_definition_by_hand() -> None:
    assert IN_PLANE_STRESS_3X3 == ((0, 0), (1, 1), (0, 1)) and STRESS_UNIT == "GPa"
    assert in_plane_stress_mae(DELTA_EV_A3, EV_PER_A3_IN_GPA) == pytest.approx(EXPECTED_GPA, rel=1e-12)
    assert in_plane_stress_mae(DELTA_EV_A3.reshape(2, 9) * EV_PER_A3_IN_GPA) == pytest.approx(EXPECTED_GPA, rel=1e-12)
    # xy counted twice (the old MACE metric) would give 12/8 · 1e-3 eV/Å³: not this number
    assert EXPECTED_GPA != pytest.approx(12.0 / 8.0 * 1e-3 * 160.21766208, rel=1e-3)
    missing = DELTA_EV_A3.copy()
    missing[:, 2, :] = np.nan  # NaN labels out of plane change nothing
    assert in_plane_stress_mae(missing, EV_PER_A3_IN_GPA) == pytest.approx(EXPECTED_GPA, rel=1e-12)


def test_mace_metric_and_metrics_csv(tmp_path: Path) -> None:
    """MACE's metric subclass on MACE's flat reference - prediction (eV/Å³), then read_metrics."""
    pytest.importorskip("mace")
    from mlff2d.families import _mace_patches, mace

    class Base:  # what MACELoss.compute leaves for the subclass: its own aux and the flat deltas
        stress_computed = True
        delta_stress = DELTA_EV_A3.reshape(-1)

        def compute(self) -> tuple[float, dict]:
            return 0.5, {"mae_e_per_atom": 0.002, "mae_f": 0.03, "mae_stress": 123.0}

        def convert(self, x: np.ndarray) -> np.ndarray:
            return np.asarray(x)

    _, aux = _mace_patches.in_plane_metrics_class(Base)().compute()
    assert aux["mae_stress_in_plane_GPa"] == pytest.approx(EXPECTED_GPA, rel=1e-12)
    results = tmp_path / "results.txt"
    results.write_text(json.dumps({"mode": "eval", "epoch": 0, **aux}) + "\n")
    row = mace.read_metrics(results).iloc[0]
    assert row["stress_mae"] == pytest.approx(EXPECTED_GPA, rel=1e-12) and row["stress_unit"] == "GPa"


def test_m3gnet_recorder_and_metrics_csv(tmp_path: Path) -> None:
    """M3GNet's Lightning recorder on the same differences, given to it in GPa (matgl's unit)."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("matgl")
    from mlff2d.families import _m3gnet_lightning

    recorder = _m3gnet_lightning.epoch_recorder(tmp_path)
    trainer = SimpleNamespace(current_epoch=0, max_epochs=1, is_global_zero=True, strategy=SimpleNamespace(broadcast=lambda x, src=0: x),
                              save_checkpoint=lambda path, weights_only=False: Path(path).write_text("ckpt"))
    recorder.on_train_start(trainer, None)
    recorder.on_train_epoch_start(trainer, None)
    reference = torch.zeros(2, 3, 3, dtype=torch.float64)
    reference[:, 2, :] = float("nan")  # the masked out-of-plane labels
    predicted = reference.nan_to_num() + torch.as_tensor(DELTA_EV_A3 * EV_PER_A3_IN_GPA)
    energies, forces = torch.zeros(2), torch.zeros(6, 3)
    outputs = {"preds": (energies, forces, predicted), "labels": (energies, forces, reference),
               "num_atoms": torch.tensor([3, 3])}
    # the batch split in two: the MAE is over components, not a mean of batch means
    for k in (0, 1):
        part = {"preds": (energies[k : k + 1], forces[3 * k : 3 * k + 3], predicted[k : k + 1]),
                "labels": (energies[k : k + 1], forces[3 * k : 3 * k + 3], reference[k : k + 1]),
                "num_atoms": outputs["num_atoms"][k : k + 1]}
        recorder.on_validation_batch_end(trainer, None, part, None, k)
    recorder.on_train_epoch_end(trainer, None)
    row = pd.read_csv(tmp_path / "metrics.csv").iloc[0]
    assert row["stress_mae"] == pytest.approx(EXPECTED_GPA, rel=1e-9) and row["stress_unit"] == "GPa"
