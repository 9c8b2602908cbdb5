"""Tests of :mod:`custom_nets.losses.deep_supervision`: StackedDeepSupervisionLoss on a single output and on stacked
heads (weighted sum, gradient to every head, shapes it refuses)."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceLoss

from custom_nets.losses.deep_supervision import StackedDeepSupervisionLoss
from custom_nets.losses.dice_bce import DiceBCELoss

pytestmark = pytest.mark.usefixtures("one_thread")


def test_fct_weighted_deep_supervision_loss() -> None:
    torch.manual_seed(0)
    base = DiceBCELoss()
    loss = StackedDeepSupervisionLoss(base, weights=[0.57, 0.29, 0.14])  # full, 1/2, 1/4: full-res heaviest
    out = torch.randn(2, 3, 2, 16, 16)
    target = (torch.rand(2, 2, 16, 16) > 0.5).float()
    expected = sum(w * base(out[:, k], target) for k, w in enumerate([0.57, 0.29, 0.14]))
    torch.testing.assert_close(loss(out, target), expected)


def test_stacked_deep_supervision_loss():
    target = (torch.rand(2, 3, 8, 8) > 0.5).float()
    single = torch.randn(2, 3, 8, 8, requires_grad=True)
    base = DiceLoss(sigmoid=True)
    loss = StackedDeepSupervisionLoss(base, weights=[1.0, 0.5])
    assert torch.allclose(loss(single, target), base(single, target))
    stacked = torch.randn(2, 2, 3, 8, 8, requires_grad=True)
    expected = base(stacked[:, 0], target) + 0.5 * base(stacked[:, 1], target)
    value = loss(stacked, target)
    assert torch.allclose(value, expected)
    value.backward()
    assert stacked.grad[:, 1].abs().sum() > 0, "every head receives gradient"
    with pytest.raises(ValueError, match="fits neither"):
        loss(torch.randn(2, 3, 8), target)
