"""Pyramid pooling module (PPM) of PSPNet, generic over 1-3 spatial dims.

Reference: Zhao et al., "Pyramid Scene Parsing Network", CVPR 2017 (arXiv 1612.01105), Sec. 3.2 and Fig. 3(c);
used in 3D for brain tumours in "Utilizing Attention, Linked Blocks, and Pyramid Pooling to Propel Brain Tumor
Segmentation in 3D".

For every bin size ``b`` the input is average-pooled to a ``b x ... x b`` grid (adaptive pooling, so any feature size
works, even one smaller than ``b``), reduced by a 1x1 conv + norm + activation to ``branch_channels`` channels and
interpolated (bi/trilinear) back to the input size; the branches are concatenated after the input itself.

``(B, in_channels, *S)`` -> ``(B, in_channels + len(bins) * branch_channels, *S)``; with the paper's defaults
(``bins=(1, 2, 3, 6)``, ``branch_channels = in_channels // len(bins)``) the output has ``2 * in_channels`` channels.

MONAI's ``SimpleASPP`` is atrous spatial pyramid pooling (parallel dilated convs, DeepLab), not this module.

Normalisation of the global (bin 1) branch
------------------------------------------
The bin-1 branch holds a single voxel per channel and sample. BatchNorm there normalises over the batch only: with
batch size 1 in training it raises "Expected more than 1 value per channel", and with a larger batch the global
context of one sample becomes a function of the others. InstanceNorm of a single voxel fails at any batch size.
So every branch whose pooled grid is a single voxel (``b == 1``) uses **no norm and a conv bias** (conv + act);
the other branches use ``norm``. This is deterministic, works for every batch size and every ``norm`` choice, and
costs ``branch_channels`` extra bias parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers.factories import Pool

from custom_nets.blocks.common import DEFAULT_ACT, LINEAR_MODE, ConvNormAct, check_positive, check_spatial_dims

__all__ = ["PyramidPooling"]


class PyramidPooling(nn.Module):
    """Pyramid pooling module: ``concat(x, up(conv1x1(avgpool_b(x))) for b in bins)``.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: channels of the input features.
        bins: output grid size of each adaptive average pooling (the paper's 1, 2, 3, 6).
        reduction_channels: channels of each branch; default ``max(in_channels // len(bins), 1)``.
        norm: MONAI norm name/tuple of the 1x1 convs (not applied to the bin-1 branch, see the module docstring).
        act: MONAI activation name/tuple of the 1x1 convs.
        align_corners: passed to the interpolation back to the input size.

    Attributes:
        branch_channels: channels of each pooled branch.
        out_channels: ``in_channels + len(bins) * branch_channels``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        bins: Sequence[int] = (1, 2, 3, 6),
        reduction_channels: int | None = None,
        norm: str | tuple | None = "batch",
        act: str | tuple | None = DEFAULT_ACT,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, "PyramidPooling")
        bins = tuple(int(b) for b in bins)
        if len(bins) == 0 or any(b < 1 for b in bins):
            raise ValueError(f"PyramidPooling bins must be a non-empty sequence of positive ints, got {list(bins)}.")
        branch_channels = max(in_channels // len(bins), 1) if reduction_channels is None else int(reduction_channels)
        check_positive("PyramidPooling", in_channels=in_channels, reduction_channels=branch_channels)

        pool_type = Pool[Pool.ADAPTIVEAVG, spatial_dims]
        branches: List[nn.Module] = []
        for b in bins:
            # a single-voxel grid gets no norm (and so a conv bias), see the module docstring
            conv = ConvNormAct(spatial_dims, in_channels, branch_channels, 1, norm=None if b == 1 else norm, act=act)
            branches.append(nn.Sequential(pool_type(b), conv))
        self.branches = nn.ModuleList(branches)
        self.bins = bins
        self.in_channels = in_channels
        self.branch_channels = branch_channels
        self.out_channels = in_channels + len(bins) * branch_channels
        self.mode = LINEAR_MODE[spatial_dims]
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``."""
        size = x.shape[2:]
        outputs: List[torch.Tensor] = [x]
        for branch in self.branches:
            y = branch(x)
            outputs.append(F.interpolate(y, size=size, mode=self.mode, align_corners=self.align_corners))
        return torch.cat(outputs, dim=1)
