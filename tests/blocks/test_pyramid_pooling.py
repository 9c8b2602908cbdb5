"""Tests of :mod:`custom_nets.blocks.pyramid_pooling` (PSPNet's pyramid pooling module): the input passed through
first, training at batch size 1 with every norm, custom reduction widths and TorchScript."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_script_matches_eager

from custom_nets.blocks.pyramid_pooling import PyramidPooling

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("norm", ["batch", "instance", ("group", {"num_groups": 2})])
def test_pyramid_pooling_batch_one_training(norm) -> None:
    ppm = PyramidPooling(3, 16, bins=(1, 2, 3, 6), norm=norm).train()
    assert ppm.branch_channels == 4 and ppm.out_channels == 32
    x = torch.randn(1, 16, 4, 5, 6, requires_grad=True)  # batch 1, grid smaller than the largest bin
    y = ppm(x)
    assert y.shape == (1, 32, 4, 5, 6)
    torch.testing.assert_close(y[:, :16], x)  # the input is passed through first
    y.mean().backward()
    assert all(p.grad is not None for p in ppm.parameters())


def test_pyramid_pooling_2d_custom_reduction_and_script() -> None:
    ppm = PyramidPooling(2, 12, bins=(1, 3), reduction_channels=5)
    assert ppm.out_channels == 12 + 2 * 5
    assert_script_matches_eager(ppm, torch.randn(2, 12, 9, 7))
