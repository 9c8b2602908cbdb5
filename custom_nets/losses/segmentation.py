"""A segmentation-loss factory, so that a bundle picks its loss with one config value.

:func:`segmentation_loss` returns MONAI's ``DiceLoss``, ``FocalLoss`` (the binary focal loss of the LGG reference
model; Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, arXiv 1708.02002) or ``DiceFocalLoss``, or a
class-weighted cross-entropy (:class:`WeightedBCEWithLogitsLoss` for one sigmoid channel,
:class:`WeightedCrossEntropyLoss` for softmax outputs) whose positive-class weight usually comes from
:func:`custom_nets.data.lgg.positive_class_weight`.

Every loss takes logits ``(B, C, *S)`` and a target ``(B, C, *S)`` with values in {0, 1} (one channel per output
channel; for softmax outputs, a one-hot target, e.g. from ``AsDiscreted(keys="label", to_onehot=C)``), and returns a
scalar (mean reduction).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.losses import DiceFocalLoss, DiceLoss, FocalLoss

from custom_nets.losses.common import check_same_shape

__all__ = ["LOSS_NAMES", "WeightedBCEWithLogitsLoss", "WeightedCrossEntropyLoss", "segmentation_loss"]

LOSS_NAMES = ("dice", "focal", "dicefocal", "wce")
"""Names accepted by :func:`segmentation_loss`."""


class WeightedBCEWithLogitsLoss(nn.BCEWithLogitsLoss):
    """Binary cross-entropy on logits with a positive-class weight, for sigmoid outputs.

    ``loss = mean(-(w * y * log(sigmoid(x)) + (1 - y) * log(1 - sigmoid(x))))``: ``torch.nn.BCEWithLogitsLoss`` with
    a scalar ``pos_weight`` (the same weight for every channel), which also accepts integer or boolean targets.

    Args:
        pos_weight: weight ``w > 0`` of the positive (tumour) pixels, e.g. ``(1 - f) / f`` for a tumour-pixel
            fraction ``f``; ``None`` for the unweighted loss.

    Shapes: ``input (B, C, *S)`` logits, ``target (B, C, *S)`` in {0, 1}; returns a scalar.
    """

    def __init__(self, pos_weight: float | None = None) -> None:
        weight = None if pos_weight is None else torch.tensor(float(pos_weight))
        super().__init__(pos_weight=weight)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_same_shape("weighted BCE", input, target)
        return super().forward(input, target.to(input.dtype))


class WeightedCrossEntropyLoss(nn.Module):
    """Softmax cross-entropy with the weight ``pos_weight`` on every foreground class (channel ``>= 1``).

    ``torch.nn.functional.cross_entropy`` with class weights ``[1, w, ..., w]`` (normalised by the weights of the
    target pixels, PyTorch's weighted mean). The target is one-hot ``(B, C, *S)`` (as for the other losses) or a
    class-index map ``(B, 1, *S)``.

    Args:
        pos_weight: weight ``w > 0`` of the foreground classes; ``None`` for the unweighted loss.

    Shapes: ``input (B, C, *S)`` logits with ``C >= 2``, ``target (B, C, *S)`` one-hot or ``(B, 1, *S)`` indices;
    returns a scalar.
    """

    def __init__(self, pos_weight: float | None = None) -> None:
        super().__init__()
        self.pos_weight = None if pos_weight is None else float(pos_weight)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n_classes = input.shape[1]
        if n_classes < 2:
            raise ValueError(
                "softmax cross-entropy needs at least 2 output channels; for a single-channel output use "
                "sigmoid=True (weighted binary cross-entropy)."
            )
        if input.dim() != target.dim() or target.shape[1] not in (1, n_classes) or input.shape[2:] != target.shape[2:]:
            raise ValueError(
                f"cross-entropy expects logits (B, C, *S) and a one-hot (B, C, *S) or index (B, 1, *S) target, got "
                f"{tuple(input.shape)} and {tuple(target.shape)}."
            )
        index = target[:, 0] if target.shape[1] == 1 else target.argmax(dim=1)
        weight = None
        if self.pos_weight is not None:
            weight = torch.full((n_classes,), self.pos_weight, dtype=input.dtype, device=input.device)
            weight[0] = 1.0
        return F.cross_entropy(input, index.long(), weight=weight)


def segmentation_loss(
    name: str,
    sigmoid: bool = True,
    pos_weight: float | None = None,
    dice_weight: float = 1.0,
    focal_weight: float = 1.0,
    gamma: float = 2.0,
) -> nn.Module:
    """The segmentation loss called ``name``, for logits ``(B, C, *S)`` and {0, 1} targets ``(B, C, *S)``.

    * ``"dice"``: ``monai.losses.DiceLoss(sigmoid=sigmoid, softmax=not sigmoid)``;
    * ``"focal"``: ``monai.losses.FocalLoss(gamma=gamma, use_softmax=not sigmoid)`` -- with ``sigmoid`` the binary
      (sigmoid) focal loss of the LGG reference model;
    * ``"dicefocal"``: ``monai.losses.DiceFocalLoss(sigmoid=..., softmax=..., gamma=gamma, lambda_dice=dice_weight,
      lambda_focal=focal_weight)``. Note that MONAI always computes its focal term with a sigmoid, also when
      ``softmax=True`` selects a softmax for the Dice term;
    * ``"wce"``: weighted cross-entropy, :class:`WeightedBCEWithLogitsLoss` (``sigmoid=True``, typically one output
      channel) or :class:`WeightedCrossEntropyLoss` (``sigmoid=False``, ``C >= 2`` softmax channels), with
      ``pos_weight`` on the tumour class (from :func:`custom_nets.data.lgg.positive_class_weight`; ``None`` =
      unweighted).

    Arguments a loss does not use are ignored (``pos_weight`` is used by ``"wce"`` only; ``dice_weight`` and
    ``focal_weight`` by ``"dicefocal"`` only; ``gamma`` by the focal losses), so a config can switch ``name`` alone.
    All MONAI losses keep their defaults otherwise (``include_background=True``, mean reduction).

    Args:
        name: one of :data:`LOSS_NAMES` (any letter case, surrounding spaces ignored).
        sigmoid: ``True`` for independent per-channel sigmoid outputs (binary tumour segmentation), ``False`` for a
            softmax over the channels (one-hot targets).
        pos_weight: positive-class weight of ``"wce"``; must be positive.
        dice_weight: weight of the Dice term of ``"dicefocal"`` (``>= 0``).
        focal_weight: weight of the focal term of ``"dicefocal"`` (``>= 0``).
        gamma: focusing parameter of the focal losses (``>= 0``; 0 gives plain cross-entropy).

    Returns:
        A ``torch.nn.Module`` ``loss(logits, target) -> scalar``.

    Raises:
        ValueError: unknown ``name`` (the message lists the valid ones), or an argument out of range.
    """
    key = str(name).strip().lower()
    if key not in LOSS_NAMES:
        raise ValueError(f"unknown segmentation loss {name!r}; valid names are {', '.join(LOSS_NAMES)}")
    if pos_weight is not None and not float(pos_weight) > 0.0:
        raise ValueError(f"pos_weight must be positive (or None), got {pos_weight!r}")
    if gamma < 0.0:
        raise ValueError(f"gamma must be non-negative, got {gamma!r}")
    if dice_weight < 0.0 or focal_weight < 0.0:
        raise ValueError(f"dice_weight and focal_weight must be non-negative, got {dice_weight!r} and {focal_weight!r}")
    sigmoid = bool(sigmoid)
    if key == "dice":
        return DiceLoss(sigmoid=sigmoid, softmax=not sigmoid)
    if key == "focal":
        return FocalLoss(gamma=float(gamma), use_softmax=not sigmoid)
    if key == "dicefocal":
        return DiceFocalLoss(
            sigmoid=sigmoid,
            softmax=not sigmoid,
            gamma=float(gamma),
            lambda_dice=float(dice_weight),
            lambda_focal=float(focal_weight),
        )
    if sigmoid:
        return WeightedBCEWithLogitsLoss(pos_weight)
    return WeightedCrossEntropyLoss(pos_weight)
