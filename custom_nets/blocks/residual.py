"""Residual blocks: the pre-activation block (norm-act-conv, norm-act-conv, + shortcut), optionally
depthwise-separable, and the base of the post-activation blocks with a projection shortcut.

:class:`PreActResidualBlock`: He et al., "Identity Mappings in Deep Residual Networks", ECCV 2016 (arXiv 1603.05027):
the normalisation and the activation come *before* each convolution ("full pre-activation", Fig. 4e), so the shortcut
path is a pure identity whenever the width does not change. The depthwise-separable variant follows Chollet,
"Xception", CVPR 2017 (arXiv 1610.02357): a depthwise ``k x k`` conv (``groups = channels``) followed by a pointwise
``1 x 1`` conv.

What is reused from MONAI
-------------------------
MONAI's ``Convolution`` applies its norm/activation *after* the convolution (ADN ordering), and its ``ResidualUnit``
is post-activation, so neither gives the pre-activation ordering. The block is therefore assembled from
``get_norm_layer``/``get_act_layer`` and conv-only ``Convolution`` layers (which provide the 'same' padding for any
``spatial_dims``, ``groups`` for the depthwise conv, and the bias switch).

:class:`ProjectionResidualBlock`: the post-activation layout of He et al., "Deep Residual Learning for Image
Recognition", CVPR 2016 (arXiv 1512.03385) with the 1x1-conv + norm projection shortcut always present,
``y = act(body(x) + shortcut(x))``, which several published blocks vary only in their body (and in what follows the
activation): DDANet's squeeze-excitation block (:class:`~custom_nets.blocks.se_residual.SEResidualBlock`), the
MultiRes block and the ResPath step of MultiResUNet (:mod:`custom_nets.blocks.multires`). It owns their common
signature, argument checks, shortcut, activation and attributes; a subclass builds its body in :meth:`build_body` and
computes it in :meth:`body`. MONAI's ``ResidualUnit`` returns ``conv(x) + residual(x)`` with no activation of the sum,
a body of ``subunits`` equal convolutions and a bare-conv (or identity) shortcut, so it does not fit these blocks.

Shapes: ``(B, in_channels, *S)`` -> ``(B, out_channels, *S)`` (stride 1 everywhere).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution
from monai.networks.layers.utils import get_act_layer

from custom_nets.blocks.common import (
    DEFAULT_ACT,
    ConvNormAct,
    check_dropout,
    check_odd_kernel,
    check_positive,
    has_norm,
    norm_layer,
)

__all__ = ["PreActResidualBlock", "ProjectionResidualBlock"]


def _conv(
    spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int, bias: bool, separable: bool
) -> nn.Module:
    """A stride-1 'same' conv; with ``separable`` a depthwise ``k``-conv (groups=in) then a pointwise 1x1 conv."""
    if not separable or kernel_size == 1:
        return Convolution(
            spatial_dims, in_channels, out_channels, kernel_size=kernel_size, bias=bias, conv_only=True
        )
    return nn.Sequential(
        Convolution(
            spatial_dims, in_channels, in_channels, kernel_size=kernel_size, groups=in_channels, bias=False,
            conv_only=True,
        ),
        Convolution(spatial_dims, in_channels, out_channels, kernel_size=1, bias=bias, conv_only=True),
    )  # fmt: skip


class PreActResidualBlock(nn.Module):
    """Full pre-activation residual block: ``y = shortcut(x) + conv2(drop(act(norm2(conv1(act(norm1(x)))))))``.

    The shortcut is the identity when ``in_channels == out_channels`` and a 1x1 conv followed by a norm otherwise.
    Output: ``(B, out_channels, *S)`` for an input ``(B, in_channels, *S)``.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: kernel of both convolutions (odd; 3 by default).
        norm: MONAI norm name/tuple (``"batch"``, ``"instance"``, ``("group", {"num_groups": 8})``, ...) or ``None``.
        act: MONAI activation name/tuple.
        dropout: dropout probability applied between the two convolutions (0 disables it).
        separable: use depthwise-separable convolutions (depthwise ``k``-conv with ``groups = in`` then a pointwise
            1x1 conv) instead of dense ``k``-convs; far fewer parameters.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        norm: str | tuple | None = "batch",
        act: str | tuple = DEFAULT_ACT,
        dropout: float = 0.0,
        separable: bool = False,
    ) -> None:
        super().__init__()
        check_positive("PreActResidualBlock", in_channels=in_channels, out_channels=out_channels)
        check_odd_kernel("PreActResidualBlock", kernel_size)
        check_dropout("PreActResidualBlock", dropout=dropout)
        with_norm = has_norm(norm)

        self.norm1 = norm_layer(norm, spatial_dims, in_channels)
        self.act1 = get_act_layer(name=act)
        if not with_norm and hasattr(self.act1, "inplace"):
            # without a norm the activation would act on ``x`` itself, which the shortcut still needs
            self.act1.inplace = False
        # conv1 is followed by norm2, which makes a bias redundant
        self.conv1 = _conv(spatial_dims, in_channels, out_channels, kernel_size, not with_norm, separable)
        self.norm2 = norm_layer(norm, spatial_dims, out_channels)
        self.act2 = get_act_layer(name=act)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.conv2 = _conv(spatial_dims, out_channels, out_channels, kernel_size, True, separable)

        self.shortcut: nn.Module
        if in_channels == out_channels:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                Convolution(
                    spatial_dims, in_channels, out_channels, kernel_size=1, bias=not with_norm, conv_only=True
                ),
                norm_layer(norm, spatial_dims, out_channels),
            )
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.separable = separable

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``."""
        h = self.conv1(self.act1(self.norm1(x)))
        h = self.conv2(self.dropout(self.act2(self.norm2(h))))
        return h + self.shortcut(x)


class ProjectionResidualBlock(nn.Module):
    """Post-activation residual block with a projection shortcut: ``y = finish(act(body(x) + project(x)))``.

    ``project(x)`` is ``shortcut(x)``, a 1x1 conv + norm (no bias in front of a norm), present also when the width does
    not change; ``finish`` is the identity. A subclass builds the modules of its body in :meth:`build_body`, called
    before the shortcut is built (so that its parameters are drawn first), computes the body in :meth:`body`, and may
    override :meth:`project` (e.g. a squeeze-excitation on the shortcut) and :meth:`finish` (e.g. a last norm).

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels (of the body and the shortcut).
        kernel_size: kernel of the body's convolutions (odd; 3 by default).
        norm: MONAI norm name/tuple, or ``None``/``""`` for none.
        act: MONAI activation name/tuple.
        body_options: further settings of the subclass's body, passed to :meth:`build_body`.

    Attributes:
        spatial_dims, in_channels, out_channels, kernel_size: the arguments.

    Shapes: ``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        norm: str | tuple | None = "batch",
        act: str | tuple = DEFAULT_ACT,
        **body_options,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        check_positive(owner, in_channels=in_channels, out_channels=out_channels)
        check_odd_kernel(owner, kernel_size)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.build_body(norm, act, **body_options)
        self.shortcut = ConvNormAct(spatial_dims, in_channels, out_channels, 1, norm, None)
        self.act = get_act_layer(name=act)

    def build_body(self, norm: str | tuple | None, act: str | tuple, **body_options) -> None:
        """Create the body's submodules as attributes of ``self`` (their names are the ``state_dict`` keys), from
        :attr:`spatial_dims`, :attr:`in_channels`, :attr:`out_channels`, :attr:`kernel_size` and the arguments."""
        raise NotImplementedError(f"{type(self).__name__} must build its body.")

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch: ``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``."""
        raise NotImplementedError(f"{type(self).__name__} must compute its body.")

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """The shortcut branch: ``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``."""
        return self.shortcut(x)

    def finish(self, y: torch.Tensor) -> torch.Tensor:
        """What follows the activation of the sum (nothing by default)."""
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``."""
        return self.finish(self.act(self.body(x) + self.project(x)))
