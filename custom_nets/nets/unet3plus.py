"""UNet 3+: a U-Net with full-scale skip connections, full-scale deep supervision and an optional
classification-guided module (CGM).

Reference: Huang et al., "UNet 3+: A Full-Scale Connected UNet for Medical Image Segmentation", ICASSP 2020
(arXiv 2004.08790). Reported: LiTS 2017 liver Dice 0.9675 with deep supervision (0.9580 without), 27.0M parameters
at the widths 64 .. 1024.

Architecture (``L = len(channels)`` levels, widths ``c_0 .. c_{L-1}``, ``k = skip_channels``):

* encoder level ``i``: (max-pool x2 for ``i >= 1``), then (3x3 conv - BN - ReLU) x 2 to ``c_i``; level ``L - 1`` is
  the bottleneck (stride ``2 ** (L - 1)``);
* decoder stage ``i = L-2 .. 0`` (:class:`~custom_nets.blocks.full_scale.FullScaleDecoderStage`) fuses ``L``
  sources: the encoder maps of levels ``< i`` max-pooled to scale ``i``, the encoder map of level ``i``, the decoder
  maps of levels ``i+1 .. L-2`` and the bottleneck up-sampled (bi/trilinear) to scale ``i``; each projected by a
  3x3 conv to ``k`` channels + BN + ReLU, concatenated (``L k`` channels, 5 x 64 = 320) and fused by a 3x3 conv - BN -
  ReLU at ``L k`` channels;
* final head: 3x3 conv ``L k -> out_channels`` on decoder stage 0 (logits, no activation);
* full-scale deep supervision (optional): a 3x3 conv head on every other decoder stage and on the bottleneck,
  up-sampled (bi/trilinear) to the input size;
* CGM (optional, :class:`~custom_nets.blocks.full_scale.ClassificationGuidedModule`): dropout, 1x1 conv, global
  max-pool on the bottleneck -> one presence logit per class and sample.

Output convention
-----------------
* eval mode: one tensor of logits ``(B, out_channels, *S)``. With ``cgm=True`` the CGM is applied to the
  *probabilities*: ``cgm_mode="hard"`` (default, the paper's rule) sets the logits of every class whose presence
  probability is below ``cgm_threshold`` to :data:`~custom_nets.blocks.full_scale.SUPPRESSED_LOGIT` (-1e4, so its
  sigmoid is 0 everywhere, not 0.5); ``cgm_mode="soft"`` returns ``logit(sigmoid(seg) * sigmoid(presence))``.
* training mode: a single tensor. Without CGM and without deep supervision ``(B, out_channels, *S)``; otherwise the
  stacked ``(B, n_heads, out_channels, *S)`` with

  - index 0: the final output (raw segmentation logits, no CGM gating);
  - indices ``1 .. L - 1`` (with ``deep_supervision``): the heads on decoder stages ``1 .. L - 2`` and on the
    bottleneck, coarsest last, each up-sampled to ``S``;
  - the **last** index (with ``cgm``): the presence logits ``(B, out_channels)`` broadcast over space, i.e.
    ``out[:, -1, c, ...]`` is constant and equals the presence logit of class ``c``.

  So ``n_heads = 1 + (L - 1 if deep_supervision else 0) + (1 if cgm else 0)``. Use
  :class:`custom_nets.losses.hybrid.UNet3PlusLoss` (``cgm=True``), which splits the presence head off, applies a BCE
  presence loss (target: the class mask is non-empty) and the segmentation loss to the other heads. Without CGM the
  stacked output is the project-wide deep-supervision convention (``StackedDeepSupervisionLoss``).

Defects of the reference implementation that are not reproduced: its CGM variant does not run (missing import); it
multiplied the *logits* by the argmax of the classification, so suppressed pixels got sigmoid(0) = 0.5; and it used
that non-differentiable argmax during training. Here the gating acts on probabilities, training uses raw heads plus a
presence BCE (optionally soft gating in the loss), and nothing non-differentiable is in the training graph.

Parameter counts (2D, batch norm, ``deep_supervision=True``, ``cgm=False``; checked by
``tests/nets/test_unet3plus_fct.py``):

* reference widths ``channels=(64, 128, 256, 512, 1024)``, ``skip_channels=64``, ``out_channels=1``: 26,983,109 with
  ``in_channels=3`` and 26,981,957 with ``in_channels=1`` (paper: 27.0M, i.e. within 0.1 %); without the
  deep-supervision heads 26,965,249 / 26,964,097;
* bundle default ``channels=(16, 32, 64, 128, 256)``, ``skip_channels=16``, ``in_channels=1``, ``out_channels=3``:
  1,703,199 (``in_channels=3``: 1,703,487; the CGM adds ``256 * 3 + 3 = 771``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import List

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Pool

from custom_nets.blocks.common import DEFAULT_ACT, ConvNormAct, SequentialFeatures, check_positive
from custom_nets.blocks.full_scale import (
    ClassificationGuidedModule,
    FullScaleDecoderStage,
    broadcast_presence,
    gate_logits,
    suppress_absent,
)
from custom_nets.flags import as_flag
from custom_nets.nets.utils import SegmentationNetwork, check_channels, stack_heads

__all__ = ["UNet3Plus", "UNet3PlusEncoderLevel"]

_CGM_MODES = ("hard", "soft")


class UNet3PlusEncoderLevel(nn.Sequential):
    """One UNet 3+ encoder level: optional x2 max-pool, then (3x3 conv - norm - act) x 2.

    ``(B, in_channels, *S)`` -> ``(B, out_channels, *S / 2)`` with ``pool=True``, ``(B, out_channels, *S)`` without.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels of both convs.
        pool: start with a 2x2(x2) max-pool of stride 2.
        norm: MONAI norm name/tuple.
        act: MONAI activation name/tuple.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, pool: bool, norm: str | tuple | None = "batch",
        act: str | tuple | None = DEFAULT_ACT,
    ) -> None:  # fmt: skip
        layers: List[nn.Module] = []
        if pool:
            layers.append(Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2))
        layers.append(ConvNormAct(spatial_dims, in_channels, out_channels, norm=norm, act=act))
        layers.append(ConvNormAct(spatial_dims, out_channels, out_channels, norm=norm, act=act))
        super().__init__(*layers)


def _head(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    """The paper's output head: a 3x3 conv with bias to ``out_channels`` logits (no activation)."""
    return Convolution(spatial_dims, in_channels, out_channels, kernel_size=3, bias=True, conv_only=True)


class UNet3Plus(SegmentationNetwork):
    """UNet 3+ (Huang et al. 2020, arXiv 2004.08790) for 2D or 3D segmentation; see the module docstring.

    Shapes:
        input ``(B, in_channels, *S)``, every size divisible by ``2 ** (len(channels) - 1)`` (16 for five levels),
        checked at the top of ``forward`` (``ValueError``). Eval output: logits ``(B, out_channels, *S)`` (CGM-gated
        when ``cgm``). Training output: see "Output convention" in the module docstring.

    Args:
        spatial_dims: 2 or 3 (1 also works).
        in_channels: input channels (1, or 3 for 2.5D stacks of neighbouring slices).
        out_channels: output channels (one sigmoid channel per class; 3 for the UW-Madison GI tract).
        channels: encoder widths, shallowest first (paper: 64, 128, 256, 512, 1024); at least two levels.
        skip_channels: width of every full-scale skip projection; default ``channels[0]`` (64 at the paper's
            widths). Decoder stages have ``len(channels) * skip_channels`` channels.
        deep_supervision: heads on every decoder stage and the bottleneck, returned stacked in training mode.
        cgm: add the classification-guided module.
        cgm_dropout: dropout of the CGM (0.5 in the reference implementation).
        cgm_mode: eval-mode gating, ``"hard"`` (presence probability thresholded at ``cgm_threshold``, the paper's
            rule) or ``"soft"`` (``sigmoid(seg) * sigmoid(presence)``, returned as a logit).
        cgm_threshold: presence probability below which a class is suppressed (``"hard"`` mode).
        norm: MONAI norm name/tuple (batch norm in the paper).
        act: MONAI activation name/tuple (ReLU in the paper).
    """

    def __init__(
        self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 3,
        channels: Sequence[int] = (16, 32, 64, 128, 256), skip_channels: int | None = None,
        deep_supervision: bool = True, cgm: bool = False, cgm_dropout: float = 0.5, cgm_mode: str = "hard",
        cgm_threshold: float = 0.5, norm: str | tuple | None = "batch", act: str | tuple | None = DEFAULT_ACT,
    ) -> None:  # fmt: skip
        super().__init__(spatial_dims, in_channels, out_channels)
        cgm = as_flag(cgm, "UNet3Plus cgm")
        deep_supervision = as_flag(deep_supervision, "UNet3Plus deep_supervision")
        if cgm_mode not in _CGM_MODES:
            raise ValueError(f"UNet3Plus cgm_mode must be one of {_CGM_MODES}, got {cgm_mode!r}.")
        if not 0.0 < cgm_threshold < 1.0:
            raise ValueError(f"UNet3Plus cgm_threshold must be in (0, 1), got {cgm_threshold}.")
        channels = check_channels(channels, min_levels=2, net_name="UNet3Plus")
        skip = channels[0] if skip_channels is None else int(skip_channels)
        check_positive("UNet3Plus", skip_channels=skip)
        n_levels = len(channels)
        stage_channels = n_levels * skip

        self.encoder = SequentialFeatures(
            *[
                UNet3PlusEncoderLevel(
                    spatial_dims, in_channels if i == 0 else channels[i - 1], channels[i], pool=i > 0, norm=norm,
                    act=act,
                )  # fmt: skip
                for i in range(n_levels)
            ]
        )
        # deepest first: decoder[j] produces level L - 2 - j from the encoder maps of levels 0 .. level and the
        # decoded maps of levels level + 1 .. L - 2 plus the bottleneck
        decoder: List[nn.Module] = []
        for level in range(n_levels - 2, -1, -1):
            sources = [channels[i] for i in range(level + 1)] + [stage_channels] * (n_levels - 2 - level)
            sources.append(channels[-1])
            decoder.append(FullScaleDecoderStage(spatial_dims, sources, level, skip, norm=norm, act=act))
        self.decoder = nn.ModuleList(decoder)
        self.head = _head(spatial_dims, stage_channels, out_channels)
        # ds_heads[k - 1] sits on level k: decoder stages 1 .. L - 2, then the bottleneck (level L - 1)
        self.ds_heads = nn.ModuleList(
            [
                _head(spatial_dims, stage_channels if k < n_levels - 1 else channels[-1], out_channels)
                for k in range(1, n_levels)
            ]
            if deep_supervision
            else []
        )
        self.cgm = nn.ModuleList(
            [ClassificationGuidedModule(spatial_dims, channels[-1], out_channels, dropout=cgm_dropout)] if cgm else []
        )

        self.channels = channels
        self.skip_channels = skip
        self.deep_supervision = deep_supervision
        self.use_cgm = cgm
        self.hard_cgm = cgm_mode == "hard"
        self.cgm_threshold = float(cgm_threshold)
        self.size_divisor = 2 ** (n_levels - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> eval: logits ``(B, out_channels, *S)``; training: see the module docstring."""
        self.check_input(x)
        encoded = self.encoder(x)
        n_levels = len(encoded)
        bottleneck = encoded[n_levels - 1]

        # decoded[j] is level L - 2 - j
        decoded: List[torch.Tensor] = []
        for j, stage in enumerate(self.decoder):
            level = n_levels - 2 - j
            sources: List[torch.Tensor] = encoded[: level + 1]
            for k in range(j - 1, -1, -1):  # decoded levels level + 1 .. L - 2, shallowest first
                sources.append(decoded[k])
            sources.append(bottleneck)
            decoded.append(stage(sources))

        out = self.head(decoded[n_levels - 2])
        presence = torch.zeros(0)
        for cgm in self.cgm:
            presence = cgm(bottleneck)

        if not self.training:
            if self.use_cgm:
                if self.hard_cgm:
                    return suppress_absent(out, presence, self.cgm_threshold)
                return gate_logits(out, presence)
            return out

        if not self.deep_supervision and not self.use_cgm:
            return out
        outputs: List[torch.Tensor] = [out]
        for k, ds_head in enumerate(self.ds_heads):
            level = k + 1
            outputs.append(ds_head(bottleneck if level == n_levels - 1 else decoded[n_levels - 2 - level]))
        if self.use_cgm:
            outputs.append(broadcast_presence(presence, out).expand_as(out))
        return stack_heads(outputs, list(x.shape[2:]), self.interp_mode)
