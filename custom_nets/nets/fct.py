"""FCT: the Fully Convolutional Transformer for medical image segmentation.

Reference: Tragakis, Kaul, Murray-Smith, Husmeier, "The Fully Convolutional Transformer for Medical Image
Segmentation", WACV 2023 (arXiv 2206.00566). Trained at 224 x 224 with Adam (lr 1e-3); reported ACDC Dice 92.84 with
deep supervision (91.49 without).

Architecture (``L = len(channels)`` blocks down, ``L - 1`` back up; paper widths 32, 64, 128, 256, 512); every block
ends in an :class:`~custom_nets.blocks.conv_attention.FCTLayer` (convolutional attention + Wide-Focus):

* encoder block ``i = 0 .. L-1`` (:class:`FCTEncoderBlock`, the last one is the bottleneck): channel LayerNorm of its
  input (not in block 0, see below); for blocks ``1 .. L-2`` the input image average-pooled ``i`` times (an image
  pyramid at the block's input scale) through a 3x3 conv + ReLU to the input's width, concatenated in front; two 3x3
  convs + ReLU to ``c_i``; dropout; 2x max-pool; FCT layer. Block ``i`` outputs scale ``2 ** -(i + 1)``, so the
  bottleneck sits at ``1 / 2 ** L`` (7 x 7 for a 224 x 224 input);
* decoder block ``j = 0 .. L-2`` (:class:`FCTDecoderBlock`, output at the scale of encoder block ``L - 2 - j``,
  i.e. ``2 ** -(L - 1 - j)``): channel LayerNorm,
  x2 up-sampling (bi/trilinear), 3x3 conv + ReLU to ``c_{L-2-j}``, concatenation with encoder block ``L - 2 - j``'s
  output, two 3x3 convs + ReLU, dropout, FCT layer;
* heads (:class:`FCTHead`) on the last three decoder blocks (scales 1/8, 1/4, 1/2): x2 up-sampling, channel
  LayerNorm, two 3x3 convs + ReLU, 3x3 conv to ``out_channels`` logits: outputs at 1/4, 1/2 and full resolution. The
  full-resolution one is the network output; the other two are the deep-supervision outputs (paper loss weights
  0.14 / 0.29 / 0.57, full resolution heaviest: ``StackedDeepSupervisionLoss(loss, weights=[0.57, 0.29, 0.14])``).

Output convention: eval mode ``(B, out_channels, *S)`` logits (the full-resolution head). Training mode with
``deep_supervision``: ``(B, 3, out_channels, *S)`` = [full, 1/2 head, 1/4 head], the coarser heads up-sampled
(bi/trilinear) to ``S``; without deep supervision ``(B, out_channels, *S)``.

Deliberate differences from the reference code and a popular PyTorch port:

* LayerNorm over the channels at each position (:class:`~custom_nets.blocks.conv_attention.ChannelLayerNorm`), not
  over ``[C, H, W]`` (which fixes the image size and holds millions of norm weights); any size divisible by
  ``2 ** L`` works, in 2D and 3D;
* no LayerNorm on the raw image in encoder block 0: a LayerNorm over channels of a 1-channel image outputs a constant
  (the image would reach the network only through the pyramid inputs), and for a 2.5D stack it would erase the
  intensity of each position; the input is expected to be intensity-normalised by the transforms instead;
* dropout is ``nn.Dropout`` (off in eval mode); ``F.dropout(x, p)`` as written in the port is active at inference;
* the heads return logits (the port ends in a sigmoid), as every network of this package;
* up-sampling is bi/trilinear (the reference uses nearest-neighbour ``nn.Upsample``).

Parameter counts (2D, ``deep_supervision=True``, ``in_channels=1``, ``out_channels=3``; checked by
``tests/nets/test_unet3plus_fct.py``): reference widths ``(32, 64, 128, 256, 512)``: 26,935,721 (26,561,123 without the
two extra heads); bundle default ``(16, 32, 64, 128, 256)``: 6,755,545 (``in_channels=3``: 6,757,849). Memory is
dominated by the attention of the outermost blocks (see :mod:`custom_nets.blocks.conv_attention`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import List

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Pool

from custom_nets.blocks.common import DEFAULT_ACT, LINEAR_MODE, ConvNormAct, check_dropout
from custom_nets.blocks.conv_attention import ChannelLayerNorm, FCTLayer
from custom_nets.nets.utils import SegmentationNetwork, check_channels, stack_heads

__all__ = ["FCT", "FCTDecoderBlock", "FCTEncoderBlock", "FCTHead"]


def _conv_relu(spatial_dims: int, in_channels: int, out_channels: int) -> nn.Module:
    """3x3 conv (with bias, 'same' padding) + ReLU: the FCT has no norm in its conv stacks."""
    return ConvNormAct(spatial_dims, in_channels, out_channels, kernel_size=3, norm=None, act=DEFAULT_ACT)


class FCTEncoderBlock(nn.Module):
    """FCT encoder block: [LayerNorm], [concat conv3(pyramid image)], 2 x (conv3 + ReLU), dropout, max-pool, FCT layer.

    ``forward(x, image)``: ``x (B, in_channels, *S)``, ``image (B, image_channels, *S)`` (the input image
    average-pooled to ``S``; ignored when ``image_channels == 0``) -> ``(B, out_channels, *S / 2)``.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: channels of ``x``.
        out_channels: output channels.
        num_heads: heads of the FCT layer.
        image_channels: channels of the pyramid image, 0 for no pyramid input.
        input_norm: channel LayerNorm on ``x`` first (off for the first block, which receives the raw image).
        dropout: dropout after the convs.
        layer_dropout: dropout inside the FCT layer (Wide-Focus and attention projection).
        attn_dropout: dropout on the attention weights.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        num_heads: int,
        image_channels: int = 0,
        input_norm: bool = True,
        dropout: float = 0.3,
        layer_dropout: float = 0.1,
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm: nn.Module = ChannelLayerNorm(in_channels) if input_norm else nn.Identity()
        self.use_pyramid = image_channels > 0
        self.pyramid: nn.Module = (
            _conv_relu(spatial_dims, image_channels, in_channels) if self.use_pyramid else nn.Identity()
        )
        width = 2 * in_channels if self.use_pyramid else in_channels
        self.convs = nn.Sequential(
            _conv_relu(spatial_dims, width, out_channels), _conv_relu(spatial_dims, out_channels, out_channels)
        )
        self.dropout = nn.Dropout(dropout)
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)
        self.fct = FCTLayer(
            spatial_dims, out_channels, num_heads, attn_dropout=attn_dropout, dropout=layer_dropout
        )

    def forward(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """``x (B, in_channels, *S)``, ``image (B, image_channels, *S)`` -> ``(B, out_channels, *S / 2)``."""
        h = self.norm(x)
        if self.use_pyramid:
            h = torch.cat([self.pyramid(image), h], dim=1)
        return self.fct(self.pool(self.dropout(self.convs(h))))


class FCTDecoderBlock(nn.Module):
    """FCT decoder block: LayerNorm, x2 up-sampling, conv3 + ReLU, concat skip, 2 x (conv3 + ReLU), dropout, FCT layer.

    ``forward(x, skip)``: ``x (B, in_channels, *S / 2)``, ``skip (B, skip_channels, *S)`` -> ``(B, out_channels, *S)``.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: channels of the coarser input.
        skip_channels: channels of the encoder skip.
        out_channels: output channels.
        num_heads: heads of the FCT layer.
        dropout: dropout after the convs.
        layer_dropout: dropout inside the FCT layer.
        attn_dropout: dropout on the attention weights.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        num_heads: int,
        dropout: float = 0.3,
        layer_dropout: float = 0.1,
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm = ChannelLayerNorm(in_channels)
        self.up = nn.Upsample(scale_factor=2.0, mode=LINEAR_MODE[spatial_dims], align_corners=False)
        self.conv_up = _conv_relu(spatial_dims, in_channels, out_channels)
        self.convs = nn.Sequential(
            _conv_relu(spatial_dims, skip_channels + out_channels, out_channels),
            _conv_relu(spatial_dims, out_channels, out_channels),
        )
        self.dropout = nn.Dropout(dropout)
        self.fct = FCTLayer(
            spatial_dims, out_channels, num_heads, attn_dropout=attn_dropout, dropout=layer_dropout
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """``x (B, in_channels, *S / 2)``, ``skip (B, skip_channels, *S)`` -> ``(B, out_channels, *S)``."""
        h = self.conv_up(self.up(self.norm(x)))
        return self.fct(self.dropout(self.convs(torch.cat([skip, h], dim=1))))


class FCTHead(nn.Module):
    """FCT output head: x2 up-sampling, LayerNorm, 2 x (conv3 + ReLU), conv3 to logits.

    ``(B, in_channels, *S)`` -> ``(B, out_channels, *2S)``.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2.0, mode=LINEAR_MODE[spatial_dims], align_corners=False)
        self.norm = ChannelLayerNorm(in_channels)
        self.convs = nn.Sequential(
            _conv_relu(spatial_dims, in_channels, in_channels), _conv_relu(spatial_dims, in_channels, in_channels)
        )
        self.out = Convolution(spatial_dims, in_channels, out_channels, kernel_size=3, bias=True, conv_only=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> ``(B, out_channels, *2S)``."""
        return self.out(self.convs(self.norm(self.up(x))))


def _heads_per_block(num_heads: int | Sequence[int], n_blocks: int) -> List[int]:
    if isinstance(num_heads, int):
        return [int(num_heads)] * n_blocks
    heads = [int(h) for h in num_heads]
    if len(heads) != n_blocks:
        raise ValueError(
            f"FCT num_heads must be an int or one value per block ({n_blocks}: encoder then decoder), got {heads}."
        )
    return heads


class FCT(SegmentationNetwork):
    """Fully Convolutional Transformer (Tragakis et al., arXiv 2206.00566) for 2D or 3D segmentation.

    See the module docstring for the structure, the output convention and the differences from the reference.

    Shapes:
        input ``(B, in_channels, *S)`` with every size divisible by ``2 ** len(channels)`` (32 for five blocks),
        checked at the top of ``forward``. Eval: logits ``(B, out_channels, *S)``. Training with
        ``deep_supervision``: ``(B, n_heads, out_channels, *S)``, ``n_heads = min(3, len(channels) - 1)``, ordered
        [full, 1/2, 1/4], all up-sampled to ``S``.

    Args:
        spatial_dims: 2 or 3 (1 also works).
        in_channels: input channels (1, or 3 for a 2.5D stack).
        out_channels: output channels (sigmoid per class, or softmax; logits either way).
        channels: widths of the encoder blocks (paper 32 .. 512); the decoder mirrors them. At least 3.
        num_heads: attention heads, one int for every block or one value per block (``2 * len(channels) - 1``:
            encoder blocks, then decoder blocks). Every width must be divisible by its block's heads.
        deep_supervision: return the 1/2 and 1/4 heads too in training mode.
        dropout: dropout after the convs of every block (0.3 in the reference).
        layer_dropout: dropout inside every FCT layer (Wide-Focus, attention projection; 0.1 in the reference).
        attn_dropout: dropout on the attention weights.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 3,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        num_heads: int | Sequence[int] = 2,
        deep_supervision: bool = True,
        dropout: float = 0.3,
        layer_dropout: float = 0.1,
        attn_dropout: float = 0.0,
    ) -> None:
        super().__init__(spatial_dims, in_channels, out_channels)
        check_dropout("FCT", dropout=dropout, layer_dropout=layer_dropout, attn_dropout=attn_dropout)
        channels = check_channels(channels, min_levels=3, net_name="FCT")
        n_levels = len(channels)
        heads = _heads_per_block(num_heads, 2 * n_levels - 1)
        widths = list(channels) + [channels[i] for i in range(n_levels - 2, -1, -1)]
        for width, h in zip(widths, heads):
            if h <= 0 or width % h != 0:
                raise ValueError(f"FCT block width {width} is not divisible by its number of heads {h}.")

        common = {"dropout": dropout, "layer_dropout": layer_dropout, "attn_dropout": attn_dropout}
        self.encoder = nn.ModuleList(
            [
                FCTEncoderBlock(
                    spatial_dims,
                    in_channels if i == 0 else channels[i - 1],
                    channels[i],
                    heads[i],
                    image_channels=in_channels if 0 < i < n_levels - 1 else 0,
                    input_norm=i > 0,
                    **common,
                )
                for i in range(n_levels)
            ]
        )
        # decoder[j] works at the scale of encoder block L - 2 - j's output (its skip) and has its width
        self.decoder = nn.ModuleList(
            [
                FCTDecoderBlock(
                    spatial_dims, channels[level + 1], channels[level], channels[level], heads[n_levels + j], **common
                )
                for j, level in enumerate(range(n_levels - 2, -1, -1))
            ]
        )
        n_heads = min(3, n_levels - 1)
        # heads[k] sits on level k (outputs at scale 2 ** -k): k = 0 is the final output
        self.heads = nn.ModuleList(
            [FCTHead(spatial_dims, channels[k], out_channels) for k in range(n_heads if deep_supervision else 1)]
        )
        self.pyramid_pool = Pool[Pool.AVG, spatial_dims](kernel_size=2, stride=2)

        self.channels = channels
        self.num_heads = heads
        self.deep_supervision = deep_supervision
        self.size_divisor = 2**n_levels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> eval: ``(B, out_channels, *S)``; training with deep supervision:
        ``(B, n_heads, out_channels, *S)`` ([full, 1/2, 1/4])."""
        self.check_input(x)
        image = x
        h = x
        skips: List[torch.Tensor] = []
        for i, block in enumerate(self.encoder):
            if i > 0:
                image = self.pyramid_pool(image)
            h = block(h, image)
            skips.append(h)
        n_levels = len(skips)
        decoded: List[torch.Tensor] = []  # decoded[j] is level L - 2 - j
        for j, block in enumerate(self.decoder):
            h = block(h, skips[n_levels - 2 - j])
            decoded.append(h)

        outputs: List[torch.Tensor] = []
        for k, head in enumerate(self.heads):
            if k == 0 or self.training:
                outputs.append(head(decoded[n_levels - 2 - k]))
        if not self.training or len(outputs) == 1:
            return outputs[0]
        return stack_heads(outputs, list(x.shape[2:]), self.interp_mode)
