"""Tests of :mod:`custom_nets.blocks.sampling`: AR-UNet's strided-conv down-sampling and interpolate-then-1x1-conv
up-sampling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from custom_nets.blocks.sampling import Downsample, Upsample

pytestmark = pytest.mark.usefixtures("one_thread")


def test_sampling_blocks() -> None:
    down = Downsample(3, 4, 8)
    assert down(torch.randn(1, 4, 8, 6, 10)).shape == (1, 8, 4, 3, 5)
    up = Upsample(2, 8, 4)
    x = torch.randn(1, 8, 5, 7)
    y = up(x)
    assert y.shape == (1, 4, 10, 14)
    # equal to "bilinear x2 interpolation (align_corners=False), then the 1x1 conv"
    conv = up.preconv
    expected = conv(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
    torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)
    assert Upsample(3, 4, 4)(torch.randn(1, 4, 2, 2, 2)).shape == (1, 4, 4, 4, 4)
