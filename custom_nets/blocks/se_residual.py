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
from monai.networks.blocks import ChannelSELayer
from monai.networks.layers.utils import get_act_layer

from custom_nets.blocks.common import DEFAULT_ACT, ConvNormAct, check_odd_kernel, check_positive

__all__ = ["SEResidualBlock"]


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
        check_positive("SEResidualBlock", in_channels=in_channels, out_channels=out_channels)
        check_odd_kernel("SEResidualBlock", kernel_size)
        if se_reduction < 1:
            raise ValueError(f"SEResidualBlock se_reduction must be positive, got {se_reduction}.")
        self.conv1 = ConvNormAct(spatial_dims, in_channels, out_channels, kernel_size, norm, act)
        self.conv2 = ConvNormAct(spatial_dims, out_channels, out_channels, kernel_size, norm, None)
        self.shortcut = ConvNormAct(spatial_dims, in_channels, out_channels, 1, norm, None)
        self.se = ChannelSELayer(spatial_dims, out_channels, r=min(se_reduction, out_channels))
        self.act = get_act_layer(name=act)
        self.in_channels = in_channels
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``."""
        return self.act(self.conv2(self.conv1(x)) + self.se(self.shortcut(x)))
