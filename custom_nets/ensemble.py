"""Ensembles of cross-validation folds: one network that averages its members' probabilities (nnU-Net's default).

nnU-Net predicts with the five models of its cross-validation and averages their softmax probabilities. Every bundle
here applies its activation (sigmoid) after the network, in its postprocessing, so an ensemble that averaged logits
would not be nnU-Net's. :class:`ProbabilityEnsemble` averages the members' *probabilities* and returns the logits of
the mean (``logit(mean(sigmoid(z_k)))``, or ``log(mean(softmax(z_k)))``), so the bundle's unchanged postprocessing
(activation, inversion, threshold, label map), its sliding window and every inference path see one network.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from custom_nets.inference.backends import first_output

__all__ = ["ProbabilityEnsemble", "load_ensemble"]

_EPS = 1e-6


class ProbabilityEnsemble(nn.Module):
    """Average the members' probabilities; return the logits of the mean.

    Args:
        members: networks with the same input and output channels (e.g. the folds of a cross-validation).
        activation: ``"sigmoid"`` (the bundles' outputs: one independent probability per channel) or ``"softmax"``
            (over the channel axis).

    Shapes: input ``(B, C_in, *spatial)``; output ``(B, C_out, *spatial)``: ``logit(mean_k sigmoid(member_k(x)))``
    (clamped to ``[1e-6, 1 - 1e-6]`` before the logit), or ``log(mean_k softmax(member_k(x)))``. A member that returns
    several outputs (deep supervision, auxiliary heads) contributes its first.
    """

    def __init__(self, members: Sequence[nn.Module], activation: str = "sigmoid") -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member network")
        if activation not in ("sigmoid", "softmax"):
            raise ValueError(f"activation must be 'sigmoid' or 'softmax', got {activation!r}")
        self.members = nn.ModuleList(members)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total = None
        for member in self.members:
            logits = first_output(member(x)).float()
            probabilities = torch.sigmoid(logits) if self.activation == "sigmoid" else torch.softmax(logits, dim=1)
            total = probabilities if total is None else total + probabilities
        mean = total / len(self.members)
        if self.activation == "sigmoid":
            return torch.logit(mean.clamp(_EPS, 1 - _EPS))
        return torch.log(mean.clamp_min(_EPS))


def load_ensemble(build: Callable[[], nn.Module], checkpoints: Sequence[str | os.PathLike],
                  load: Callable[[nn.Module, Path], None], activation: str = "sigmoid") -> nn.Module:
    """One network per checkpoint (``build()`` then ``load(network, checkpoint)``), as a :class:`ProbabilityEnsemble`
    in eval mode; a single checkpoint gives the plain network (nothing to average)."""
    members = []
    for checkpoint in checkpoints:
        network = build()
        load(network, Path(checkpoint))
        members.append(network.eval())
    if len(members) == 1:
        return members[0]
    return ProbabilityEnsemble(members, activation).eval()
