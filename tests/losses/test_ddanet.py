"""Tests of :mod:`custom_nets.losses.ddanet`: MaskAndReconstructionLoss splits the mask and grayscale-reconstruction
channels (the targets :class:`custom_nets.transforms.grayscale.AppendGrayscaled` makes)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from custom_nets.losses.ddanet import MaskAndReconstructionLoss
from custom_nets.losses.dice_bce import DiceBCELoss

pytestmark = pytest.mark.usefixtures("one_thread")


def test_mask_and_reconstruction_loss_splits_channels() -> None:
    torch.manual_seed(0)
    pred = torch.randn(2, 2, 8, 8)
    mask = (torch.rand(2, 1, 8, 8) > 0.5).float()
    gray = torch.rand(2, 1, 8, 8)
    target = torch.cat([mask, gray], dim=1)
    loss = MaskAndReconstructionLoss(recon_weight=0.5)
    mask_part = DiceBCELoss()(pred[:, :1], mask)
    recon_part = F.binary_cross_entropy_with_logits(pred[:, 1:], gray)
    torch.testing.assert_close(loss(pred, target), mask_part + 0.5 * recon_part)
    # mask-only predictions (DDANet in eval mode) against either target layout: mask loss only
    torch.testing.assert_close(loss(pred[:, :1], target), mask_part)
    torch.testing.assert_close(loss(pred[:, :1], mask), mask_part)
    with pytest.raises(ValueError, match="AppendGrayscaled"):
        loss(pred, mask)
    with pytest.raises(ValueError, match="mask_channels=1"):
        loss(torch.randn(2, 3, 8, 8), target)
    # two mask channels
    two = MaskAndReconstructionLoss(mask_loss=torch.nn.BCEWithLogitsLoss(), mask_channels=2)
    pred3 = torch.randn(2, 3, 8, 8)
    target3 = torch.cat([mask, 1 - mask, gray], dim=1)
    expected = F.binary_cross_entropy_with_logits(pred3[:, :2], target3[:, :2]) + F.binary_cross_entropy_with_logits(
        pred3[:, 2:], gray
    )
    torch.testing.assert_close(two(pred3, target3), expected)
    # the default mask loss is Dice + BCE: check against the formula
    p = torch.sigmoid(pred[:, :1])
    dice = 1 - (2 * (p * mask).sum((2, 3)) + 1e-5) / (p.sum((2, 3)) + mask.sum((2, 3)) + 1e-5)
    torch.testing.assert_close(mask_part, dice.mean() + F.binary_cross_entropy_with_logits(pred[:, :1], mask))
