"""What every block and network of this package shares: the default activation, the interpolation mode of each
``spatial_dims``, the argument checks, an optional norm layer and the conv-norm-act unit.

MONAI provides the layers themselves (``Convolution``, ``get_norm_layer``, ``get_act_layer``); what it lacks lives here,
once:

* :data:`LINEAR_MODE`: MONAI's ``UpSample`` picks linear / bilinear / trilinear from ``spatial_dims`` internally but
  exposes no mapping for ``torch.nn.functional.interpolate``;
* :func:`norm_layer`: ``get_norm_layer`` has no "no norm" case (``None`` or ``""``), which every block here accepts;
* :class:`ConvNormAct`: a ``Convolution`` with the choices every block of the package makes (norm before activation,
  no conv bias in front of a norm, a bare conv when there is neither), so that no block spells them out again;
* :class:`SequentialFeatures`: modules in sequence returning every output (a U-Net encoder's skips); MONAI's
  encoders (``BaseEncoder`` and its backbones) are tied to named backbones with a fixed number of features;
* :func:`check_positive`, :func:`check_dropout`, :func:`check_odd_kernel`, :func:`check_spatial_dims`: one clear
  ``ValueError`` naming the block or network and the offending values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers.utils import get_norm_layer

__all__ = [
    "DEFAULT_ACT",
    "LINEAR_MODE",
    "ConvNormAct",
    "SequentialFeatures",
    "check_dropout",
    "check_odd_kernel",
    "check_positive",
    "check_spatial_dims",
    "has_norm",
    "norm_layer",
    "resize_to",
]

DEFAULT_ACT: tuple = ("relu", {"inplace": True})
"""The activation of every block and network unless configured otherwise (ReLU, in place)."""

LINEAR_MODE: Dict[int, str] = {1: "linear", 2: "bilinear", 3: "trilinear"}
"""The linear interpolation mode of ``torch.nn.functional.interpolate`` for each ``spatial_dims``."""


def check_spatial_dims(spatial_dims: int, owner: str, allowed: Sequence[int] = (1, 2, 3)) -> None:
    """Raise ``ValueError("<owner> supports spatial_dims 1, 2 or 3, got 4.")`` unless ``spatial_dims in allowed``."""
    if spatial_dims not in allowed:
        names = [str(d) for d in allowed]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        raise ValueError(f"{owner} supports spatial_dims {listed}, got {spatial_dims}.")


def check_positive(owner: str, **counts: int | Sequence[int]) -> None:
    """Raise ``ValueError("<owner> channel counts must be positive, got in_channels=3, out_channels=0.")`` unless
    every count (an int, or a sequence of per-level ints) is at least 1."""
    values = [v for c in counts.values() for v in (c if isinstance(c, Sequence) else [c])]
    if any(int(v) < 1 for v in values):
        listed = ", ".join(
            f"{name}={list(value) if isinstance(value, Sequence) else value}" for name, value in counts.items()
        )
        raise ValueError(f"{owner} channel counts must be positive, got {listed}.")


def check_dropout(owner: str, **probabilities: float) -> None:
    """Raise ``ValueError("<owner> dropout must be in [0, 1), got 1.0.")`` unless every probability is in [0, 1)."""
    for name, p in probabilities.items():
        if not 0.0 <= p < 1.0:
            raise ValueError(f"{owner} {name} must be in [0, 1), got {p}.")


def check_odd_kernel(owner: str, kernel_size: int) -> None:
    """Raise ``ValueError("<owner> kernel_size must be a positive odd number, got 4.")`` unless it is one."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"{owner} kernel_size must be a positive odd number, got {kernel_size}.")


def has_norm(norm: str | tuple | None) -> bool:
    """Whether ``norm`` names a norm layer (``None`` and ``""`` mean none)."""
    return not (norm is None or norm == "")


def norm_layer(norm: str | tuple | None, spatial_dims: int, channels: int) -> nn.Module:
    """MONAI's norm layer ``norm`` for ``channels`` features, or ``nn.Identity`` when ``norm`` is ``None``/``""``."""
    if not has_norm(norm):
        return nn.Identity()
    return get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=channels)


class ConvNormAct(Convolution):
    """Conv + norm + activation: ``(B, in_channels, *S)`` -> ``(B, out_channels, *ceil(S / strides))``.

    A MONAI ``Convolution`` ('same' padding for odd kernels, ADN ordering "NA") whose conv has a bias only when no
    norm follows it (``bias`` overrides that), and which is a bare conv when there is neither norm nor activation.
    Other keyword arguments (``dilation``, ``groups``, ``is_transposed``, ``padding``, ``output_padding``, ...) go to
    ``Convolution``. The submodules are ``conv`` and, with a norm or an activation, ``adn``.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: conv kernel (3 by default).
        norm: MONAI norm name/tuple, or ``None``/``""`` for none.
        act: MONAI activation name/tuple, or ``None`` for none.
        strides: conv stride.
        bias: conv bias; default: only without a norm.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int = 3,
        norm: str | tuple | None = "batch", act: str | tuple | None = DEFAULT_ACT, strides: int = 1,
        bias: Optional[bool] = None, **kwargs,
    ) -> None:  # fmt: skip
        check_positive(type(self).__name__, in_channels=in_channels, out_channels=out_channels)
        with_norm = has_norm(norm)
        super().__init__(
            spatial_dims,
            in_channels,
            out_channels,
            strides=strides,
            kernel_size=kernel_size,
            adn_ordering="NA",
            act=act,
            norm=norm if with_norm else None,
            bias=not with_norm if bias is None else bias,
            conv_only=not with_norm and act is None,
            **kwargs,
        )


def resize_to(x: torch.Tensor, size: List[int], mode: str) -> torch.Tensor:
    """``x (B, C, *S')`` resized to ``(B, C, *size)`` by linear interpolation ``mode`` (:data:`LINEAR_MODE`),
    ``align_corners=False``; returned unchanged when it already has that size."""
    if list(x.shape[2:]) == size:
        return x
    return F.interpolate(x, size=size, mode=mode, align_corners=False)


class SequentialFeatures(nn.Sequential):
    """Modules applied in sequence, returning the output of every one, first to last: the skips of a U-Net encoder.

    ``forward(x)`` -> ``[m0(x), m1(m0(x)), ...]``. The submodules keep ``nn.Sequential``'s names (``0``, ``1``, ...),
    i.e. the same ``state_dict`` keys as a ``nn.ModuleList`` of them.
    """

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """``x`` -> the list of every module's output."""
        features: List[torch.Tensor] = []
        for module in self:
            x = module(x)
            features.append(x)
        return features
