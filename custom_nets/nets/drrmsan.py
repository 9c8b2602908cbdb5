"""DRRMSAN: a MultiResUNet with multi-scale (average/max/min-pooled) image inputs, attention-gated ResPath skips and
deeply supervised side outputs.

References:
    * "DRRMSAN: Deep Residual Regularized Multi-Scale Attention Networks" (arXiv 2021; 2D RGB segmentation of LGG
      MRI slices, Kvasir-SEG polyps and ISIC-2017 skin lesions; reported 5-fold Dice / IoU: LGG 0.567 / 0.483,
      Kvasir-SEG 0.700 / 0.600, ISIC-2017 0.864 / 0.787);
    * Ibtehaz & Rahman, "MultiResUNet", Neural Networks 2020 (arXiv 1902.04049): the backbone,
      :class:`~custom_nets.blocks.multires.MultiResBlock` and :class:`~custom_nets.blocks.multires.ResPath`;
    * Oktay et al., "Attention U-Net", MIDL 2018 (arXiv 1804.03999): the additive attention gate,
      :class:`~custom_nets.blocks.attention.AttentionGate`.

Architecture (``U_i = base_width * 2 ** i`` for the five levels ``i = 0 .. 4``; ``M_i`` the MultiRes width of ``U_i``,
51/105/212/426/853 for ``base_width = 32``):

* encoder level 0: ``MultiResBlock(in_channels -> M_0)``;
* encoder level ``i = 1 .. 4`` (:class:`DRRMSANEncoderLevel`): 2x max-pool of the previous level; at levels 1, 2, 3
  (1/2, 1/4, 1/8 of the input) the pooled features are concatenated with :class:`PooledImageInput` -- the *input image*
  average-, max- and min-pooled by ``2 ** i`` (kernel = stride = ``2 ** i``), each through its own 3x3 conv + norm +
  act of ``b_i`` channels; then ``MultiResBlock(-> M_i)``. Level 4 (1/16) is the bottleneck, without image input;
* decoder level ``i = 3 .. 0`` (:class:`DRRMSANDecoderLevel`): the encoder skip ``i`` goes through a
  ``ResPath(M_i -> U_i)`` of length ``4 - i``; the coarser decoder features go through a 2x2 stride-2 transposed conv
  ``-> U_i``; the transposed-conv output is the gating signal of an attention gate on the ResPath output (sigmoid
  coefficients multiply the skip); ``cat([up, gated])`` (``2 U_i``) -> ``MultiResBlock(-> M_i)``;
* deep supervision: a 1x1 conv side head on every decoder level (1/8, 1/4, 1/2, full resolution), each up-sampled
  (bi/trilinear, ``align_corners=False``) to the input size; the final output is their weighted sum
  (``side_weights``, default 0.25 each).

The weighted sum is taken over **logits**, not probabilities: every output stays a logit map, so one
``BCEWithLogitsLoss`` (or any sigmoid-based MONAI loss) applies to all five outputs, as the paper's training applies BCE
to all of them. Note that ``sigmoid(sum_k w_k z_k)`` is not ``sum_k w_k sigmoid(z_k)``; with weights summing to one the
final logit is the weighted mean of the side logits.

Min-pooling is ``-maxpool(-x)`` with kernel and stride ``2 ** i``, computed per sample and per channel
(:class:`MinPool`); the reference implementation's min-pool ignored its stride and reduced over the batch, which is not
reproduced.

Choices the facts leave open (documented, configurable where it matters):

* width of each pooled-image conv: ``b_i = max(1, U_i // 4)`` by default (``pooled_input_channels``), so the three
  image branches (``0.75 U_i``) are about as wide as the pooled encoder features (``M_{i-1} ~ 0.83 U_i``);
* attention gate intermediate width ``U_i // 2`` (Oktay et al.), batch norm in each projection;
* side heads are 1x1 convs with bias, up-sampled by interpolation.

Example training loss, BCE on all outputs::

    StackedDeepSupervisionLoss(torch.nn.BCEWithLogitsLoss(), weights=[1.0, 1.0, 1.0, 1.0, 1.0])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import List, Optional

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv, Pool

from custom_nets.blocks.attention import AttentionGate
from custom_nets.blocks.common import DEFAULT_ACT, ConvNormAct, check_positive, resize_to
from custom_nets.blocks.multires import MultiResBlock, ResPath
from custom_nets.nets.utils import SegmentationNetwork

__all__ = ["DRRMSAN", "DRRMSANDecoderLevel", "DRRMSANEncoderLevel", "MinPool", "PooledImageInput"]
_N_LEVELS = 5  # four 2x poolings: sizes divisible by 16
_IMAGE_INPUT_LEVELS = (1, 2, 3)  # the image enters again at 1/2, 1/4 and 1/8


class MinPool(nn.Module):
    """Min-pooling ``-maxpool(-x)``: per sample and per channel, with the given kernel and stride.

    Shapes: ``(B, C, *S)`` -> ``(B, C, *floor((S - kernel) / stride + 1))``; ``(B, C, *S / k)`` for
    ``kernel_size = stride = k`` dividing ``S``.
    """

    def __init__(self, spatial_dims: int, kernel_size: int, stride: int | None = None) -> None:
        super().__init__()
        stride = kernel_size if stride is None else stride
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=kernel_size, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S)`` -> ``(B, C, *S')``: the minimum over each pooling window."""
        return -self.pool(-x)


class PooledImageInput(nn.Module):
    """The input image average-, max- and min-pooled to ``1 / factor``, each through a 3x3 conv + norm + act.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: image channels.
        branch_channels: output channels of each of the three convs.
        factor: pooling kernel and stride (``2 ** level``).
        norm: MONAI norm name/tuple, or ``None``.
        act: MONAI activation name/tuple.

    Shapes: image ``(B, in_channels, *S)`` -> ``(B, 3 * branch_channels, *S / factor)``, channels ordered
    ``[average, max, min]``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        branch_channels: int,
        factor: int,
        norm: str | tuple | None = "batch",
        act: str | tuple = DEFAULT_ACT,
    ) -> None:
        super().__init__()
        if factor < 2:
            raise ValueError(f"pooling factor must be at least 2, got {factor}.")
        check_positive("PooledImageInput", in_channels=in_channels, branch_channels=branch_channels)
        self.avg_pool = Pool[Pool.AVG, spatial_dims](kernel_size=factor, stride=factor)
        self.max_pool = Pool[Pool.MAX, spatial_dims](kernel_size=factor, stride=factor)
        self.min_pool = MinPool(spatial_dims, factor, factor)
        self.avg_conv = ConvNormAct(spatial_dims, in_channels, branch_channels, 3, norm, act)
        self.max_conv = ConvNormAct(spatial_dims, in_channels, branch_channels, 3, norm, act)
        self.min_conv = ConvNormAct(spatial_dims, in_channels, branch_channels, 3, norm, act)
        self.factor = factor
        self.out_channels = 3 * branch_channels

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> ``(B, 3 * branch_channels, *S / factor)``."""
        return torch.cat(
            [
                self.avg_conv(self.avg_pool(image)),
                self.max_conv(self.max_pool(image)),
                self.min_conv(self.min_pool(image)),
            ],
            dim=1,
        )


class DRRMSANEncoderLevel(nn.Module):
    """One encoder level below the first: 2x max-pool, optional pooled-image input concatenated, MultiRes block.

    Inputs ``h (B, in_channels, *2S)`` (the previous level) and ``image (B, image_channels, *S * factor)``; output
    ``(B, out_channels, *S)``.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: channels of the previous level.
        base_channels: ``U`` of this level's MultiRes block.
        image_input: a :class:`PooledImageInput` producing features at this level's resolution, or ``None``.
        norm: MONAI norm name/tuple, or ``None``.
        act: MONAI activation name/tuple.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        base_channels: int,
        image_input: Optional[PooledImageInput] = None,
        norm: str | tuple | None = "batch",
        act: str | tuple = DEFAULT_ACT,
    ) -> None:
        super().__init__()
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)
        self.image_input = image_input
        block_in = in_channels + (0 if image_input is None else image_input.out_channels)
        self.block = MultiResBlock(spatial_dims, block_in, base_channels, norm=norm, act=act)
        self.out_channels = self.block.out_channels

    def forward(self, h: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """``h (B, in_channels, *2S)``, ``image (B, C_img, *S_img)`` -> ``(B, out_channels, *S)``."""
        h = self.pool(h)
        if self.image_input is not None:
            h = torch.cat([h, self.image_input(image)], dim=1)
        return self.block(h)


class DRRMSANDecoderLevel(nn.Module):
    """One decoder level: ResPath on the skip, transposed-conv up-sampling, attention gate, MultiRes block, side head.

    ``up = convT(coarse)``, ``gated = AttentionGate(ResPath(skip), gating=up)``,
    ``h = MultiResBlock(cat([up, gated]))``. :meth:`forward` returns ``h``; ``side(h)`` gives this level's side-output
    logits (at the level's resolution).

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: channels of the coarser decoder (or bottleneck) features.
        skip_channels: channels of the encoder skip (the encoder MultiRes width ``M_i``).
        base_channels: ``U_i``: ResPath output, transposed-conv output and MultiRes ``U`` of this level.
        respath_length: number of ResPath steps.
        out_channels: channels of the side head (the segmentation classes).
        norm: MONAI norm name/tuple, or ``None``.
        act: MONAI activation name/tuple.

    Shapes: ``skip (B, skip_channels, *S)``, ``coarse (B, in_channels, *S / 2)`` -> ``(B, features, *S)`` with
    ``features = MultiResBlock(.., base_channels).out_channels``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        skip_channels: int,
        base_channels: int,
        respath_length: int,
        out_channels: int,
        norm: str | tuple | None = "batch",
        act: str | tuple = DEFAULT_ACT,
    ) -> None:
        super().__init__()
        self.respath = ResPath(spatial_dims, skip_channels, base_channels, respath_length, norm=norm, act=act)
        self.up = Conv[Conv.CONVTRANS, spatial_dims](in_channels, base_channels, kernel_size=2, stride=2)
        self.gate = AttentionGate(
            spatial_dims, base_channels, base_channels, max(1, base_channels // 2), norm=norm, act="relu"
        )
        self.block = MultiResBlock(spatial_dims, 2 * base_channels, base_channels, norm=norm, act=act)
        self.side = Conv[Conv.CONV, spatial_dims](self.block.out_channels, out_channels, kernel_size=1, bias=True)
        self.features = self.block.out_channels

    def forward(self, skip: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """``skip (B, skip_channels, *S)``, ``coarse (B, in_channels, *S / 2)`` -> ``(B, features, *S)``."""
        up = self.up(coarse)
        gated = self.gate(self.respath(skip), up)
        return self.block(torch.cat([up, gated], dim=1))


class DRRMSAN(SegmentationNetwork):
    """DRRMSAN (MultiResUNet + multi-scale pooled inputs + attention-gated ResPaths + deep supervision), 2D or 3D.

    See the module docstring for the level-by-level structure and the choices made.

    Shapes:
        input ``(B, in_channels, *S)`` with every spatial size divisible by 16 (checked, ``ValueError``).
        Eval mode: ``(B, out_channels, *S)``, the final (weighted-sum) logits.
        Training mode: one stacked tensor ``(B, 5, out_channels, *S)`` of logits, all at the input size, in the order
        ``[weighted sum (final), side 1/8, side 1/4, side 1/2, side full resolution]`` (index 0 the final output, the
        :class:`~custom_nets.losses.deep_supervision.StackedDeepSupervisionLoss` convention).

    Parameter counts (2D, batch norm, ``in_channels=3``, ``out_channels=1``):

    * reference width ``base_width=32`` (MultiRes widths 51/105/212/426/853): 7,610,968 (MultiResUNet alone is about
      7.3M; the image branches, attention gates and side heads add the rest);
    * bundle default ``base_width=16`` (MultiRes widths 25/51/105/212/426): 1,898,478.

    Args:
        spatial_dims: 2 or 3 (1 also works).
        in_channels: image channels (3 for RGB).
        out_channels: output channels (1 for a binary mask with a sigmoid).
        base_width: ``U`` of level 0; level ``i`` uses ``U * 2 ** i`` and the MultiRes 1.67 rule.
        side_weights: weights of the side outputs (1/8, 1/4, 1/2, full) in the final weighted sum.
        pooled_input_channels: channels of each pooled-image conv at 1/2, 1/4, 1/8; default ``max(1, U_i // 4)``.
        norm: MONAI norm name/tuple used everywhere (batch norm in the paper).
        act: MONAI activation name/tuple (ReLU in the paper).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        base_width: int = 16,
        side_weights: Sequence[float] = (0.25, 0.25, 0.25, 0.25),
        pooled_input_channels: Sequence[int] | None = None,
        norm: str | tuple | None = "batch",
        act: str | tuple = DEFAULT_ACT,
    ) -> None:
        super().__init__(spatial_dims, in_channels, out_channels)
        if base_width < 4:
            raise ValueError(f"DRRMSAN base_width must be at least 4 (MultiRes widths), got {base_width}.")
        weights = [float(w) for w in side_weights]
        if len(weights) != _N_LEVELS - 1:
            raise ValueError(
                f"DRRMSAN side_weights needs {_N_LEVELS - 1} weights (sides at 1/8, 1/4, 1/2, full), got {weights}."
            )
        u = [base_width * 2**i for i in range(_N_LEVELS)]
        if pooled_input_channels is None:
            branch = [max(1, u[i] // 4) for i in _IMAGE_INPUT_LEVELS]
        else:
            branch = [int(c) for c in pooled_input_channels]
            if len(branch) != len(_IMAGE_INPUT_LEVELS) or min(branch) < 1:
                raise ValueError(
                    "DRRMSAN pooled_input_channels needs three positive widths (for 1/2, 1/4, 1/8), "
                    f"got {list(pooled_input_channels)}."
                )

        self.stem = MultiResBlock(spatial_dims, in_channels, u[0], norm=norm, act=act)
        widths = [self.stem.out_channels]
        encoder: List[nn.Module] = []
        for i in range(1, _N_LEVELS):
            image_input = (
                PooledImageInput(spatial_dims, in_channels, branch[i - 1], 2**i, norm=norm, act=act)
                if i in _IMAGE_INPUT_LEVELS
                else None
            )
            level = DRRMSANEncoderLevel(spatial_dims, widths[-1], u[i], image_input, norm=norm, act=act)
            encoder.append(level)
            widths.append(level.out_channels)
        self.encoder = nn.ModuleList(encoder)

        decoder: List[nn.Module] = []
        coarse = widths[-1]
        for i in range(_N_LEVELS - 2, -1, -1):  # deepest first: 1/8, 1/4, 1/2, full
            level = DRRMSANDecoderLevel(
                spatial_dims, coarse, widths[i], u[i], _N_LEVELS - 1 - i, out_channels, norm=norm, act=act
            )
            decoder.append(level)
            coarse = level.features
        self.decoder = nn.ModuleList(decoder)

        self.base_width = base_width
        self.encoder_widths = tuple(widths)
        self.side_weights: List[float] = weights
        self.size_divisor = 2 ** (_N_LEVELS - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> eval: ``(B, out_channels, *S)``; training: ``(B, 5, out_channels, *S)``."""
        self.check_input(x)
        h = self.stem(x)
        skips: List[torch.Tensor] = [h]
        for level in self.encoder:
            h = level(h, x)
            skips.append(h)

        size: List[int] = list(x.shape[2:])
        sides: List[torch.Tensor] = []
        n_skips = len(skips)
        for j, level in enumerate(self.decoder):
            h = level(skips[n_skips - 2 - j], h)
            sides.append(resize_to(level.side(h), size, self.interp_mode))

        final = sides[0] * self.side_weights[0]
        for k in range(1, len(sides)):
            final = final + sides[k] * self.side_weights[k]
        if self.training:
            return torch.stack([final] + sides, dim=1)
        return final
