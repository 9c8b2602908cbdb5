"""Tests of :mod:`custom_nets.blocks.se_residual`: DDANet's residual block with squeeze-and-excitation (the residual
base it shares: ``tests/blocks/test_residual.py``)."""

from __future__ import annotations

import pytest
import torch
from monai.networks.blocks import ChannelSELayer

from custom_nets.blocks.se_residual import SEResidualBlock

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_se_residual_block(spatial_dims: int) -> None:
    block = SEResidualBlock(spatial_dims, 5, 8)  # r=16 clipped to the width
    assert isinstance(block.se, ChannelSELayer)
    x = torch.randn(2, 5, *(6,) * spatial_dims)
    y = block(x)
    assert y.shape == (2, 8, *(6,) * spatial_dims)
    assert bool((y >= 0).all())  # ends with a ReLU
    wide = SEResidualBlock(2, 32, 32)
    assert wide.se.fc[0].out_features == 2  # r = 16 at DDANet widths
