"""Tests of :mod:`custom_nets.blocks.multires`: the MultiRes widths, the MultiRes block and the ResPath (DRRMSAN's
blocks; the residual base they share: ``tests/blocks/test_residual.py``)."""

from __future__ import annotations

import pytest
import torch

from custom_nets.blocks.multires import MultiResBlock, ResPath, multires_widths

pytestmark = pytest.mark.usefixtures("one_thread")


def test_multires_widths_follow_the_167_rule() -> None:
    totals = [sum(multires_widths(u)) for u in (32, 64, 128, 256, 512)]
    assert totals == [51, 105, 212, 426, 853]
    assert multires_widths(32) == (8, 17, 26)
    with pytest.raises(ValueError, match="at least 1"):
        multires_widths(2)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_multires_block_and_respath(spatial_dims: int) -> None:
    block = MultiResBlock(spatial_dims, 3, 8)
    x = torch.randn(2, 3, *(6,) * spatial_dims)
    y = block(x)
    assert block.out_channels == sum(multires_widths(8)) and y.shape == (2, block.out_channels, *(6,) * spatial_dims)
    path = ResPath(spatial_dims, block.out_channels, 8, length=3)
    assert len(path) == 3 and path(y).shape == (2, 8, *(6,) * spatial_dims)
    with pytest.raises(ValueError):
        ResPath(spatial_dims, 4, 4, length=0)
