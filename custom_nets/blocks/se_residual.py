"""Residual block with a squeeze-and-excitation shortcut, the building block of DDANet.

References:
    * Tomar et al., "DDANet: Dual Decoder Attention Network for Automatic Polyp Segmentation", ICPR workshops 2021
      (arXiv 2012.15245), the residual block of its encoder and both decoders;
    * He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (arXiv 1512.03385), post-activation
      residual learning;
    * Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018 (arXiv 1709.01507), the channel recalibration
      (MONAI's :class:`monai.networks.blocks.ChannelSELayer`).

Layout::

    body     = conv3x3 -> norm -> act -> conv3x3 -> norm
    shortcut = conv1x1 -> norm -> squeeze-excitation (reduction r)
    y        = act(body(x) + shortcut(x))

The shortcut always has its 1x1 conv (also when the width does not change), as in DDANet. The SE reduction is clipped
to the width (``min(r, out_channels)``) so that narrow test configurations keep at least one hidden unit; at DDANet's
widths (16 .. 256) ``r = 16`` is used unchanged. No conv bias in front of a norm.

Shapes: ``(B, in_channels, *S)`` -> ``(B, out_channels, *S)`` for any ``spatial_dims`` (1, 2 or 3).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.blocks import ChannelSELayer, Convolution
from monai.networks.layers.utils import get_act_layer

__all__ = ["SEResidualBlock"]

DEFAULT_ACT: tuple = ("relu", {"inplace": True})


class SEResidualBlock(nn.Module):
    """DDANet residual block: ``act(conv-norm-act-conv-norm(x) + SE(norm(conv1x1(x))))``.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: kernel of the two body convs (odd).
        se_reduction: squeeze-excitation reduction ratio ``r`` (16 in DDANet), clipped to ``out_channels``.
        norm: MONAI norm name/tuple (batch norm in DDANet), or ``None``.
        act: MONAI activation name/tuple.

    Shapes: ``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        se_reduction: int = 16,
        norm: str | tuple | None = "batch",
        act: str | tuple = DEFAULT_ACT,
    ) -> None:
        super().__init__()
        if in_channels <= 0 or out_channels <= 0:
            raise ValueError(f"channel counts must be positive, got in={in_channels}, out={out_channels}.")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}.")
        if se_reduction < 1:
            raise ValueError(f"se_reduction must be positive, got {se_reduction}.")
        has_norm = not (norm is None or norm == "")
        norm_or_none = norm if has_norm else None

        self.conv1 = Convolution(
            spatial_dims, in_channels, out_channels, kernel_size=kernel_size, adn_ordering="NA", act=act,
            norm=norm_or_none, bias=not has_norm,
        )  # fmt: skip
        self.conv2 = Convolution(
            spatial_dims, out_channels, out_channels, kernel_size=kernel_size, adn_ordering="NA", act=None,
            norm=norm_or_none, bias=not has_norm, conv_only=not has_norm,
        )  # fmt: skip
        self.shortcut = Convolution(
            spatial_dims, in_channels, out_channels, kernel_size=1, adn_ordering="NA", act=None, norm=norm_or_none,
            bias=not has_norm, conv_only=not has_norm,
        )  # fmt: skip
        self.se = ChannelSELayer(spatial_dims, out_channels, r=min(se_reduction, out_channels))
        self.act = get_act_layer(name=act)
        self.in_channels = in_channels
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``."""
        return self.act(self.conv2(self.conv1(x)) + self.se(self.shortcut(x)))
