"""MultiResUNet building blocks: the MultiRes block and the residual path ("ResPath") on the skip connections.

Reference: Ibtehaz & Rahman, "MultiResUNet: Rethinking the U-Net architecture for multimodal biomedical image
segmentation", Neural Networks 121, 2020 (arXiv 1902.04049), Sec. 3 and Fig. 3-5; used as the backbone of DRRMSAN
(:mod:`custom_nets.nets.drrmsan`).

MultiRes block (:class:`MultiResBlock`), for a "U-Net width" ``U``: with ``W = alpha * U`` (``alpha = 1.67``), three
*chained* 3x3 convolutions with ``int(0.167 W)``, ``int(0.333 W)`` and ``int(0.5 W)`` filters (each conv + norm + act;
the second and third see the previous conv's output, so together they have the receptive fields of a 3x3, a 5x5 and a
7x7 conv) are concatenated, normalised and added to a 1x1-conv + norm shortcut of the block's input (projected to the
concatenation width); then an activation and a final norm. The output widths for ``U = 32, 64, 128, 256, 512`` are
51, 105, 212, 426 and 853 (:func:`multires_widths`).

ResPath (:class:`ResPath`): ``length`` residual steps on an encoder skip before it reaches the decoder, each step
``norm(act(conv3x3_norm_act(x) + conv1x1_norm(x)))`` (:class:`ResPathStep`); the first step projects the MultiRes
block width to ``U``, the following steps keep ``U``. MultiResUNet uses lengths 4, 3, 2, 1 from the shallowest skip to
the deepest, so that the skips crossing the largest semantic gap get the most processing.

Both blocks are generic over ``spatial_dims`` (1, 2 or 3; 3x3 means 3x3x3 in 3D). Both are post-activation residual
blocks with a 1x1-conv + norm projection shortcut followed by a norm, so they are
:class:`~custom_nets.blocks.residual.ProjectionResidualBlock` s that build only their body and that last norm.

Shapes: ``MultiResBlock``: ``(B, in_channels, *S)`` -> ``(B, out_channels, *S)`` with
``out_channels = sum(multires_widths(U, alpha))``; ``ResPath``: ``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from custom_nets.blocks.common import DEFAULT_ACT, ConvNormAct, norm_layer
from custom_nets.blocks.residual import ProjectionResidualBlock

__all__ = ["MultiResBlock", "ResPath", "ResPathStep", "multires_widths"]


def multires_widths(base_channels: int, alpha: float = 1.67) -> tuple[int, int, int]:
    """Filters of a MultiRes block's three chained convs: ``int(0.167 W), int(0.333 W), int(0.5 W)``, ``W = alpha U``.

    ``multires_widths(32) == (8, 17, 26)`` (total 51); totals for ``U = 64, 128, 256, 512``: 105, 212, 426, 853.

    Raises:
        ValueError: a width would be zero (``U`` too small for ``alpha``).
    """
    w = alpha * base_channels
    widths = (int(w * 0.167), int(w * 0.333), int(w * 0.5))
    if min(widths) < 1:
        raise ValueError(
            f"MultiRes block base_channels={base_channels} with alpha={alpha} gives conv widths {widths}; every width "
            "must be at least 1 (use base_channels >= 4 with alpha 1.67)."
        )
    return widths


class MultiResBlock(ProjectionResidualBlock):
    """MultiRes block (Ibtehaz & Rahman 2020): three chained 3x3 convs, concatenated, plus a 1x1 shortcut.

    ``y = norm_out(act(norm_cat(cat(a, b, c)) + shortcut(x)))`` with ``a = conv_1(x)``, ``b = conv_2(a)``,
    ``c = conv_3(b)`` (each conv + norm + act) and ``shortcut`` a 1x1 conv + norm to the concatenation width (a
    :class:`~custom_nets.blocks.residual.ProjectionResidualBlock`).

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        base_channels: the U-Net width ``U`` this block replaces; the widths follow :func:`multires_widths`.
        alpha: width multiplier (1.67 in the paper, matching the parameter count of a U-Net of width ``U``).
        kernel_size: kernel of the three chained convs (odd).
        norm: MONAI norm name/tuple, or ``None``.
        act: MONAI activation name/tuple.

    Attributes:
        widths: filters of the three convs.
        out_channels: ``sum(widths)``.

    Shapes: ``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        base_channels: int,
        alpha: float = 1.67,
        kernel_size: int = 3,
        norm: str | tuple | None = "batch",
        act: str | tuple = DEFAULT_ACT,
    ) -> None:
        widths = multires_widths(base_channels, alpha)
        super().__init__(spatial_dims, in_channels, sum(widths), kernel_size, norm, act, widths=widths)
        self.norm_out = norm_layer(norm, spatial_dims, self.out_channels)
        self.base_channels = base_channels
        self.widths = widths

    def build_body(self, norm: str | tuple | None, act: str | tuple, widths: tuple[int, int, int]) -> None:
        """The chained convs ``conv1``, ``conv2``, ``conv3`` of ``widths`` and the norm of their concatenation."""
        self.conv1 = ConvNormAct(self.spatial_dims, self.in_channels, widths[0], self.kernel_size, norm, act)
        self.conv2 = ConvNormAct(self.spatial_dims, widths[0], widths[1], self.kernel_size, norm, act)
        self.conv3 = ConvNormAct(self.spatial_dims, widths[1], widths[2], self.kernel_size, norm, act)
        self.norm_cat = norm_layer(norm, self.spatial_dims, self.out_channels)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> the normalised concatenation ``(B, out_channels, *S)``."""
        a = self.conv1(x)
        b = self.conv2(a)
        c = self.conv3(b)
        return self.norm_cat(torch.cat([a, b, c], dim=1))

    def finish(self, y: torch.Tensor) -> torch.Tensor:
        return self.norm_out(y)


class ResPathStep(ProjectionResidualBlock):
    """One residual step of a ResPath: ``norm(act(conv3x3_norm_act(x) + conv1x1_norm(x)))``, a
    :class:`~custom_nets.blocks.residual.ProjectionResidualBlock` (same arguments) whose body is one conv + norm + act.

    Shapes: ``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``.
    """

    def build_body(self, norm: str | tuple | None, act: str | tuple) -> None:
        """``conv`` (conv + norm + act) and the last ``norm``."""
        self.conv = ConvNormAct(self.spatial_dims, self.in_channels, self.out_channels, self.kernel_size, norm, act)
        self.norm = norm_layer(norm, self.spatial_dims, self.out_channels)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)

    def finish(self, y: torch.Tensor) -> torch.Tensor:
        return self.norm(y)


class ResPath(nn.Sequential):
    """ResPath (Ibtehaz & Rahman 2020): ``length`` :class:`ResPathStep` s, the first ``in -> out``, then ``out -> out``.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: channels of the encoder skip (the MultiRes block width).
        out_channels: channels handed to the decoder (``U`` in MultiResUNet).
        length: number of residual steps (4, 3, 2, 1 from the shallowest skip in MultiResUNet), at least 1.
        kernel_size: kernel of the convs of each step.
        norm: MONAI norm name/tuple, or ``None``.
        act: MONAI activation name/tuple.

    Shapes: ``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        length: int,
        kernel_size: int = 3,
        norm: str | tuple | None = "batch",
        act: str | tuple = DEFAULT_ACT,
    ) -> None:
        if length < 1:
            raise ValueError(f"ResPath length must be at least 1, got {length}.")
        steps = [
            ResPathStep(spatial_dims, in_channels if i == 0 else out_channels, out_channels, kernel_size, norm, act)
            for i in range(length)
        ]
        super().__init__(*steps)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.length = length
