"""Tests of :mod:`custom_nets.losses.hybrid` (UNet 3+'s losses): MS-SSIM values and gradients, the IoU and hybrid
losses against Dice + BCE (:mod:`custom_nets.losses.dice_bce`), the loss-kind factory, and UNet3PlusLoss's split of
the deep-supervision heads and the CGM presence head."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from custom_nets.losses.dice_bce import DiceBCELoss
from custom_nets.losses.hybrid import (
    HybridLoss,
    IoULoss,
    MultiScaleSSIMLoss,
    UNet3PlusLoss,
    hybrid_segmentation_loss,
    ms_ssim,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_ms_ssim_identical_is_one_and_loss_grows_with_noise() -> None:
    torch.manual_seed(0)
    target = (torch.rand(2, 3, 64, 64) > 0.6).float()
    loss = MultiScaleSSIMLoss()
    assert float(loss(target, target)) == pytest.approx(0.0, abs=1e-6)
    torch.testing.assert_close(ms_ssim(target, target), torch.ones(2, 3))
    values = [float(loss((target + s * torch.randn_like(target)).clamp(0, 1), target)) for s in (0.05, 0.2, 0.5)]
    assert 0 < values[0] < values[1] < values[2] <= 1
    volume = (torch.rand(1, 2, 24, 24, 12) > 0.5).float()  # 3D and a depth smaller than the window
    assert float(loss(volume, volume)) == pytest.approx(0.0, abs=1e-6)
    assert float(loss((volume + 0.3 * torch.randn_like(volume)).clamp(0, 1), volume)) > 0.05
    for even in (0, 4):
        with pytest.raises(ValueError, match="MultiScaleSSIMLoss kernel_size must be a positive odd number"):
            MultiScaleSSIMLoss(kernel_size=even)


def test_ms_ssim_gradients_are_finite_for_anticorrelated_maps() -> None:
    target = torch.zeros(1, 1, 32, 32)
    target[..., 8:24, 8:24] = 1.0
    logits = ((1 - target) * 12 - 6).requires_grad_(True)
    value = MultiScaleSSIMLoss(sigmoid=True)(logits, target)
    value.backward()
    assert value.item() > 0.9 and torch.isfinite(logits.grad).all()


def test_iou_hybrid_and_dice_bce() -> None:
    torch.manual_seed(0)
    target = (torch.rand(2, 3, 32, 32) > 0.5).float()
    perfect = (target * 2 - 1) * 30.0
    assert float(IoULoss()(perfect, target)) < 1e-4
    assert float(HybridLoss()(perfect, target)) < 1e-3
    logits = torch.randn(2, 3, 32, 32, requires_grad=True)
    HybridLoss()(logits, target).backward()
    assert torch.isfinite(logits.grad).all()
    manual = 1 - (2 * (torch.sigmoid(logits) * target).sum((2, 3)) + 1e-5) / (
        torch.sigmoid(logits).sum((2, 3)) + target.sum((2, 3)) + 1e-5
    )
    expected = manual.mean() + F.binary_cross_entropy_with_logits(logits, target)
    torch.testing.assert_close(DiceBCELoss()(logits, target), expected)
    assert isinstance(hybrid_segmentation_loss("dice_bce"), DiceBCELoss)
    assert isinstance(hybrid_segmentation_loss(), HybridLoss)
    with pytest.raises(ValueError, match="loss kind"):
        hybrid_segmentation_loss("dice_ce")


def test_unet3plus_loss_splits_the_presence_head() -> None:
    torch.manual_seed(0)
    seg = DiceBCELoss()
    target = torch.zeros(2, 2, 16, 16)
    target[0, 0, 4:9, 4:9] = 1.0
    heads = torch.randn(2, 3, 2, 16, 16)
    presence = torch.tensor([[3.0, -3.0], [-1.0, 2.0]])
    stacked = torch.cat([heads, presence[:, None, :, None, None].expand(2, 1, 2, 16, 16)], dim=1)
    bce = F.binary_cross_entropy_with_logits(presence, torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
    expected = sum(seg(heads[:, k], target) for k in range(3)) + 0.5 * bce
    torch.testing.assert_close(UNet3PlusLoss(seg, cgm=True, cgm_weight=0.5)(stacked, target), expected)
    no_cgm = sum(seg(heads[:, k], target) for k in range(3))
    torch.testing.assert_close(UNet3PlusLoss(seg, cgm=False)(heads, target), no_cgm)
    torch.testing.assert_close(UNet3PlusLoss(seg)(heads[:, 0], target), seg(heads[:, 0], target))  # eval output
    gated = UNet3PlusLoss(seg, cgm=True, gate_heads=True)(stacked, target)
    assert torch.isfinite(gated)
    with pytest.raises(ValueError, match="at least two"):
        UNet3PlusLoss(seg, cgm=True)(heads[:, :1], target)
