"""Tests of :mod:`custom_nets.transforms.normalization`: planned per-channel intensity normalisation (nnU-Net's CT
and z-score schemes) and the task's own rule when there is no plan."""

from __future__ import annotations

import pytest
import torch

from custom_nets.transforms.normalization import intensity_normalization


def test_planned_normalization_per_channel() -> None:
    plan = {"normalization": [{"scheme": "ct", "clip": [-100.0, 300.0], "mean": 100.0, "std": 50.0},
                              {"scheme": "zscore_nonzero"}, {"scheme": "zscore"}]}
    image = torch.zeros(3, 8, 8, 8)
    image[0] = -1000.0
    image[0, 2:6, 2:6, 2:6] = 200.0
    image[1, 2:6, 2:6, 2:6] = torch.arange(64, dtype=torch.float32).reshape(4, 4, 4) + 10
    image[2] = torch.rand(8, 8, 8) * 7 + 3
    out = intensity_normalization(None, plan=plan)({"image": image})["image"]
    assert out.shape == image.shape
    assert out[0].min().item() == pytest.approx((-100 - 100) / 50) and out[0].max().item() == pytest.approx(2.0)
    inside = out[1, 2:6, 2:6, 2:6]
    assert inside.mean().item() == pytest.approx(0.0, abs=1e-5) and (out[1] == 0).sum().item() == 8**3 - 64
    assert out[2].mean().item() == pytest.approx(0.0, abs=1e-5) and out[2].std(unbiased=False).item() == pytest.approx(
        1.0, abs=1e-4)
    with pytest.raises(ValueError, match="channels"):
        intensity_normalization(None, plan=plan)({"image": image[:2]})


def test_no_plan_keeps_the_task_rules() -> None:
    from monai.transforms import NormalizeIntensityd

    from custom_nets.data.dataset import Task

    task = Task("t", ("MR",), ("a",), ((1,),), (1,), 3, (1.0, 1.0, 1.0))
    assert isinstance(intensity_normalization(task), NormalizeIntensityd)
