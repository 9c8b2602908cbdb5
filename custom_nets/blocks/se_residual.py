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
from monai.networks.blocks import ChannelSELayer

from custom_nets.blocks.common import DEFAULT_ACT, ConvNormAct
from custom_nets.blocks.residual import ProjectionResidualBlock

__all__ = ["SEResidualBlock"]


class SEResidualBlock(ProjectionResidualBlock):
    """DDANet residual block: ``act(conv-norm-act-conv-norm(x) + SE(norm(conv1x1(x))))``.

    A :class:`~custom_nets.blocks.residual.ProjectionResidualBlock` whose body is two convs and whose shortcut ends in
    a squeeze-excitation.

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
        if se_reduction < 1:
            raise ValueError(f"SEResidualBlock se_reduction must be positive, got {se_reduction}.")
        super().__init__(spatial_dims, in_channels, out_channels, kernel_size, norm, act)
        self.se = ChannelSELayer(spatial_dims, out_channels, r=min(se_reduction, out_channels))

    def build_body(self, norm: str | tuple | None, act: str | tuple) -> None:
        """``conv1`` (conv + norm + act) and ``conv2`` (conv + norm)."""
        self.conv1 = ConvNormAct(self.spatial_dims, self.in_channels, self.out_channels, self.kernel_size, norm, act)
        self.conv2 = ConvNormAct(self.spatial_dims, self.out_channels, self.out_channels, self.kernel_size, norm, None)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``."""
        return self.conv2(self.conv1(x))

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The squeeze-excited projection: ``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``."""
        return self.se(self.shortcut(x))
