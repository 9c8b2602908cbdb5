"""DDANet: one encoder, two decoders -- a mask decoder and a grayscale-reconstruction decoder whose features gate it.

Reference: Tomar, Jha, Ali, Johansen, Johansen, Riegler, Halvorsen, "DDANet: Dual Decoder Attention Network for
Automatic Polyp Segmentation", ICPR workshops 2021 (arXiv 2012.15245). Reported on Kvasir-SEG: Dice 0.8576,
mIoU 0.7800, recall 0.8880, precision 0.8643.

Architecture (encoder widths ``c_0 .. c_{L-1}`` = 32/64/128/256, decoder widths ``d_0 .. d_{L-1}`` = 128/64/32/16):

* encoder level ``i``: two :class:`~custom_nets.blocks.se_residual.SEResidualBlock` s (``-> c_i``), whose output is
  the skip of level ``i``, then a 2x max-pool. The pooled output of the last level (``c_{L-1}`` at ``1 / 2 ** L``)
  feeds both decoders;
* decoder level ``j`` (:class:`DDANetDecoderBlock`, one per decoder): 4x4 stride-2 transposed conv ``-> d_j``,
  concatenation with the encoder skip of level ``L - 1 - j``, two SE residual blocks ``-> d_j``;
* dual-decoder attention (:class:`ReconstructionAttention`, at every decoder level): the reconstruction decoder's
  output at that level gives a one-channel spatial attention map ``sigmoid(conv1x1(r_j))`` that multiplies the mask
  decoder's output before it goes on to the next mask-decoder level. The reconstruction decoder itself is not gated;
* heads: 1x1 convs on the last decoder level: ``d_{L-1} -> out_channels`` mask logits and ``d_{L-1} -> 1`` grayscale
  reconstruction logits (the grayscale target in [0, 1] is matched through a sigmoid: BCE with logits).

Output convention (project-wide): eval mode returns the mask logits ``(B, out_channels, *S)`` only; training mode
returns ``torch.cat([mask_logits, reconstruction_logits], dim=1)``, ``(B, out_channels + 1, *S)``, which
:class:`~custom_nets.losses.ddanet.MaskAndReconstructionLoss` splits (Dice + BCE on the mask, BCE on the grayscale
reconstruction, as in the paper). The reconstruction decoder runs in eval mode too: the mask decoder needs its
attention maps.

Choice the facts leave open: the attention map is one channel (a 1x1 conv to one channel, then a sigmoid), i.e. a
spatial map shared by all mask-decoder channels; it costs ``d_j + 1`` parameters per level.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import List, Tuple

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv, Pool

from custom_nets.blocks.common import DEFAULT_ACT
from custom_nets.blocks.se_residual import SEResidualBlock
from custom_nets.nets.utils import SegmentationNetwork, check_channels

__all__ = ["DDANet", "DDANetDecoderBlock", "DDANetEncoderBlock", "DualDecoderLevel", "ReconstructionAttention"]


class DDANetEncoderBlock(nn.Sequential):
    """Two :class:`SEResidualBlock` s, ``in_channels -> out_channels -> out_channels`` (pooling is done by the net).

    Shapes: ``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        se_reduction: int = 16,
        norm: str | tuple | None = "batch",
        act: str | tuple = DEFAULT_ACT,
    ) -> None:
        super().__init__(
            SEResidualBlock(spatial_dims, in_channels, out_channels, se_reduction=se_reduction, norm=norm, act=act),
            SEResidualBlock(spatial_dims, out_channels, out_channels, se_reduction=se_reduction, norm=norm, act=act),
        )
        self.out_channels = out_channels


class DDANetDecoderBlock(nn.Module):
    """4x4 stride-2 transposed conv, concatenation with the skip, two :class:`SEResidualBlock` s.

    Shapes: ``coarse (B, in_channels, *S / 2)``, ``skip (B, skip_channels, *S)`` -> ``(B, out_channels, *S)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        se_reduction: int = 16,
        norm: str | tuple | None = "batch",
        act: str | tuple = DEFAULT_ACT,
    ) -> None:
        super().__init__()
        # kernel 4, stride 2, padding 1: exactly doubles every spatial size
        self.up = Conv[Conv.CONVTRANS, spatial_dims](in_channels, out_channels, kernel_size=4, stride=2, padding=1)
        self.blocks = DDANetEncoderBlock(
            spatial_dims, out_channels + skip_channels, out_channels, se_reduction=se_reduction, norm=norm, act=act
        )
        self.out_channels = out_channels

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``coarse (B, in_channels, *S / 2)``, ``skip (B, skip_channels, *S)`` -> ``(B, out_channels, *S)``."""
        return self.blocks(torch.cat([self.up(coarse), skip], dim=1))


class ReconstructionAttention(nn.Module):
    """Spatial attention map from reconstruction-decoder features: ``sigmoid(conv1x1(r))``, one channel.

    Shapes: ``(B, in_channels, *S)`` -> ``(B, 1, *S)`` in (0, 1).
    """

    def __init__(self, spatial_dims: int, in_channels: int) -> None:
        super().__init__()
        self.conv = Conv[Conv.CONV, spatial_dims](in_channels, 1, kernel_size=1, bias=True)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> ``(B, 1, *S)``."""
        return torch.sigmoid(self.conv(r))


class DualDecoderLevel(nn.Module):
    """One level of both decoders: the mask block, the reconstruction block, and the attention between them.

    ``m' = mask_block(m, skip) * attention(r')`` with ``r' = recon_block(r, skip)``.

    Shapes: ``m, r (B, in_channels, *S / 2)``, ``skip (B, skip_channels, *S)`` -> ``(m', r')``, each
    ``(B, out_channels, *S)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        se_reduction: int = 16,
        norm: str | tuple | None = "batch",
        act: str | tuple = DEFAULT_ACT,
    ) -> None:
        super().__init__()

        def decoder_block() -> DDANetDecoderBlock:
            # the two decoders have the same layout (and separate weights)
            return DDANetDecoderBlock(
                spatial_dims, in_channels, skip_channels, out_channels, se_reduction=se_reduction, norm=norm, act=act
            )

        self.mask_block = decoder_block()
        self.recon_block = decoder_block()
        self.attention = ReconstructionAttention(spatial_dims, out_channels)

    def forward(self, m: torch.Tensor, r: torch.Tensor, skip: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(m, r, skip)`` -> ``(gated mask features, reconstruction features)``."""
        r = self.recon_block(r, skip)
        m = self.mask_block(m, skip) * self.attention(r)
        return m, r


class DDANet(SegmentationNetwork):
    """DDANet (dual decoder attention network), 2D or 3D; see the module docstring for the structure.

    Shapes:
        input ``(B, in_channels, *S)`` with every spatial size divisible by ``2 ** len(channels)`` (16 by default;
        checked, ``ValueError``). Eval mode: mask logits ``(B, out_channels, *S)``. Training mode:
        ``(B, out_channels + 1, *S)`` = ``[mask logits, grayscale reconstruction logits]`` along channels.

    Parameter counts (2D, batch norm, ``in_channels=3``, ``out_channels=1``):

    * reference widths = defaults, ``channels=(32, 64, 128, 256)``, ``decoder_channels=(128, 64, 32, 16)``:
      6,831,918 (the reference model measures 6.8M);
    * halved widths ``channels=(16, 32, 64, 128)``, ``decoder_channels=(64, 32, 16, 8)``: 1,711,836.

    Args:
        spatial_dims: 2 or 3 (1 also works).
        in_channels: image channels (3 for RGB).
        out_channels: mask channels (1 for a binary mask with a sigmoid).
        channels: encoder widths, shallowest first.
        decoder_channels: decoder widths, deepest first (same number of levels as ``channels``).
        se_reduction: squeeze-excitation reduction ratio of every residual block.
        norm: MONAI norm name/tuple (batch norm in the paper).
        act: MONAI activation name/tuple (ReLU in the paper).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        channels: Sequence[int] = (32, 64, 128, 256),
        decoder_channels: Sequence[int] = (128, 64, 32, 16),
        se_reduction: int = 16,
        norm: str | tuple | None = "batch",
        act: str | tuple = DEFAULT_ACT,
    ) -> None:
        super().__init__(spatial_dims, in_channels, out_channels)
        channels = check_channels(channels, min_levels=1, net_name="DDANet")
        decoder_channels = check_channels(decoder_channels, min_levels=1, net_name="DDANet")
        if len(decoder_channels) != len(channels):
            raise ValueError(
                f"DDANet needs one decoder width per encoder level, got channels={list(channels)} and "
                f"decoder_channels={list(decoder_channels)}."
            )
        n_levels = len(channels)

        encoder: List[nn.Module] = []
        c_in = in_channels
        for c in channels:
            encoder.append(DDANetEncoderBlock(spatial_dims, c_in, c, se_reduction=se_reduction, norm=norm, act=act))
            c_in = c
        self.encoder = nn.ModuleList(encoder)
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)

        decoder: List[nn.Module] = []
        for j, d in enumerate(decoder_channels):
            skip = channels[n_levels - 1 - j]
            decoder.append(
                DualDecoderLevel(spatial_dims, c_in, skip, d, se_reduction=se_reduction, norm=norm, act=act)
            )
            c_in = d
        self.decoder = nn.ModuleList(decoder)
        self.mask_head = Conv[Conv.CONV, spatial_dims](c_in, out_channels, kernel_size=1, bias=True)
        self.recon_head = Conv[Conv.CONV, spatial_dims](c_in, 1, kernel_size=1, bias=True)

        self.channels = channels
        self.decoder_channels = decoder_channels
        self.size_divisor = 2**n_levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> eval: ``(B, out_channels, *S)``; training: ``(B, out_channels + 1, *S)``."""
        self.check_input(x)
        skips: List[torch.Tensor] = []
        h = x
        for block in self.encoder:
            h = block(h)
            skips.append(h)
            h = self.pool(h)

        m = h
        r = h
        n_skips = len(skips)
        for j, level in enumerate(self.decoder):
            m, r = level(m, r, skips[n_skips - 1 - j])

        mask = self.mask_head(m)
        if self.training:
            return torch.cat([mask, self.recon_head(r)], dim=1)
        return mask
