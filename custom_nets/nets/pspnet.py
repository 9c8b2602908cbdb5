"""PSPNet: a dilated ResNet encoder (output stride 8) followed by a pyramid pooling module and a fusion head.

References:
    * Zhao, Shi, Qi, Wang & Jia, "Pyramid Scene Parsing Network", CVPR 2017, arXiv 1612.01105 (architecture:
      dilated ResNet, pyramid pooling with bins 1/2/3/6, 3x3 fusion conv, dropout 0.1, 1x1 classifier, bilinear
      up-sampling to the input size).
    * "Utilizing Attention, Linked Blocks, and Pyramid Pooling to Propel Brain Tumor Segmentation in 3D" (3D BraTS
      use of PSPNet with a 3D ResNet-50 encoder).

Architecture (widths ``c_i``, ResNet-50 defaults ``layers=(3, 4, 6, 3)``, bottleneck expansion 4):

* :class:`~custom_nets.blocks.resnet.ResNetEncoder` with bottleneck blocks: stem conv k7 stride 2 + norm + ReLU +
  max-pool (stride 4), stage 0 stride 1, stage 1 stride 2 (stride 8), every later stage stride 1 with dilation
  2, 4, 8, ... (the paper's dilated ResNet: dilation 2 and 4 in the last two of four stages);
* :class:`~custom_nets.blocks.pyramid_pooling.PyramidPooling` on the last stage (``4 c_{L-1}`` channels) with
  ``bins``: output ``2 * 4 c_{L-1}`` channels with the default branch width ``4 c_{L-1} / len(bins)``;
* fusion conv (``fusion_kernel_size``, default 3 as in the paper) to ``fusion_channels`` + norm + ReLU, dropout,
  1x1 classifier to ``out_channels``;
* bi/trilinear interpolation of the logits (at stride 8) to the input size.

Shapes: ``(B, in_channels, *S)`` -> logits ``(B, out_channels, *S)``. The encoder output stride is 8, so every size of
``S`` must be divisible by :attr:`PSPNet.size_divisor` ``= 8``; then the feature grid is exactly ``S / 8`` and the final
x8 interpolation lands exactly on ``S`` (``forward`` checks it). The pyramid bins need no further constraint (adaptive
pooling accepts any grid), but a bin larger than the feature grid only repeats voxels: use ``S / 8 >= max(bins)``
(``S >= 48`` for bin 6) for the pyramid to be meaningful, e.g. a 96x96x64 patch gives a 12x12x8 grid.

Fusion width: the 2D paper fuses to 512 channels with a 3x3 conv. In 3D that single conv (3*3*3*4096*512) would hold
56.6M parameters, so the default ``fusion_channels`` is ``c_{L-1} // 2`` (256 at the reference widths, 28.3M); this
reproduces the measured reference count within 10 %.

Parameter counts (3D, batch norm, ``bins=(1, 2, 3, 6)``):

* reference widths ``channels=(64, 128, 256, 512), layers=(3, 4, 6, 3)``, ``in_channels=1, out_channels=4``:
  78,666,052, of which the dilated ResNet-50 encoder is 46,155,072 (measured reference 74.4M: +5.7 %);
* bundle default ``channels=(16, 32, 64, 128), layers=(3, 4, 6, 3)``, ``in_channels=4, out_channels=3``: 4,948,067.

Defects of the reference implementation that are *not* reproduced: ``F`` used without import, 1x1 convs with
``padding=1`` (which grew the maps by 2 voxels), pyramid convs without norm/activation, and an auxiliary head that was
built but never used (and not trained). No auxiliary head is built here.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv

from custom_nets.blocks.common import DEFAULT_ACT, ConvNormAct, check_dropout, check_positive, resize_to
from custom_nets.blocks.pyramid_pooling import PyramidPooling
from custom_nets.nets.utils import ResNetEncoderNetwork

__all__ = ["PSPNet"]


class PSPNet(ResNetEncoderNetwork):
    """PSPNet (Zhao et al. 2017, arXiv 1612.01105) for 2D or 3D segmentation; see the module docstring.

    ``(B, in_channels, *S)`` -> logits ``(B, out_channels, *S)``; each size in ``S`` must be divisible by 8.

    Args:
        spatial_dims: 2 or 3 (1 also works).
        in_channels: input channels (4 for BraTS).
        out_channels: output channels (3 for the BraTS TC/WT/ET regions).
        channels: bottleneck widths of the encoder stages (at least 2; outputs are 4x wider).
            The paper/reference uses (64, 128, 256, 512) (78.7M parameters in 3D); the default (16, 32, 64, 128)
            has 4.9M.
        layers: bottleneck blocks per stage ((3, 4, 6, 3) = ResNet-50, (3, 4, 23, 3) = ResNet-101).
        bins: pyramid pooling grid sizes.
        dropout: dropout probability before the classifier (0.1 in the paper).
        fusion_channels: width of the fusion conv; default ``channels[-1] // 2`` (see the module docstring).
        fusion_kernel_size: kernel of the fusion conv (3 in the paper, 1 is much lighter).
        reduction_channels: width of each pyramid branch; default ``4 * channels[-1] // len(bins)``.
        block: ``"bottleneck"`` (paper) or ``"basic"`` (ResNet-18/34-style encoder, outputs ``channels[i]`` wide).
        norm: MONAI norm name/tuple (the bin-1 pyramid branch never normalises, see
            :class:`~custom_nets.blocks.pyramid_pooling.PyramidPooling`).
        act: MONAI activation name/tuple.

    Attributes:
        size_divisor: every spatial input size must be a multiple of it (8; also :attr:`divisor`).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 4,
        out_channels: int = 3,
        channels: Sequence[int] = (16, 32, 64, 128),
        layers: Sequence[int] = (3, 4, 6, 3),
        bins: Sequence[int] = (1, 2, 3, 6),
        dropout: float = 0.1,
        fusion_channels: int | None = None,
        fusion_kernel_size: int = 3,
        reduction_channels: int | None = None,
        block: str = "bottleneck",
        norm: str | tuple = "batch",
        act: str | tuple = DEFAULT_ACT,
    ) -> None:
        # dilated ResNet: output stride 8 after stage 1, later stages keep it and double the dilation instead
        n_levels = len(channels)
        strides = (1, 2) + (1,) * (n_levels - 2)
        dilations = (1, 1) + tuple(2 ** (i - 1) for i in range(2, n_levels))
        super().__init__(
            spatial_dims, in_channels, out_channels, channels, layers, block, strides, dilations, norm=norm, act=act
        )
        check_dropout("PSPNet", dropout=dropout)
        fusion_channels = max(self.channels[-1] // 2, 1) if fusion_channels is None else int(fusion_channels)
        check_positive("PSPNet", fusion_channels=fusion_channels)
        self.ppm = PyramidPooling(
            spatial_dims,
            self.encoder.out_channels[-1],
            bins=bins,
            reduction_channels=reduction_channels,
            norm=norm,
            act=act,
        )
        self.fusion = ConvNormAct(
            spatial_dims, self.ppm.out_channels, fusion_channels, fusion_kernel_size, norm, act, bias=False
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = Conv[Conv.CONV, spatial_dims](fusion_channels, out_channels, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> ``(B, out_channels, *S)`` logits."""
        self.check_input(x)
        features = self.encoder(x)[-1]
        y = self.classifier(self.dropout(self.fusion(self.ppm(features))))
        return resize_to(y, list(x.shape[2:]), self.interp_mode)
