"""Tests of :mod:`custom_nets.transforms.outputs`: SelectFinalOutputd keeps the final output of stacked heads."""

from __future__ import annotations

import torch

from custom_nets.transforms.outputs import SelectFinalOutputd


def test_select_final_output():
    data = {"pred": torch.randn(4, 3, 8, 8)}
    assert SelectFinalOutputd("pred", reference_ndim=3)(data)["pred"].shape == (3, 8, 8)
    data = {"pred": torch.randn(3, 8, 8)}
    assert SelectFinalOutputd("pred", reference_ndim=3)(data)["pred"].shape == (3, 8, 8)
