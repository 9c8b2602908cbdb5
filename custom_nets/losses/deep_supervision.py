"""Losses the bundles need beyond MONAI's.

Deeply supervised nets of :mod:`custom_nets.nets` return in training mode one stacked tensor
``(B, heads, C, *spatial)`` (index 0 the final output), the DynUNet convention, so that the forward pass has a single
TorchScript-friendly return type. :class:`StackedDeepSupervisionLoss` unbinds it and hands the list to MONAI's
``DeepSupervisionLoss``; an ordinary ``(B, C, *spatial)`` prediction goes straight to the wrapped loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.losses import DeepSupervisionLoss
from torch.nn.modules.loss import _Loss

__all__ = ["StackedDeepSupervisionLoss"]


class StackedDeepSupervisionLoss(_Loss):
    """Weighted sum of ``loss`` over the heads of a stacked deeply supervised prediction.

    Args:
        loss: the loss applied to every head, e.g. ``monai.losses.DiceFocalLoss(sigmoid=True)``.
        weights: one weight per head, final output first; ``None`` uses MONAI's ``weight_mode``.
        weight_mode: MONAI's ``DeepSupervisionLoss`` weighting when ``weights`` is None ("exp", "same", "two").
    """

    def __init__(self, loss: _Loss, weights: Sequence[float] | None = None, weight_mode: str = "exp") -> None:
        super().__init__()
        self.loss = loss
        self.deep_supervision = DeepSupervisionLoss(
            loss, weight_mode=weight_mode, weights=None if weights is None else list(weights)
        )

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if input.dim() == target.dim() + 1:
            return self.deep_supervision(list(torch.unbind(input, dim=1)), target)
        if input.dim() != target.dim():
            raise ValueError(
                f"prediction shape {tuple(input.shape)} fits neither target shape {tuple(target.shape)} nor a "
                "stacked deep-supervision output (B, heads, C, *spatial)."
            )
        return self.loss(input, target)
