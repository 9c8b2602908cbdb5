"""Building blocks of UNet 3+: conv-BN-ReLU units, full-scale skip projections, the full-scale decoder stage and the
classification-guided module (CGM), generic over ``spatial_dims``.

Reference: Huang et al., "UNet 3+: A Full-Scale Connected UNet for Medical Image Segmentation", ICASSP 2020
(arXiv 2004.08790), Sec. 2.1 (full-scale skip connections), Sec. 2.3 (classification-guided module) and Fig. 2-3.

* :class:`~custom_nets.blocks.common.ConvNormAct` (the package's conv-norm-act unit): 3x3 conv + batch norm + ReLU,
  conv bias dropped (BN follows).
* :class:`FullScaleSkip`: brings one source feature map to a decoder stage's scale and projects it to
  ``skip_channels``: max-pooling (kernel = stride = ``2 ** k``) for a shallower encoder map, nothing for the
  same-scale encoder map, bi/trilinear up-sampling by ``2 ** k`` for a deeper decoder map or the bottleneck; then
  conv3-BN-ReLU. The resampling comes *before* the conv, as in the paper (so the conv of an up-sampled source runs at
  the stage's resolution: the main cost of UNet 3+).
* :class:`FullScaleDecoderStage`: one :class:`FullScaleSkip` per source, concatenation
  (``len(sources) * skip_channels`` channels, 5 x 64 = 320 in the paper) and a conv3-BN-ReLU fusion at that width.
* :class:`ClassificationGuidedModule`: dropout, 1x1 conv to one logit map per class, global (adaptive) max-pooling:
  the per-sample, per-class *presence logits* ``(B, C)``. The paper's figure ends the module with a sigmoid (2-way
  for a single organ); here the logits are returned and the sigmoid lives in the gating functions and the loss
  (``binary_cross_entropy_with_logits``), which is the multi-label generalisation (one presence bit per class, as
  needed when classes overlap).
* :func:`suppress_absent` / :func:`gate_logits`: apply the presence decision to the segmentation **probabilities**
  (the reference implementation zeroed the *logits*, so a suppressed pixel ended at sigmoid(0) = 0.5 instead of 0).

Shapes are stated per class; ``S`` is the spatial size (``len(S) == spatial_dims``).
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Pool

from custom_nets.blocks.common import DEFAULT_ACT, LINEAR_MODE, ConvNormAct, check_dropout, check_spatial_dims

__all__ = [
    "ClassificationGuidedModule",
    "FullScaleDecoderStage",
    "FullScaleSkip",
    "SUPPRESSED_LOGIT",
    "broadcast_presence",
    "gate_logits",
    "suppress_absent",
]

SUPPRESSED_LOGIT: float = -1.0e4
"""Logit written where the CGM says a class is absent: ``sigmoid(-1e4) == 0`` exactly in float32, and the value is
finite (no NaN in a later softmax or loss) and representable in float16."""


class FullScaleSkip(nn.Module):
    """One full-scale skip connection of UNet 3+: resample to the stage's scale, then conv3-BN-ReLU.

    ``scale_shift`` is the source's level minus the stage's level: negative for a shallower (finer) source, which is
    max-pooled by ``2 ** -scale_shift``; zero for the same-scale encoder map; positive for a deeper (coarser) source,
    which is up-sampled (bi/trilinear, ``align_corners=False``) by ``2 ** scale_shift``.

    ``(B, in_channels, *S_src)`` -> ``(B, out_channels, *S_src * 2 ** scale_shift)``.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: channels of the source map.
        out_channels: projection width (64 in the paper).
        scale_shift: source level minus target level.
        norm: MONAI norm name/tuple of the projection.
        act: MONAI activation name/tuple of the projection.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        scale_shift: int,
        norm: str | tuple | None = "batch",
        act: str | tuple | None = DEFAULT_ACT,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, "FullScaleSkip")
        factor = 2 ** abs(int(scale_shift))
        self.resample: nn.Module
        if scale_shift < 0:
            self.resample = Pool[Pool.MAX, spatial_dims](kernel_size=factor, stride=factor, ceil_mode=True)
        elif scale_shift > 0:
            self.resample = nn.Upsample(scale_factor=float(factor), mode=LINEAR_MODE[spatial_dims], align_corners=False)
        else:
            self.resample = nn.Identity()
        self.proj = ConvNormAct(spatial_dims, in_channels, out_channels, norm=norm, act=act)
        self.scale_shift = int(scale_shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S_src)`` -> ``(B, out_channels, *S_stage)``."""
        return self.proj(self.resample(x))


class FullScaleDecoderStage(nn.Module):
    """A UNet 3+ decoder stage: every source through its :class:`FullScaleSkip`, concatenation, conv3-BN-ReLU fusion.

    Sources are given shallowest first: the encoder maps of levels ``0 .. level`` (levels ``< level`` are
    max-pooled), then the decoder maps of levels ``level + 1 .. L - 2`` and the bottleneck (level ``L - 1``), which are
    up-sampled. ``source_channels[i]`` is the width of source ``i`` (``len == L``).

    ``forward(sources)`` with ``sources[i]`` of shape ``(B, source_channels[i], *S * 2 ** (level - i))`` ->
    ``(B, L * skip_channels, *S)`` where ``S`` is the stage's spatial size.

    Args:
        spatial_dims: 1, 2 or 3.
        source_channels: channels of every source, shallowest first (one per level).
        level: this stage's level (0 = full resolution).
        skip_channels: projection width of every source (64 in the paper).
        norm: MONAI norm name/tuple.
        act: MONAI activation name/tuple.
    """

    def __init__(
        self,
        spatial_dims: int,
        source_channels: List[int],
        level: int,
        skip_channels: int,
        norm: str | tuple | None = "batch",
        act: str | tuple | None = DEFAULT_ACT,
    ) -> None:
        super().__init__()
        n_sources = len(source_channels)
        if not 0 <= level < n_sources:
            raise ValueError(f"level must be in [0, {n_sources}), got {level}.")
        self.skips = nn.ModuleList(
            [
                FullScaleSkip(spatial_dims, c, skip_channels, scale_shift=i - level, norm=norm, act=act)
                for i, c in enumerate(source_channels)
            ]
        )
        self.out_channels = n_sources * skip_channels
        self.fuse = ConvNormAct(spatial_dims, self.out_channels, self.out_channels, norm=norm, act=act)
        self.level = level
        self.n_sources = n_sources

    def forward(self, sources: List[torch.Tensor]) -> torch.Tensor:
        """``sources`` (one per level, shallowest first) -> ``(B, n_sources * skip_channels, *S)``."""
        if len(sources) != self.n_sources:
            raise ValueError(f"expected {self.n_sources} source maps, got {len(sources)}.")
        projected: List[torch.Tensor] = []
        for i, skip in enumerate(self.skips):
            projected.append(skip(sources[i]))
        return self.fuse(torch.cat(projected, dim=1))


class ClassificationGuidedModule(nn.Module):
    """UNet 3+ classification-guided module: dropout, 1x1 conv, global max-pool -> presence logits.

    ``(B, in_channels, *S)`` (the bottleneck) -> ``(B, num_classes)`` logits; ``sigmoid`` of logit ``c`` is the
    predicted probability that class ``c`` occurs anywhere in the sample. Trained with a BCE loss whose target is
    "the mask of class ``c`` is non-empty" (:class:`custom_nets.losses.hybrid.UNet3PlusLoss`).

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: channels of the bottleneck.
        num_classes: number of output classes (one presence logit each).
        dropout: dropout probability before the 1x1 conv (0.5 in the reference implementation).
    """

    def __init__(self, spatial_dims: int, in_channels: int, num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        check_dropout("ClassificationGuidedModule", dropout=dropout)
        self.dropout = nn.Dropout(dropout)
        self.conv = Convolution(spatial_dims, in_channels, num_classes, kernel_size=1, bias=True, conv_only=True)
        self.pool = Pool[Pool.ADAPTIVEMAX, spatial_dims](1)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> presence logits ``(B, num_classes)``."""
        return torch.flatten(self.pool(self.conv(self.dropout(x))), 1)


def broadcast_presence(presence_logits: torch.Tensor, seg_logits: torch.Tensor) -> torch.Tensor:
    """``(B, C)`` -> ``(B, C, 1, ..., 1)`` with as many trailing ones as ``seg_logits`` has spatial dims."""
    shape: List[int] = [presence_logits.shape[0], presence_logits.shape[1]]
    for _ in range(seg_logits.dim() - 2):
        shape.append(1)
    return presence_logits.reshape(shape)


def suppress_absent(
    seg_logits: torch.Tensor, presence_logits: torch.Tensor, threshold: float = 0.5, fill_value: float = SUPPRESSED_LOGIT
) -> torch.Tensor:
    """Hard CGM gating (the paper's inference rule): classes predicted absent get probability 0 everywhere.

    Where ``sigmoid(presence_logits[b, c]) < threshold`` the whole map ``seg_logits[b, c]`` is replaced by
    ``fill_value`` (default :data:`SUPPRESSED_LOGIT`, so ``sigmoid`` of the result is 0, not 0.5); elsewhere the
    logits are unchanged.
    Equivalent to multiplying ``sigmoid(seg_logits)`` by the binary presence decision. Not differentiable w.r.t. the
    presence logits: use it for inference, and :func:`gate_logits` where gradients are wanted.

    ``seg_logits (B, C, *S)``, ``presence_logits (B, C)`` -> ``(B, C, *S)``.
    """
    present = broadcast_presence(torch.sigmoid(presence_logits) >= threshold, seg_logits)
    return seg_logits.masked_fill(torch.logical_not(present), fill_value)


def gate_logits(seg_logits: torch.Tensor, presence_logits: torch.Tensor, eps: float = 1.0e-12) -> torch.Tensor:
    """Soft CGM gating: the logit of ``sigmoid(seg_logits) * sigmoid(presence_logits)``, differentiable in both.

    Computed in log space, ``a = logsigmoid(s) + logsigmoid(c)``, ``logit = a - log(1 - exp(a))`` (``-expm1(a)``
    clamped at ``eps``, which caps the result at about 27.6), so it is stable for large positive or negative inputs.

    ``seg_logits (B, C, *S)``, ``presence_logits (B, C)`` -> ``(B, C, *S)``.
    """
    log_p = F.logsigmoid(seg_logits) + broadcast_presence(F.logsigmoid(presence_logits), seg_logits)
    return log_p - torch.log(torch.clamp(-torch.expm1(log_p), min=eps))
