"""AR-UNet: an attention residual U-Net (pre-activation residual blocks + additive attention gates on the skips).

References:
    * "Utilizing Attention, Linked Blocks, and Pyramid Pooling to Propel Brain Tumor Segmentation in 3D" (the
      AR-UNet 3D model for BraTS);
    * Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018, arXiv 1804.03999 (the
      additive attention gate, :class:`~custom_nets.blocks.attention.AttentionGate`);
    * He et al., "Identity Mappings in Deep Residual Networks", ECCV 2016, arXiv 1603.05027 (the pre-activation
      residual block, :class:`~custom_nets.blocks.residual.PreActResidualBlock`).

Architecture (``L = len(channels)`` levels, widths ``c_0 .. c_{L-1}``):

* encoder level 0: 3x3 conv ``in_channels -> c_0``, then a pre-activation residual block ``c_0 -> c_0``;
* encoder level ``i >= 1``: a x2 down-sampling step ``c_{i-1} -> c_i``, then a residual block ``c_i -> c_i``. Level
  ``L - 1`` is the bottleneck (stride ``2 ** (L - 1)``). The down-sampling step (argument ``downsample``) is either
  ``"conv"`` (default): a stride-2 3x3 conv (:class:`~custom_nets.blocks.sampling.Downsample` without
  norm/activation: the following pre-activation block starts with norm + act), or ``"maxpool"``
  (:class:`MaxPoolDownsample`): 2x2(x2) max-pooling followed by a 1x1 conv to the next width, the classic U-Net
  encoder (Ronneberger et al. 2015) used by the LGG attention residual U-Net
  (:class:`~custom_nets.nets.attention_resunet.AttentionResUNet`);
* decoder level ``i = L-2 .. 0`` (:class:`ARUNetDecoderBlock`), with ``d`` the output of the coarser level ``i + 1``:
  ``up = Upsample(d)`` (x2 bi/trilinear + 1x1 conv ``c_{i+1} -> c_i``); ``gated = AttentionGate(skip_i, gating=d)``
  (intermediate width ``c_i // 2``; the gating signal is the coarser features *before* up-sampling);
  ``cat([gated, up])`` (``2 c_i`` channels) -> residual block ``2 c_i -> c_i`` (1x1-conv projection shortcut);
* head: norm + act + 1x1 conv ``c_0 -> out_channels`` (the final norm + act of a pre-activation network), logits;
* deep supervision (optional): the same kind of head on every intermediate decoder level ``1 .. L-2``.

Defect of the reference implementation that is *not* reproduced: it never concatenated the attention-gated skip with
the up-sampled decoder features, so the deeper features reached each decoder level only through the one-channel
attention map; here the gated skip and the up-sampled features are concatenated (U-Net style), which widens the first
conv of every decoder block. The gate's projection widths follow the level widths, and each of its projections has
its own norm layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import List

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Pool
from monai.networks.layers.utils import get_act_layer

from custom_nets.blocks.attention import AttentionGate
from custom_nets.blocks.common import (
    DEFAULT_ACT,
    SequentialFeatures,
    check_dropout,
    check_positive,
    has_norm,
    norm_layer,
)
from custom_nets.blocks.residual import PreActResidualBlock
from custom_nets.blocks.sampling import Downsample, Upsample
from custom_nets.nets.utils import SegmentationNetwork, check_channels, stack_heads

__all__ = ["ARUNet", "ARUNetDecoderBlock", "MaxPoolDownsample", "DOWNSAMPLE_MODES"]

DOWNSAMPLE_MODES = ("conv", "maxpool")
"""Accepted values of ``ARUNet(downsample=...)``."""


class MaxPoolDownsample(nn.Sequential):
    """x2 max-pooling, then a 1x1 conv to the next width: ``(B, in_channels, *S)`` -> ``(B, out_channels, *S / 2)``.

    The U-Net encoder step (Ronneberger et al., MICCAI 2015, arXiv 1505.04597) with the width change done by a
    pointwise conv: the pooling already aggregates each 2x2(x2) neighbourhood and the pre-activation residual block that
    follows has two 3x3 convs, so a 3x3 kernel here would mostly add parameters (9x more than the 1x1 conv) without
    a new kind of context. The conv has a bias and no norm/activation, because the following pre-activation block
    starts with norm + act (as after the stride-2 conv of ``downsample="conv"``). Sizes are floored (``n -> n // 2``);
    the networks check divisibility first, so this never drops a voxel there.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int) -> None:
        check_positive("MaxPoolDownsample", in_channels=in_channels, out_channels=out_channels)
        super().__init__(
            Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2),
            Convolution(spatial_dims, in_channels, out_channels, kernel_size=1, bias=True, conv_only=True),
        )


class ARUNetDecoderBlock(nn.Module):
    """One AR-UNet decoder level: x2 up-sampling, attention-gated skip, concatenation, pre-activation residual block.

    Inputs ``skip (B, skip_channels, *S)`` and ``coarse (B, in_channels, *S / 2)``; output ``(B, out_channels, *S)``.
    The coarse features are both up-sampled (to ``out_channels``) and used, at their own resolution, as the gating
    signal of the attention gate on the skip; the gated skip and the up-sampled features are concatenated
    (``skip_channels + out_channels`` channels) and fed to a :class:`PreActResidualBlock`.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: channels of the coarser decoder features.
        skip_channels: channels of the encoder skip.
        out_channels: output channels (also the width of the up-sampled features).
        inter_channels: intermediate width of the attention gate; default ``max(1, skip_channels // 2)``.
        norm: MONAI norm name/tuple.
        act: MONAI activation name/tuple.
        dropout: dropout of the residual block.
        separable: depthwise-separable convs in the residual block.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, skip_channels: int, out_channels: int,
        inter_channels: int | None = None, norm: str | tuple | None = "batch", act: str | tuple = DEFAULT_ACT,
        dropout: float = 0.0, separable: bool = False,
    ) -> None:  # fmt: skip
        super().__init__()
        inter = max(1, skip_channels // 2) if inter_channels is None else int(inter_channels)
        self.upsample = Upsample(spatial_dims, in_channels, out_channels)
        self.gate = AttentionGate(spatial_dims, skip_channels, in_channels, inter, norm=norm, act="relu")
        self.block = PreActResidualBlock(
            spatial_dims, skip_channels + out_channels, out_channels, norm=norm, act=act, dropout=dropout,
            separable=separable,
        )  # fmt: skip

    def forward(self, skip: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """``skip (B, Cs, *S)``, ``coarse (B, Cin, *S / 2)`` -> ``(B, out_channels, *S)``."""
        up = self.upsample(coarse)
        gated = self.gate(skip, coarse)
        return self.block(torch.cat([gated, up], dim=1))


def _head(
    spatial_dims: int, in_channels: int, out_channels: int, norm: str | tuple | None, act: str | tuple
) -> nn.Module:
    """Pre-activation output head: norm + act + 1x1 conv (with bias), no output activation."""
    layers: List[nn.Module] = []
    if has_norm(norm):
        layers.append(norm_layer(norm, spatial_dims, in_channels))
        layers.append(get_act_layer(name=act))
    layers.append(Convolution(spatial_dims, in_channels, out_channels, kernel_size=1, bias=True, conv_only=True))
    return nn.Sequential(*layers)


class ARUNet(SegmentationNetwork):
    """Attention residual U-Net ("AR-UNet 3D") for 2D or 3D segmentation.

    From "Utilizing Attention, Linked Blocks, and Pyramid Pooling to Propel Brain Tumor Segmentation in 3D", with
    Oktay et al.'s additive attention gates (arXiv 1804.03999) on the skip connections and pre-activation residual
    blocks (He et al., arXiv 1603.05027); see the module docstring for the level-by-level structure. Unlike the
    reference implementation, every decoder level concatenates the attention-gated skip with the up-sampled features.

    Shapes:
        input ``(B, in_channels, *S)`` with ``len(S) == spatial_dims`` and every size divisible by
        ``2 ** (len(channels) - 1)`` (8 for four levels), checked at the top of ``forward`` (``ValueError``);
        output logits ``(B, out_channels, *S)`` (no softmax/sigmoid); in training mode with ``deep_supervision=True``
        a single stacked tensor ``(B, 1 + n_extra, out_channels, *S)`` with ``n_extra = len(channels) - 2``: index 0 is
        the final output, index ``k`` the head on the decoder level ``k`` steps coarser, each up-sampled
        (bi/trilinear) to ``S`` (the MONAI ``DynUNet`` convention, e.g. for ``DeepSupervisionLoss`` after
        ``torch.unbind(out, dim=1)``).

    Parameter counts (3D, batch norm, ``separable=False``, ``deep_supervision=False``):

    * reference widths ``channels=(64, 128, 256, 512)``, ``in_channels=1``, ``out_channels=4``: 30,899,370. The
      reference implementation reported 35.8M; the two layouts differ in more than the concatenation fix (which by
      itself *adds* parameters: each decoder block's first conv sees ``2 c_i`` instead of ``c_i`` channels), so the
      numbers are not expected to match;
    * bundle default ``channels=(16, 32, 64, 128)``, ``in_channels=4``, ``out_channels=3``: 1,935,025.

    Args:
        spatial_dims: 2 or 3 (1 also works).
        in_channels: input channels (4 MRI modalities for BraTS).
        out_channels: output channels (3 BraTS regions).
        channels: width of each level, shallowest first; at least two levels.
        norm: MONAI norm name/tuple used in every block, gate and head, e.g. ``"batch"``, ``"instance"``,
            ``("group", {"num_groups": 8})``.
        act: MONAI activation name/tuple of the residual blocks and heads (the gates use ReLU as in the paper).
        dropout: dropout probability inside every residual block (between its two convs).
        deep_supervision: add 1x1 heads on the intermediate decoder levels, returned (stacked) in training mode.
        separable: depthwise-separable 3x3 convs in the residual blocks.
        downsample: encoder down-sampling step, ``"conv"`` (stride-2 3x3 conv; default, the AR-UNet 3D layout) or
            ``"maxpool"`` (x2 max-pooling then a 1x1 conv, :class:`MaxPoolDownsample`; fewer parameters). The parameter
            counts above are for ``"conv"``.
    """

    def __init__(
        self, spatial_dims: int = 3, in_channels: int = 4, out_channels: int = 3,
        channels: Sequence[int] = (16, 32, 64, 128), norm: str | tuple | None = "batch", act: str | tuple = DEFAULT_ACT,
        dropout: float = 0.0, deep_supervision: bool = False, separable: bool = False, downsample: str = "conv",
    ) -> None:  # fmt: skip
        super().__init__(spatial_dims, in_channels, out_channels)
        check_dropout("ARUNet", dropout=dropout)
        if downsample not in DOWNSAMPLE_MODES:
            raise ValueError(f"ARUNet downsample must be one of {', '.join(DOWNSAMPLE_MODES)}, got {downsample!r}.")
        channels = check_channels(channels, min_levels=2, net_name="ARUNet")
        n_levels = len(channels)

        def res_block(c_in: int, c_out: int) -> PreActResidualBlock:
            return PreActResidualBlock(
                spatial_dims, c_in, c_out, norm=norm, act=act, dropout=dropout, separable=separable
            )

        encoder: List[nn.Module] = [
            nn.Sequential(
                Convolution(spatial_dims, in_channels, channels[0], kernel_size=3, bias=True, conv_only=True),
                res_block(channels[0], channels[0]),
            )
        ]
        for i in range(1, n_levels):
            down: nn.Module
            if downsample == "maxpool":
                down = MaxPoolDownsample(spatial_dims, channels[i - 1], channels[i])
            else:
                down = Downsample(spatial_dims, channels[i - 1], channels[i], norm=None, act=None)
            encoder.append(nn.Sequential(down, res_block(channels[i], channels[i])))
        self.encoder = SequentialFeatures(*encoder)

        # deepest first: decoder[j] produces level L - 2 - j
        self.decoder = nn.ModuleList(
            [
                ARUNetDecoderBlock(
                    spatial_dims, channels[i + 1], channels[i], channels[i], norm=norm, act=act, dropout=dropout,
                    separable=separable,
                )  # fmt: skip
                for i in range(n_levels - 2, -1, -1)
            ]
        )
        self.head = _head(spatial_dims, channels[0], out_channels, norm, act)
        # deep-supervision heads, finest first: ds_heads[k - 1] sits on decoder level k (k = 1 .. L - 2)
        self.ds_heads = nn.ModuleList(
            [_head(spatial_dims, channels[k], out_channels, norm, act) for k in range(1, n_levels - 1)]
            if deep_supervision
            else []
        )

        self.channels = channels
        self.deep_supervision = deep_supervision
        self.downsample = downsample
        self.size_divisor = 2 ** (n_levels - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> logits ``(B, out_channels, *S)``.

        In training mode with ``deep_supervision`` the result is ``(B, 1 + len(channels) - 2, out_channels, *S)``.
        """
        self.check_input(x)
        skips = self.encoder(x)
        h = skips[-1]
        n_skips = len(skips)
        decoded: List[torch.Tensor] = []  # coarsest first; decoded[-1] is level 0
        for j, block in enumerate(self.decoder):
            h = block(skips[n_skips - 2 - j], h)
            decoded.append(h)

        out = self.head(h)
        if self.training and self.deep_supervision:
            outputs: List[torch.Tensor] = [out]
            n_decoded = len(decoded)
            for k, ds_head in enumerate(self.ds_heads):
                outputs.append(ds_head(decoded[n_decoded - 2 - k]))
            return stack_heads(outputs, list(x.shape[2:]), self.interp_mode)
        return out
