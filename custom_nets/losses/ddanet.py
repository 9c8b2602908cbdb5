"""Losses of DDANet: Dice + BCE on the mask logits, BCE on the grayscale reconstruction logits.

Reference: Tomar et al., "DDANet: Dual Decoder Attention Network for Automatic Polyp Segmentation" (arXiv 2012.15245):
the mask decoder is trained with Dice + binary cross-entropy, the reconstruction decoder with binary cross-entropy
against the grayscale input image.

:class:`~custom_nets.nets.ddanet.DDANet` returns in training mode one tensor ``(B, C + 1, *S)`` = ``[mask logits,
reconstruction logits]`` and the bundles build the target ``(B, C + 1, *S)`` = ``[mask, grayscale image in [0, 1]]``
with :class:`~custom_nets.transforms.grayscale.AppendGrayscaled`, so a plain ``loss_function(pred, label)`` (MONAI's
``SupervisedTrainer``) gets both. :class:`MaskAndReconstructionLoss` splits the two along channels.

The default mask loss is :class:`~custom_nets.losses.dice_bce.DiceBCELoss` (one implementation for the package), not MONAI's
``DiceCELoss(sigmoid=True)``, which switches to a softmax cross-entropy for more than one channel.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch.nn.modules.loss import _Loss

from custom_nets.blocks.common import check_positive
from custom_nets.losses.dice_bce import DiceBCELoss

__all__ = ["MaskAndReconstructionLoss"]


class MaskAndReconstructionLoss(_Loss):
    """Mask loss plus ``recon_weight`` times BCE-with-logits of the grayscale reconstruction.

    Channel layout (``C = mask_channels``):

    * ``input``: ``(B, C + 1, *S)`` = ``[mask logits, reconstruction logits]`` (DDANet in training mode), or
      ``(B, C, *S)`` (mask logits only, e.g. DDANet in eval mode): then only the mask loss is computed;
    * ``target``: ``(B, C + 1, *S)`` = ``[mask, grayscale image in [0, 1]]``, or ``(B, C, *S)`` (mask only), allowed
      only with a mask-only ``input``.

    Args:
        mask_loss: loss on ``(mask logits, mask)``; default :class:`DiceBCELoss` (Dice + BCE, as in DDANet).
        recon_weight: weight of the reconstruction BCE.
        mask_channels: ``C``, the number of mask channels (DDANet's ``out_channels``). Needed because a
            ``(B, 2, *S)`` tensor could otherwise be either one mask channel plus the reconstruction, or two masks.

    Raises (in ``forward``):
        ValueError: a channel count matches neither layout, the prediction has a reconstruction channel but the target
            has no grayscale channel, or the spatial shapes differ.
    """

    def __init__(self, mask_loss: _Loss | None = None, recon_weight: float = 1.0, mask_channels: int = 1) -> None:
        super().__init__()
        if recon_weight < 0:
            raise ValueError(f"recon_weight must be non-negative, got {recon_weight}.")
        check_positive("MaskAndReconstructionLoss", mask_channels=mask_channels)
        self.mask_loss = DiceBCELoss() if mask_loss is None else mask_loss
        self.recon_loss = nn.BCEWithLogitsLoss()
        self.recon_weight = float(recon_weight)
        self.mask_channels = int(mask_channels)

    def _has_recon(self, tensor: torch.Tensor, name: str) -> bool:
        c = self.mask_channels
        if tensor.dim() < 3 or tensor.shape[1] not in (c, c + 1):
            raise ValueError(
                f"MaskAndReconstructionLoss: {name} shape {tuple(tensor.shape)} should be (B, {c} + 1, *spatial) "
                f"([mask, grayscale reconstruction]) or (B, {c}, *spatial) (mask only), with mask_channels={c}."
            )
        return tensor.shape[1] == c + 1

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``input (B, C [+ 1], *S)`` logits, ``target (B, C [+ 1], *S)`` -> scalar loss."""
        pred_recon = self._has_recon(input, "prediction")
        target_recon = self._has_recon(target, "target")
        if input.shape[2:] != target.shape[2:] or input.shape[0] != target.shape[0]:
            raise ValueError(
                f"MaskAndReconstructionLoss: prediction {tuple(input.shape)} and target {tuple(target.shape)} differ "
                "in batch or spatial size."
            )
        if pred_recon and not target_recon:
            raise ValueError(
                f"MaskAndReconstructionLoss: the prediction {tuple(input.shape)} has a reconstruction channel but the "
                f"target {tuple(target.shape)} has no grayscale channel; append it with AppendGrayscaled."
            )
        c = self.mask_channels
        mask_target = target[:, :c].to(dtype=input.dtype)
        loss = self.mask_loss(input[:, :c], mask_target)
        if pred_recon:
            gray = target[:, c:].to(dtype=input.dtype)
            loss = loss + self.recon_weight * self.recon_loss(input[:, c:], gray)
        return loss
