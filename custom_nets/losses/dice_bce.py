"""Soft Dice + binary cross-entropy on logits, for independent sigmoid channels (binary or multi-label masks).

One implementation shared by DDANet's mask loss (:mod:`custom_nets.losses.ddanet`), the UNet 3+ ``"dice_bce"`` choice
(:mod:`custom_nets.losses.hybrid`) and any bundle config (``custom_nets.losses.DiceBCELoss``).

Why not MONAI's ``DiceCELoss(sigmoid=True)``: with more than one output channel its cross-entropy term is the *softmax*
cross-entropy (BCE is used only for single-channel inputs), which is wrong for independent sigmoid channels such as
overlapping organs; :class:`DiceBCELoss` always uses BCE with logits per element.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch.nn.modules.loss import _Loss

from custom_nets.losses.common import check_same_shape

__all__ = ["DiceBCELoss"]


class DiceBCELoss(_Loss):
    """``lambda_dice * DiceLoss(sigmoid=True) + lambda_bce * BCEWithLogits`` on logits ``(B, C, *S)``.

    The Dice term is MONAI's ``DiceLoss`` with a sigmoid (smoothing 1e-5, per sample and channel unless ``batch``),
    the BCE term the mean over all elements.

    Args:
        lambda_dice: weight of the Dice term (``>= 0``).
        lambda_bce: weight of the BCE term (``>= 0``).
        batch: Dice over the whole batch per channel (MONAI ``batch``) instead of per sample.
        pos_weight: optional BCE weight of the positives, one per channel.

    Shapes: ``input`` logits and ``target`` in ``[0, 1]``, both ``(B, C, *S)``; returns a scalar.

    Raises:
        ValueError: a negative weight (at construction), or input and target of different shapes (in ``forward``).
    """

    def __init__(
        self,
        lambda_dice: float = 1.0,
        lambda_bce: float = 1.0,
        batch: bool = False,
        pos_weight: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if lambda_dice < 0 or lambda_bce < 0:
            raise ValueError(
                f"DiceBCELoss weights must be non-negative, got lambda_dice={lambda_dice}, lambda_bce={lambda_bce}."
            )
        self.dice = DiceLoss(sigmoid=True, batch=batch)
        self.lambda_dice = float(lambda_dice)
        self.lambda_bce = float(lambda_bce)
        self.pos_weight = None if pos_weight is None else tuple(float(v) for v in pos_weight)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``input`` logits and ``target`` in ``[0, 1]``, both ``(B, C, *S)`` -> scalar."""
        check_same_shape("DiceBCELoss", input, target)
        target = target.to(input.dtype)
        pos_weight = None
        if self.pos_weight is not None:
            shape = [1, -1] + [1] * (input.dim() - 2)
            pos_weight = torch.as_tensor(self.pos_weight, dtype=input.dtype, device=input.device).view(shape)
        bce = F.binary_cross_entropy_with_logits(input, target, pos_weight=pos_weight)
        return self.lambda_dice * self.dice(input, target) + self.lambda_bce * bce
