"""Tests of :mod:`custom_nets.losses.segmentation` (the LGG bundles' loss factory): the classes each name gives, the
weighted BCE and cross-entropy against their formulas, and every loss learning a toy problem."""

from __future__ import annotations

import pytest
import torch

from custom_nets.losses.segmentation import (
    LOSS_NAMES,
    WeightedBCEWithLogitsLoss,
    WeightedCrossEntropyLoss,
    segmentation_loss,
)


def test_loss_factory_classes() -> None:
    from monai.losses import DiceFocalLoss, DiceLoss, FocalLoss

    assert LOSS_NAMES == ("dice", "focal", "dicefocal", "wce")
    assert type(segmentation_loss("dice")) is DiceLoss
    assert type(segmentation_loss(" Focal ")) is FocalLoss
    assert type(segmentation_loss("dicefocal")) is DiceFocalLoss
    assert isinstance(segmentation_loss("wce", pos_weight=3.0), torch.nn.BCEWithLogitsLoss)
    assert isinstance(segmentation_loss("wce", sigmoid=False, pos_weight=3.0), WeightedCrossEntropyLoss)
    dice = segmentation_loss("dice")
    assert dice.sigmoid and not dice.softmax
    assert segmentation_loss("dice", sigmoid=False).softmax
    assert segmentation_loss("focal", sigmoid=False).use_softmax and not segmentation_loss("focal").use_softmax
    assert segmentation_loss("focal", gamma=1.5).gamma == 1.5
    dicefocal = segmentation_loss("dicefocal", dice_weight=0.5, focal_weight=2.0, gamma=3.0)
    assert (dicefocal.lambda_dice, dicefocal.lambda_focal, dicefocal.focal.gamma) == (0.5, 2.0, 3.0)
    with pytest.raises(ValueError, match="dice, focal, dicefocal, wce"):
        segmentation_loss("bce")
    with pytest.raises(ValueError, match="pos_weight"):
        segmentation_loss("wce", pos_weight=0.0)


def test_weighted_bce_matches_formula() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 4, 4)
    target = (torch.rand(2, 1, 4, 4) > 0.7).to(torch.uint8)  # integer targets are accepted
    w = 5.0
    p = torch.sigmoid(logits)
    t = target.float()
    expected = -(w * t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean()
    torch.testing.assert_close(WeightedBCEWithLogitsLoss(w)(logits, target), expected)
    with pytest.raises(ValueError, match="shape"):
        WeightedBCEWithLogitsLoss(w)(logits, t[:, :, :2])
    # softmax variant: one-hot and index targets agree; weights [1, w]
    two = torch.randn(2, 2, 4, 4)
    onehot = torch.cat([1 - t, t], dim=1)
    ce = WeightedCrossEntropyLoss(w)
    torch.testing.assert_close(ce(two, onehot), ce(two, t))
    expected_ce = torch.nn.functional.cross_entropy(two, t[:, 0].long(), weight=torch.tensor([1.0, w]))
    torch.testing.assert_close(ce(two, onehot), expected_ce)
    with pytest.raises(ValueError, match="2 output channels"):
        ce(logits, t)


@pytest.mark.parametrize("name", LOSS_NAMES)
@pytest.mark.parametrize("sigmoid", [True, False])
def test_each_loss_decreases_on_a_toy_problem(name: str, sigmoid: bool) -> None:
    torch.manual_seed(0)
    target = torch.zeros(2, 1, 16, 16)
    target[:, :, 4:9, 5:11] = 1.0
    if not sigmoid:
        target = torch.cat([1 - target, target], dim=1)  # one-hot for softmax outputs
    logits = torch.zeros_like(target).normal_(0.0, 0.1).requires_grad_(True)
    loss_fn = segmentation_loss(name, sigmoid=sigmoid, pos_weight=8.0)
    optimiser = torch.optim.Adam([logits], lr=0.2)
    losses = []
    for _ in range(8):
        optimiser.zero_grad()
        loss = loss_fn(logits, target)
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses
