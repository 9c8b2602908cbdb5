"""What the networks of :mod:`custom_nets.nets` share: the common part of the network contract
(:class:`SegmentationNetwork`), the networks built on a ResNet encoder (:class:`ResNetEncoderNetwork`), the input
and width checks, and the deep-supervision output (the blocks' shared pieces are in
:mod:`custom_nets.blocks.common`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import List

import torch
import torch.nn as nn

from custom_nets.blocks.common import DEFAULT_ACT, LINEAR_MODE, check_positive, check_spatial_dims, resize_to
from custom_nets.blocks.resnet import ResNetBlockType, ResNetEncoder

__all__ = ["ResNetEncoderNetwork", "SegmentationNetwork", "check_channels", "check_input_size", "stack_heads"]


def check_input_size(x: torch.Tensor, spatial_dims: int, divisor: int, net_name: str) -> None:
    """Raise a clear ``ValueError`` unless ``x`` is ``(B, C, *spatial)`` with every spatial size divisible by ``divisor``.

    Networks call this at the top of ``forward`` so that a bad patch size fails with a message naming the network,
    the offending sizes and the fix, instead of a shape mismatch deep inside a ``torch.cat``.
    """
    if x.dim() != spatial_dims + 2:
        raise ValueError(
            f"{net_name} expects a {spatial_dims + 2}-D input (batch, channel, {spatial_dims} spatial dims), "
            f"got shape {list(x.shape)}."
        )
    spatial = x.shape[2:]
    for size in spatial:
        if size % divisor != 0:
            raise ValueError(
                f"{net_name} needs every spatial size divisible by {divisor}, got {list(spatial)}; "
                f"pad or crop the input (e.g. DivisiblePadd(k={divisor})) or choose an ROI size that is a multiple "
                f"of {divisor}."
            )


def check_channels(channels: Sequence[int], min_levels: int, net_name: str) -> tuple[int, ...]:
    """Validate per-level widths and return them as a tuple."""
    channels = tuple(int(c) for c in channels)
    if len(channels) < min_levels:
        raise ValueError(f"{net_name} needs at least {min_levels} levels in `channels`, got {list(channels)}.")
    check_positive(net_name, channels=channels)
    return channels


def stack_heads(heads: List[torch.Tensor], size: List[int], mode: str) -> torch.Tensor:
    """The deep-supervision output of a network: ``heads`` (index 0 the final output, each ``(B, C, *S_k)``), each
    resized to ``size`` (interpolation ``mode``, ``align_corners=False``; a head already at ``size`` is kept as it
    is) and stacked along dim 1 -> ``(B, len(heads), C, *size)`` (MONAI's ``DynUNet`` convention, split again by
    :class:`~custom_nets.losses.deep_supervision.StackedDeepSupervisionLoss`)."""
    return torch.stack([resize_to(h, size, mode) for h in heads], dim=1)


class SegmentationNetwork(nn.Module):
    """The part of the network contract (``docs/design.md``, "Network conventions") that every network here shares.

    The constructor checks ``spatial_dims`` (one of ``supported_dims``) and the channel counts, and keeps them as
    :attr:`spatial_dims`, :attr:`in_channels` and :attr:`out_channels`, with the linear interpolation mode of the
    ``spatial_dims`` (:attr:`interp_mode`). A subclass sets :attr:`size_divisor` and starts ``forward`` with
    :meth:`check_input`, which refuses an input of the wrong rank or with a spatial size not divisible by it in one
    line naming the network (:func:`check_input_size`). No parameters, buffers or hooks of its own.

    Args:
        spatial_dims: number of spatial dimensions of the inputs.
        in_channels: input channels.
        out_channels: output channels.
        supported_dims: the ``spatial_dims`` the network supports.
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, out_channels: int, supported_dims: Sequence[int] = (1, 2, 3)
    ) -> None:
        super().__init__()
        name = type(self).__name__
        check_spatial_dims(spatial_dims, name, supported_dims)
        check_positive(name, in_channels=in_channels, out_channels=out_channels)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.interp_mode: str = LINEAR_MODE[spatial_dims]
        self.size_divisor = 1
        self.network_name: str = name

    @property
    def divisor(self) -> int:
        """Another name of :attr:`size_divisor` (LinkNet's and PSPNet's first one)."""
        return self.size_divisor

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a one-line ``ValueError`` unless ``x`` is ``(B, C, *S)`` with every size divisible by the divisor."""
        check_input_size(x, self.spatial_dims, self.size_divisor, self.network_name)


class ResNetEncoderNetwork(SegmentationNetwork):
    """A :class:`SegmentationNetwork` whose encoder is a :class:`~custom_nets.blocks.resnet.ResNetEncoder` (LinkNet,
    PSPNet): what such a network does with its encoder arguments, once.

    The constructor checks the stage widths (at least two stages) and the blocks per stage (one entry per stage;
    ``None`` means two, as in ResNet-18), builds :attr:`encoder` with the given per-stage strides and dilations, and
    sets :attr:`channels` and :attr:`size_divisor` (the output stride of the last stage). The subclass builds its
    decoder or head on ``self.encoder.out_channels`` and starts ``forward`` with :meth:`check_input`.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        channels: widths (``planes``) of the encoder stages.
        layers: residual blocks per stage, or ``None`` for two per stage.
        block: ``"basic"`` or ``"bottleneck"`` (or one of the two classes).
        strides: stride of each stage's first block (one per stage).
        dilations: dilation of each stage's blocks; default 1 everywhere.
        return_stem: the encoder also returns the stem output (first in its list).
        norm: MONAI norm name/tuple.
        act: MONAI activation name/tuple.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int],
        layers: Sequence[int] | None,
        block: str | ResNetBlockType,
        strides: Sequence[int],
        dilations: Sequence[int] | None = None,
        return_stem: bool = False,
        norm: str | tuple = "batch",
        act: str | tuple = DEFAULT_ACT,
    ) -> None:
        super().__init__(spatial_dims, in_channels, out_channels)
        name = self.network_name
        channels = check_channels(channels, 2, name)
        n_levels = len(channels)
        layers = (2,) * n_levels if layers is None else tuple(int(n) for n in layers)
        if len(layers) != n_levels:
            raise ValueError(f"{name} needs one entry of `layers` per level, got {list(layers)} for {n_levels}.")
        self.encoder = ResNetEncoder(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            block=block,
            layers=layers,
            channels=channels,
            strides=strides,
            dilations=dilations,
            return_stem=return_stem,
            norm=norm,
            act=act,
        )
        self.channels = channels
        self.size_divisor = self.encoder.output_strides[-1]
