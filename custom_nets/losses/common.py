"""The input check the losses of :mod:`custom_nets.losses` share: one clear ``ValueError`` naming the loss."""

from __future__ import annotations

import torch

__all__ = ["check_same_shape"]


def check_same_shape(owner: str, input: torch.Tensor, target: torch.Tensor) -> None:
    """Raise ``ValueError("<owner> needs a prediction and a target of one shape (B, C, *S), got ... and ...")`` unless
    ``input`` and ``target`` have the same shape."""
    if input.shape != target.shape:
        raise ValueError(
            f"{owner} needs a prediction and a target of one shape (B, C, *S), got {tuple(input.shape)} and "
            f"{tuple(target.shape)}."
        )
