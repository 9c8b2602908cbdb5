"""Resolution changes for encoder-decoder networks: a stride-2 conv down-sampler and a x2 interpolating up-sampler.

* :class:`Downsample`: ``k x k`` convolution with stride 2 ('same' padding, so ``n -> ceil(n / 2)``), optionally
  followed by a norm and an activation (a :class:`~custom_nets.blocks.common.ConvNormAct`, i.e. a MONAI
  ``Convolution``).
* :class:`Upsample`: x2 bi/trilinear interpolation (``align_corners=False``) and a 1x1 convolution to
  ``out_channels``. A MONAI ``UpSample`` in ``"nontrainable"`` mode whose 1x1 conv is applied *before* the
  interpolation (MONAI's ``pre_conv``): a 1x1 conv and a linear interpolation whose weights sum to one commute exactly
  (bias included), so this equals "interpolate, then 1x1 conv" while running the conv on ``2 ** spatial_dims`` times
  fewer voxels.
"""

from __future__ import annotations

from monai.networks.blocks import UpSample
from monai.networks.layers.factories import Conv

from custom_nets.blocks.common import DEFAULT_ACT, LINEAR_MODE, ConvNormAct, check_positive, check_spatial_dims

__all__ = ["Downsample", "Upsample"]


class Downsample(ConvNormAct):
    """Strided convolution halving every spatial size: ``(B, in_channels, *S)`` -> ``(B, out_channels, *ceil(S / 2))``.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: conv kernel (3 by default).
        stride: conv stride (2 by default).
        norm: MONAI norm name/tuple after the conv, or ``None`` for none.
        act: MONAI activation name/tuple after the norm, or ``None`` for none. With ``norm=None`` and ``act=None`` the
            module is a plain (biased) strided conv, as used in front of pre-activation blocks.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 2,
        norm: str | tuple | None = "batch",
        act: str | tuple | None = DEFAULT_ACT,
    ) -> None:
        super().__init__(spatial_dims, in_channels, out_channels, kernel_size, norm, act, strides=stride)


class Upsample(UpSample):
    """x2 bi/trilinear up-sampling with a 1x1 conv: ``(B, in_channels, *S)`` -> ``(B, out_channels, *2S)``.

    The interpolation mode follows ``spatial_dims`` (linear/bilinear/trilinear), with ``align_corners=False``. The 1x1
    conv is always present (also when ``in_channels == out_channels``) and is evaluated before the interpolation, which
    is mathematically identical to evaluating it after (see the module docstring).

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        scale_factor: up-sampling factor (2 by default).
        bias: whether the 1x1 conv has a bias.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, scale_factor: int = 2, bias: bool = True
    ) -> None:
        check_spatial_dims(spatial_dims, "Upsample")
        check_positive("Upsample", in_channels=in_channels, out_channels=out_channels)
        super().__init__(
            spatial_dims,
            in_channels,
            out_channels,
            scale_factor=scale_factor,
            mode="nontrainable",
            pre_conv=Conv[Conv.CONV, spatial_dims](in_channels, out_channels, kernel_size=1, bias=bias),
            interp_mode=LINEAR_MODE[spatial_dims],
            align_corners=False,
        )
        self.in_channels = in_channels
        self.out_channels = out_channels
