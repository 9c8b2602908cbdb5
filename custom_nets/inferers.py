"""Inferers the bundles need beyond MONAI's.

:class:`NeighbourSliceInferer` runs a 2D network over a 3D volume slice by slice, like MONAI's ``SliceInferer`` with
whole slices, and can also feed it 2.5D stacks: slice ``k`` together with its neighbours ``k + o`` for ``o`` in
``offsets`` (clamped at the first and last slice), as the UW-Madison bundles are trained with
(:func:`custom_nets.data.uwmadison.neighbour_slices`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import Inferer

__all__ = ["NeighbourSliceInferer"]


class NeighbourSliceInferer(Inferer):
    """Whole-slice inference of a 2D network on ``(B, C, X, Y, Z)`` volumes, optionally with 2.5D neighbour stacks.

    For every slice index ``k`` along ``spatial_dim`` the network gets the ``C`` channels of the slices
    ``clamp(k + o)`` for each ``o`` in ``offsets``, concatenated in that order (``C * len(offsets)`` channels; without
    ``offsets`` just slice ``k``, as ``SliceInferer(roi_size=(-1, -1))``). Slices are run in batches of
    ``sw_batch_size`` and the outputs ``(n, C_out, *slice)`` stacked back along ``spatial_dim``.

    Args:
        offsets: slice offsets of the 2.5D stack, e.g. ``(-2, 0, 2)``; ``None`` for single slices.
        spatial_dim: the slice axis among the spatial axes (0, 1 or 2; 2 = the last axis).
        sw_batch_size: slices per network call.

    Shapes: ``inputs (B, C, *S)`` with ``len(S) == 3``; returns ``(B, C_out, *S)`` (the network must keep the
    in-plane size, as the segmentation networks of :mod:`custom_nets.nets` do in eval mode).
    """

    def __init__(self, offsets: Sequence[int] | None = None, spatial_dim: int = 2, sw_batch_size: int = 16) -> None:
        super().__init__()
        if spatial_dim not in (0, 1, 2):
            raise ValueError(f"spatial_dim must be 0, 1 or 2, got {spatial_dim}")
        if sw_batch_size < 1:
            raise ValueError(f"sw_batch_size must be positive, got {sw_batch_size}")
        self.offsets = [0] if offsets is None else [int(o) for o in offsets]
        if not self.offsets:
            raise ValueError("offsets must hold at least one slice offset (or be None)")
        self.spatial_dim = spatial_dim
        self.sw_batch_size = int(sw_batch_size)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        if inputs.ndim != 5:
            raise ValueError(f"NeighbourSliceInferer needs (B, C, X, Y, Z) volumes, got shape {tuple(inputs.shape)}")
        axis = 2 + self.spatial_dim
        volume = torch.movedim(torch.as_tensor(inputs), axis, 2)  # (B, C, D, *slice)
        depth = volume.shape[2]
        outputs = []
        for b in range(volume.shape[0]):
            per_slice = []
            for start in range(0, depth, self.sw_batch_size):
                stacks = [
                    torch.cat([volume[b, :, min(max(k + o, 0), depth - 1)] for o in self.offsets], dim=0)
                    for k in range(start, min(start + self.sw_batch_size, depth))
                ]
                per_slice.append(torch.as_tensor(network(torch.stack(stacks), *args, **kwargs)))
            outputs.append(torch.movedim(torch.cat(per_slice, dim=0), 0, 1))  # (C_out, D, *slice)
        return torch.movedim(torch.stack(outputs), 2, axis)
