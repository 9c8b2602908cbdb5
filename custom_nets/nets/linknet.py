"""LinkNet: a ResNet encoder whose every stage input is added ("linked") to the output of the mirrored decoder block.

References:
    * Chaurasia & Culurciello, "LinkNet: Exploiting Encoder Representations for Efficient Semantic Segmentation",
      VCIP 2017, arXiv 1707.03718 (architecture, Sec. 2 and its figures).
    * "Utilizing Attention, Linked Blocks, and Pyramid Pooling to Propel Brain Tumor Segmentation in 3D" (3D BraTS
      use of LinkNet with a ResNet-18 encoder).

Architecture (``L = len(channels)`` levels, widths ``c_i``, ResNet-18 defaults ``layers=(2, 2, 2, 2)``):

* stem: conv k7 stride 2 + norm + ReLU, max-pool k3 stride 2 (stride 4, ``c_0`` channels);
* encoder: :class:`~custom_nets.blocks.resnet.ResNetEncoder`; stage ``i`` has ``layers[i]`` basic residual blocks of
  width ``c_i``; stage 0 keeps the stride, every later stage starts with stride 2 (output strides 4, 8, ..., 2^(L+1));
* decoder block ``i`` (deepest first, as in the paper): 1x1 conv ``m -> m/4``, x2 up-sampling ``m/4 -> m/4``
  (transposed conv k3 stride 2, or interpolation + conv k3), 1x1 conv ``m/4 -> n``, each conv followed by norm + ReLU;
  ``m`` is the width of encoder stage ``i`` and ``n`` the width of its *input*. The block mirrors the stage's stride,
  so decoder 0 (mirroring stage 0, stride 1) uses a stride-1 conv k3 instead of the up-sampling;
* link: the output of decoder ``i`` is **added** to the input of encoder stage ``i`` (for ``i = 0`` the stem output),
  exactly the paper's "input of each encoder layer is bypassed to the output of its corresponding decoder";
* head (as in the paper): transposed conv k3 stride 2 ``c_0 -> head_channels`` + norm + ReLU, conv k3
  ``head_channels -> head_channels`` + norm + ReLU, transposed conv k2 stride 2 ``head_channels -> out_channels``
  (no norm, no activation). With ``upsample_mode="nontrainable"`` each transposed conv becomes bi/trilinear x2
  interpolation followed by a conv k3.

Shapes: ``(B, in_channels, *S)`` -> logits ``(B, out_channels, *S)``; every size of ``S`` must be divisible by
``2 ** (L + 1)`` (32 for four levels), which ``forward`` checks. No softmax/sigmoid is applied.

Parameter counts (3D, ``layers=(2, 2, 2, 2)``, ``upsample_mode="deconv"``, batch norm):

* reference widths ``channels=(64, 128, 256, 512)``, ``in_channels=1, out_channels=4``: 33,964,676, of which the
  ResNet-18 encoder is 33,160,000 (the measured reference is 32.9M: +3.2 %);
* bundle default ``channels=(32, 64, 128, 256)``, ``in_channels=4, out_channels=3``: 8,532,643.

Defects of the reference implementation that are *not* reproduced: its residual addition was commented out, it mixed
a ``BatchNorm2d`` into the 3D model, its decoder ignored its kernel/stride arguments, and it ended with a softmax
without ``dim``; here the blocks are residual, norms follow ``spatial_dims``, the decoder honours ``kernel_size`` and
strides, and the net returns logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from custom_nets.blocks.common import DEFAULT_ACT, LINEAR_MODE, ConvNormAct, check_positive
from custom_nets.nets.utils import ResNetEncoderNetwork

__all__ = ["LinkNet", "LinkNetDecoderBlock"]

_UPSAMPLE_MODES = ("deconv", "nontrainable")


def _upsample_conv(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    scale: int,
    mode: str,
    norm: str | tuple | None,
    act: str | tuple | None,
) -> nn.Module:
    """A conv (+ norm + act) that multiplies the spatial size by exactly ``scale`` (``scale == 1``: a 'same' conv).

    ``mode="deconv"``: transposed conv with ``padding = (k - 1) // 2`` and ``output_padding = scale - k + 2 * padding``
    so that ``out = scale * in``; ``mode="nontrainable"``: bi/trilinear interpolation then a 'same' conv. With
    ``norm=None`` and ``act=None`` it is a bare (biased) conv.
    """
    if scale == 1:
        return ConvNormAct(spatial_dims, in_channels, out_channels, kernel_size, norm, act)
    if mode == "deconv":
        padding = (kernel_size - 1) // 2
        output_padding = scale - kernel_size + 2 * padding
        if not 0 <= output_padding < scale:
            raise ValueError(f"a transposed conv with kernel {kernel_size} cannot up-sample exactly by {scale}.")
        return ConvNormAct(
            spatial_dims, in_channels, out_channels, kernel_size, norm, act, strides=scale, is_transposed=True,
            padding=padding, output_padding=output_padding,
        )  # fmt: skip
    return nn.Sequential(
        nn.Upsample(scale_factor=float(scale), mode=LINEAR_MODE[spatial_dims], align_corners=False),
        ConvNormAct(spatial_dims, in_channels, out_channels, kernel_size, norm, act),
    )


class LinkNetDecoderBlock(nn.Module):
    """LinkNet decoder block: 1x1 conv ``in -> in/4``, up-sampling conv (x ``stride``), 1x1 conv ``in/4 -> out``.

    Every conv is followed by norm + activation (Chaurasia & Culurciello 2017, Fig. 3(b)).
    ``(B, in_channels, *S)`` -> ``(B, out_channels, *(stride * S))``.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels ``m``.
        out_channels: output channels ``n``.
        stride: up-sampling factor of the middle conv (1: no up-sampling).
        kernel_size: kernel of the middle conv (3 in the paper).
        upsample_mode: ``"deconv"`` (transposed conv, the paper's "full-conv") or ``"nontrainable"``
            (bi/trilinear interpolation + conv).
        norm: MONAI norm name/tuple.
        act: MONAI activation name/tuple.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        stride: int = 2,
        kernel_size: int = 3,
        upsample_mode: str = "deconv",
        norm: str | tuple | None = "batch",
        act: str | tuple | None = DEFAULT_ACT,
    ) -> None:
        super().__init__()
        if upsample_mode not in _UPSAMPLE_MODES:
            raise ValueError(f"upsample_mode must be one of {_UPSAMPLE_MODES}, got {upsample_mode!r}.")
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}.")
        mid = max(in_channels // 4, 1)
        self.reduce = ConvNormAct(spatial_dims, in_channels, mid, 1, norm, act)
        self.up = _upsample_conv(spatial_dims, mid, mid, kernel_size, stride, upsample_mode, norm, act)
        self.expand = ConvNormAct(spatial_dims, mid, out_channels, 1, norm, act)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.up(self.reduce(x)))


class LinkNet(ResNetEncoderNetwork):
    """LinkNet (Chaurasia & Culurciello 2017, arXiv 1707.03718) for 2D or 3D segmentation; see the module docstring.

    ``(B, in_channels, *S)`` -> logits ``(B, out_channels, *S)``; each size in ``S`` must be divisible by
    :attr:`size_divisor` ``= 2 ** (len(channels) + 1)`` (32 with four levels).

    Args:
        spatial_dims: 2 or 3 (1 also works).
        in_channels: input channels (4 for BraTS: T1, T1ce, T2, FLAIR).
        out_channels: output channels (3 for the BraTS TC/WT/ET regions).
        channels: widths of the encoder stages (at least 2). The paper/reference uses (64, 128, 256, 512)
            (34.0M parameters in 3D); the default (32, 64, 128, 256) has a quarter of them (8.5M).
        layers: residual blocks per encoder stage ((2, 2, 2, 2) = ResNet-18, (3, 4, 6, 3) = ResNet-34).
        block: residual block of the encoder, ``"basic"`` (paper) or ``"bottleneck"``.
        head_channels: width of the head; default ``channels[0] // 2`` (32 for the reference widths).
        kernel_size: kernel of the decoder's up-sampling conv.
        upsample_mode: ``"deconv"`` (transposed convs, the paper) or ``"nontrainable"`` (interpolation + conv).
        norm: MONAI norm name/tuple. The deepest level has ``S / divisor`` voxels: batch norm (default) in
            training with batch size 1, and instance norm always, need more than one voxel there, i.e. an input of
            at least ``2 * divisor`` along one axis (a 96x96x64 patch gives 3x3x2; 32x32x32 with batch 1 fails).
        act: MONAI activation name/tuple.

    Attributes:
        size_divisor: every spatial input size must be a multiple of it (also :attr:`divisor`).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 4,
        out_channels: int = 3,
        channels: Sequence[int] = (32, 64, 128, 256),
        layers: Sequence[int] | None = None,
        block: str = "basic",
        head_channels: int | None = None,
        kernel_size: int = 3,
        upsample_mode: str = "deconv",
        norm: str | tuple = "batch",
        act: str | tuple = DEFAULT_ACT,
    ) -> None:
        # stage 0 keeps the stem's stride, every later stage halves the size
        strides = (1,) + (2,) * (len(channels) - 1)
        super().__init__(
            spatial_dims,
            in_channels,
            out_channels,
            channels,
            layers,
            block,
            strides,
            return_stem=True,
            norm=norm,
            act=act,
        )
        if upsample_mode not in _UPSAMPLE_MODES:
            raise ValueError(f"upsample_mode must be one of {_UPSAMPLE_MODES}, got {upsample_mode!r}.")
        head_channels = max(self.channels[0] // 2, 1) if head_channels is None else int(head_channels)
        check_positive("LinkNet", head_channels=head_channels)
        n_levels = len(self.channels)
        # the input width of each stage: the stem for stage 0, the previous stage otherwise
        stage_inputs = (self.encoder.stem_channels,) + self.encoder.out_channels[:-1]
        self.decoders = nn.ModuleList(
            [
                LinkNetDecoderBlock(
                    spatial_dims,
                    self.encoder.out_channels[i],
                    stage_inputs[i],
                    stride=strides[i],
                    kernel_size=kernel_size,
                    upsample_mode=upsample_mode,
                    norm=norm,
                    act=act,
                )
                for i in reversed(range(n_levels))
            ]
        )
        stem_ch = self.encoder.stem_channels
        self.head = nn.Sequential(
            # undo the max-pool, then the stride-2 stem conv (paper: full-conv 3x3 /2, conv 3x3, full-conv 2x2 /2)
            _upsample_conv(spatial_dims, stem_ch, head_channels, 3, 2, upsample_mode, norm, act),
            ConvNormAct(spatial_dims, head_channels, head_channels, 3, norm, act, bias=False),
            _upsample_conv(
                spatial_dims, head_channels, out_channels, 2 if upsample_mode == "deconv" else 3, 2, upsample_mode,
                None, None,
            ),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> ``(B, out_channels, *S)`` logits."""
        self.check_input(x)
        # features[0] is the stem output (input of stage 0), features[i + 1] the output of stage i
        features = self.encoder(x)
        n_levels = len(features) - 1
        y = features[-1]
        for j, decoder in enumerate(self.decoders):
            # decoder j mirrors stage i = n_levels - 1 - j; add that stage's input, features[i]
            y = decoder(y) + features[n_levels - 1 - j]
        return self.head(y)
