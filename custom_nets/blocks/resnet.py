"""Residual encoder blocks (basic and bottleneck) with dilation support, and a generic ResNet feature encoder.

Reference: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016 (arXiv 1512.03385), for the basic and
bottleneck blocks and the stem; Yu et al., "Dilated Residual Networks" (arXiv 1705.09914) / Zhao et al., "Pyramid Scene
Parsing Network" (arXiv 1612.01105) for replacing the stride of the last stages by dilation.

What is reused from MONAI and why
---------------------------------
:mod:`monai.networks.nets.resnet` provides ``ResNetBlock`` (basic) and ``ResNetBottleneck`` which are generic over
``spatial_dims``, configurable in norm/activation, TorchScript-scriptable, and whose stride sits where we want it (on
the first 3x3 conv of the basic block and on the 3x3 conv of the bottleneck, the "ResNet v1.5" placement). They lack
two things this package needs:

* **dilation** (PSPNet runs its last two stages at stride 1 with dilation 2 and 4). MONAI hard-codes ``padding=1`` and
  no dilation in the 3x3 convs;
* building the **projection shortcut** themselves (MONAI's ``ResNet._make_layer`` builds it outside the block).

:class:`ResNetBasicBlock` and :class:`ResNetBottleneckBlock` therefore *subclass* the MONAI blocks: they build the
1x1-conv + norm projection shortcut when the stride or the width changes, call the MONAI constructor, and only when
``dilation > 1`` swap the 3x3 convs for dilated ones (``padding = dilation`` keeps the size). The forward pass is
MONAI's, unchanged. The attribute names (``conv1``, ``bn1``, ..., ``downsample``) are therefore MONAI's too.

``monai.networks.nets.ResNet``/``ResNetFeatures`` are not used as the encoder: their stages are fixed to four with
strides (1, 2, 2, 2), no dilation, ``ResNet.forward`` returns only the pooled vector, ``ResNetFeatures`` is tied to the
named MedicalNet configurations, and the zero-padding "A" shortcut of ``resnet18`` is not a projection.
:class:`ResNetEncoder` builds any number of stages from a block type, blocks per stage, widths and per-stage
stride/dilation, and returns every stage's output (a ``List[Tensor]``, scriptable).

Shapes: ``ResNetEncoder(spatial_dims=3, in_channels=C, channels=(64, 128, 256, 512), strides=(1, 2, 2, 2))`` maps
``(B, C, D, H, W)`` to ``[(B, 64e, D/4, H/4, W/4), (B, 128e, D/8, ...), (B, 256e, D/16, ...), (B, 512e, D/32, ...)]``
with ``e`` the block expansion (1 basic, 4 bottleneck); the stem (conv k7 stride 2 + max-pool stride 2) divides by 4.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Dict, List, Tuple, Union

import torch
import torch.nn as nn
from monai.networks.layers.factories import Conv, Pool
from monai.networks.layers.utils import get_act_layer, get_norm_layer
from monai.networks.nets.resnet import ResNetBlock, ResNetBottleneck

from custom_nets.blocks.common import DEFAULT_ACT, check_positive, check_spatial_dims

__all__ = ["ResNetBasicBlock", "ResNetBottleneckBlock", "ResNetEncoder", "get_resnet_block"]


def _projection(
    spatial_dims: int, in_channels: int, out_channels: int, stride: int, norm: str | tuple
) -> nn.Module | None:
    """The 1x1-conv + norm shortcut (He et al. option B), or ``None`` when the identity fits."""
    if stride == 1 and in_channels == out_channels:
        return None
    conv_type = Conv[Conv.CONV, spatial_dims]
    return nn.Sequential(
        conv_type(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
        get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=out_channels),
    )


class _DilatedBlock:
    """The constructor both residual blocks share: checks, projection shortcut, MONAI's constructor, dilated 3x3 convs.

    Mixed in front of a MONAI block class (``ResNetBlock`` or ``ResNetBottleneck``), which it calls with
    ``super().__init__``. The two blocks differ only in which 3x3 convs become dilated: a subclass lists them in
    :meth:`_dilated_convs` as ``{attribute: (in_channels, stride)}`` (output width ``planes``, kernel 3,
    ``padding = dilation``); they replace MONAI's convs in place, so the parameter names stay MONAI's.
    """

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        spatial_dims: int = 3,
        stride: int = 1,
        dilation: int = 1,
        norm: str | tuple = "batch",
        act: str | tuple = DEFAULT_ACT,
    ) -> None:
        check_positive(type(self).__name__, in_channels=in_channels, planes=planes)
        if stride < 1 or dilation < 1:
            raise ValueError(f"stride and dilation must be >= 1, got stride={stride}, dilation={dilation}.")
        downsample = _projection(spatial_dims, in_channels, planes * self.expansion, stride, norm)
        super().__init__(  # type: ignore[call-arg]  # the MONAI block class that follows in the MRO
            in_planes=in_channels,
            planes=planes,
            spatial_dims=spatial_dims,
            stride=stride,
            downsample=downsample,
            act=act,
            norm=norm,
        )
        if dilation != 1:
            conv_type = Conv[Conv.CONV, spatial_dims]
            for name, (conv_in, conv_stride) in self._dilated_convs(in_channels, planes, stride).items():
                conv = conv_type(
                    conv_in, planes, kernel_size=3, stride=conv_stride, padding=dilation, dilation=dilation, bias=False
                )
                setattr(self, name, conv)
        self.in_channels = in_channels
        self.out_channels = planes * self.expansion
        self.dilation = dilation

    @staticmethod
    def _dilated_convs(in_channels: int, planes: int, stride: int) -> Dict[str, Tuple[int, int]]:
        raise NotImplementedError


class ResNetBasicBlock(_DilatedBlock, ResNetBlock):
    """Basic residual block: conv3-norm-act, conv3-norm, + shortcut, act (He et al. 2016, Fig. 5 left).

    A subclass of MONAI's ``ResNetBlock`` that adds ``dilation`` (applied to both 3x3 convs) and builds the projection
    shortcut itself. Output: ``(B, planes, *ceil(spatial / stride))``.

    Args:
        in_channels: input channels.
        planes: output channels (``expansion`` is 1).
        spatial_dims: 1, 2 or 3.
        stride: stride of the first 3x3 conv (and of the projection shortcut).
        dilation: dilation of both 3x3 convs; padding follows so that only ``stride`` changes the size.
        norm: MONAI norm name/tuple, e.g. ``"batch"``, ``("group", {"num_groups": 8})``, ``"instance"``.
        act: MONAI activation name/tuple.
    """

    expansion = 1

    @staticmethod
    def _dilated_convs(in_channels: int, planes: int, stride: int) -> Dict[str, Tuple[int, int]]:
        return {"conv1": (in_channels, stride), "conv2": (planes, 1)}


class ResNetBottleneckBlock(_DilatedBlock, ResNetBottleneck):
    """Bottleneck residual block: conv1-norm-act, conv3 (stride, dilation)-norm-act, conv1 (x4)-norm, + shortcut, act.

    A subclass of MONAI's ``ResNetBottleneck`` (He et al. 2016, Fig. 5 right, stride on the 3x3 conv) that adds
    ``dilation`` to the 3x3 conv and builds the projection shortcut itself.
    Output: ``(B, 4 * planes, *ceil(spatial / stride))``.

    Args:
        in_channels: input channels.
        planes: width of the bottleneck; the block outputs ``expansion * planes = 4 * planes`` channels.
        spatial_dims: 1, 2 or 3.
        stride: stride of the 3x3 conv (and of the projection shortcut).
        dilation: dilation of the 3x3 conv.
        norm: MONAI norm name/tuple.
        act: MONAI activation name/tuple.
    """

    expansion = 4

    @staticmethod
    def _dilated_convs(in_channels: int, planes: int, stride: int) -> Dict[str, Tuple[int, int]]:
        return {"conv2": (planes, stride)}


ResNetBlockType = Union[type[ResNetBasicBlock], type[ResNetBottleneckBlock]]


def get_resnet_block(block: str | ResNetBlockType) -> ResNetBlockType:
    """Map ``"basic"``/``"bottleneck"`` (or one of the two classes) to the block class."""
    if isinstance(block, str):
        name = block.lower()
        if name == "basic":
            return ResNetBasicBlock
        if name == "bottleneck":
            return ResNetBottleneckBlock
        raise ValueError(f"unknown residual block {block!r}; use 'basic' or 'bottleneck'.")
    if block in (ResNetBasicBlock, ResNetBottleneckBlock):
        return block
    raise ValueError(f"unsupported residual block {block!r}; use 'basic', 'bottleneck' or one of their classes.")


class ResNetEncoder(nn.Module):
    """ResNet feature encoder: stem (conv + norm + act [+ max-pool]) followed by residual stages.

    Stage ``i`` stacks ``layers[i]`` blocks of width ``channels[i]`` (output ``channels[i] * block.expansion``); its
    first block carries ``strides[i]`` and every block of the stage uses ``dilations[i]``. ``forward`` returns the
    list of all stage outputs, shallowest first. With the defaults (ResNet-18: basic blocks, (2, 2, 2, 2),
    (64, 128, 256, 512), strides (1, 2, 2, 2)) the stage outputs have strides 4, 8, 16, 32 w.r.t. the input.
    ResNet-50 is ``block="bottleneck", layers=(3, 4, 6, 3)``; the dilated ResNet-50 of PSPNet adds
    ``strides=(1, 2, 1, 1), dilations=(1, 1, 2, 4)`` (output stride 8).

    Convolution sizes use ``ceil`` arithmetic (``ceil(n / 2)`` per stride-2 layer); inputs divisible by
    :attr:`output_strides` ``[-1]`` give exactly ``n / stride`` at every stage.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        block: ``"basic"``, ``"bottleneck"`` or one of :class:`ResNetBasicBlock`, :class:`ResNetBottleneckBlock`.
        layers: number of blocks per stage.
        channels: width (``planes``) per stage.
        strides: stride of the first block of each stage.
        dilations: dilation of every block of each stage.
        stem_channels: output channels of the stem conv; default ``channels[0]``.
        stem_kernel_size: kernel of the stem conv (7 in ResNet).
        stem_stride: stride of the stem conv (2 in ResNet).
        stem_pool: whether the stem ends with a 3x3 max-pool of stride 2.
        return_stem: if True, ``forward`` also returns the stem output (the input of the first stage, after the
            max-pool) as the first list entry, for decoders that link every stage's input (LinkNet).
        norm: MONAI norm name/tuple used everywhere.
        act: MONAI activation name/tuple used everywhere.

    Attributes:
        out_channels: channels of each stage output.
        output_strides: cumulative stride of each stage output w.r.t. the input.
        stem_channels: channels of the stem output.
        stem_output_stride: cumulative stride of the stem output (conv stride, x 2 if ``stem_pool``).
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        block: str | ResNetBlockType = "basic",
        layers: Sequence[int] = (2, 2, 2, 2),
        channels: Sequence[int] = (64, 128, 256, 512),
        strides: Sequence[int] = (1, 2, 2, 2),
        dilations: Sequence[int] | None = None,
        stem_channels: int | None = None,
        stem_kernel_size: int = 7,
        stem_stride: int = 2,
        stem_pool: bool = True,
        return_stem: bool = False,
        norm: str | tuple = "batch",
        act: str | tuple = DEFAULT_ACT,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, "ResNetEncoder")
        block_type = get_resnet_block(block)
        layers = tuple(int(n) for n in layers)
        channels = tuple(int(c) for c in channels)
        strides = tuple(int(s) for s in strides)
        dilations = (1,) * len(channels) if dilations is None else tuple(int(d) for d in dilations)
        n_stages = len(channels)
        if n_stages == 0 or not len(layers) == len(strides) == len(dilations) == n_stages:
            raise ValueError(
                "layers, channels, strides and dilations need one entry per stage (at least one stage), got "
                f"layers={list(layers)}, channels={list(channels)}, strides={list(strides)}, "
                f"dilations={list(dilations)}."
            )
        if any(n < 1 for n in layers):
            raise ValueError(f"every stage needs at least one block, got layers={list(layers)}.")
        check_positive("ResNetEncoder", in_channels=in_channels, channels=channels)
        if any(s < 1 for s in strides) or any(d < 1 for d in dilations) or stem_stride < 1:
            raise ValueError(f"strides and dilations must be >= 1, got strides={strides}, dilations={dilations}.")

        stem_channels = channels[0] if stem_channels is None else int(stem_channels)
        conv_type = Conv[Conv.CONV, spatial_dims]
        stem: List[nn.Module] = [
            conv_type(
                in_channels,
                stem_channels,
                kernel_size=stem_kernel_size,
                stride=stem_stride,
                padding=stem_kernel_size // 2,
                bias=False,
            ),
            get_norm_layer(name=norm, spatial_dims=spatial_dims, channels=stem_channels),
            get_act_layer(name=act),
        ]
        if stem_pool:
            stem.append(Pool[Pool.MAX, spatial_dims](kernel_size=3, stride=2, padding=1))
        self.stem = nn.Sequential(*stem)

        stages: List[nn.Module] = []
        out_channels: List[int] = []
        output_strides: List[int] = []
        total_stride = stem_stride * (2 if stem_pool else 1)
        width = stem_channels
        for n_blocks, planes, stride, dilation in zip(layers, channels, strides, dilations):
            blocks: List[nn.Module] = []
            for b in range(n_blocks):
                blocks.append(
                    block_type(
                        in_channels=width,
                        planes=planes,
                        spatial_dims=spatial_dims,
                        stride=stride if b == 0 else 1,
                        dilation=dilation,
                        norm=norm,
                        act=act,
                    )
                )
                width = planes * block_type.expansion
            stages.append(nn.Sequential(*blocks))
            total_stride *= stride
            out_channels.append(width)
            output_strides.append(total_stride)
        self.stages = nn.ModuleList(stages)
        self.in_channels = in_channels
        self.spatial_dims = spatial_dims
        self.return_stem = return_stem
        self.stem_channels = stem_channels
        self.stem_output_stride = stem_stride * (2 if stem_pool else 1)
        self.out_channels = tuple(out_channels)
        self.output_strides = tuple(output_strides)

        # He initialisation as in torchvision/MONAI ResNets; norms start at identity (PyTorch default)
        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """``(B, in_channels, *spatial)`` -> list of ``(B, out_channels[i], *spatial / output_strides[i])``.

        With ``return_stem`` the list starts with the stem output ``(B, stem_channels, *spatial / stem_output_stride)``.
        """
        x = self.stem(x)
        features: List[torch.Tensor] = []
        if self.return_stem:
            features.append(x)
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features
