"""Metrics in physical units: custom_nets.metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.handlers import IgniteMetricHandler
from monai.metrics import compute_hausdorff_distance

from custom_nets.metrics import PhysicalHausdorffDistance, spacing_of


def boxes(shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    pred = torch.zeros(1, 1, 20, 20, 12)
    label = torch.zeros(1, 1, 20, 20, 12)
    label[..., 5:10, 5:10, 3:6] = 1
    pred[..., 5:10, 5:10, 3 + shift:6 + shift] = 1  # shifted along the third (coarse) axis only
    return pred, label


def test_hausdorff_distance_is_in_the_affines_millimetres() -> None:
    pred, label = boxes(shift=2)
    affine = torch.tensor(np.diag([0.8, 0.8, 3.0, 1.0]), dtype=torch.float64)
    metric = PhysicalHausdorffDistance(include_background=True, percentile=95, reduction="none")
    mm = metric(MetaTensor(pred, affine=affine), MetaTensor(label, affine=affine))
    expected = compute_hausdorff_distance(pred, label, include_background=True, percentile=95, spacing=[0.8, 0.8, 3.0])
    voxels = compute_hausdorff_distance(pred, label, include_background=True, percentile=95)
    assert float(mm) == pytest.approx(float(expected)) == pytest.approx(6.0)  # 2 slices of 3 mm
    assert float(voxels) == pytest.approx(2.0)  # what MONAI's handler would have reported
    assert spacing_of(torch.zeros(1, 1, 2, 2, 2)) is None
    assert spacing_of(MetaTensor(torch.zeros(1, 2, 2, 2), affine=affine)) == pytest.approx([0.8, 0.8, 3.0])


def test_ignite_handler_passes_decollated_metatensors_with_their_affines() -> None:
    from ignite.engine import Engine

    pred, label = boxes(shift=1)
    affine = torch.tensor(np.diag([1.0, 1.0, 5.0, 1.0]), dtype=torch.float64)
    item = {"pred": MetaTensor(pred[0], affine=affine), "label": MetaTensor(label[0], affine=affine)}
    engine = Engine(lambda engine, batch: [item])
    handler = IgniteMetricHandler(metric_fn=PhysicalHausdorffDistance(include_background=True, percentile=95,
                                                                      reduction="none"),
                                  output_transform=lambda out: ([o["pred"] for o in out], [o["label"] for o in out]),
                                  save_details=True)
    handler.attach(engine, "hd95")
    engine.run([0], max_epochs=1)
    assert float(engine.state.metrics["hd95"]) == pytest.approx(5.0)  # one 5 mm slice, not 1 voxel
