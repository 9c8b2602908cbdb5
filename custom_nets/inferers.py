"""Inferers the bundles need beyond MONAI's.

:class:`NeighbourSliceInferer` runs a 2D network over a 3D volume slice by slice, like MONAI's ``SliceInferer`` with
whole slices, and can also feed it 2.5D stacks: slice ``k`` together with its neighbours ``k + o`` for ``o`` in
``offsets`` (clamped at the first and last slice), as the UW-Madison bundles are trained with
(:func:`custom_nets.convert.uwmadison.neighbour_slices`).

:class:`ForegroundSlidingWindowInferer` is MONAI's ``SlidingWindowInferer`` run on the box around the nonzero voxels
only (a skull-stripped BraTS volume is 70-85 % zero background), with the result pasted back into a full-size output.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer, SlidingWindowInferer
from monai.transforms.utils import generate_spatial_bounding_box
from monai.utils import convert_to_dst_type

__all__ = ["ForegroundSlidingWindowInferer", "NeighbourSliceInferer", "foreground_box"]


def _nonzero(x: torch.Tensor) -> torch.Tensor:
    return x != 0


def foreground_box(inputs: torch.Tensor, margin: int | Sequence[int] = 0) -> tuple[list[int], list[int]] | None:
    """``(start, end)`` of the smallest box holding every nonzero voxel of every item and channel of ``inputs``
    ``(B, C, *S)``, grown by ``margin`` voxels per side and clipped to the volume (MONAI's
    ``generate_spatial_bounding_box``); ``None`` when every voxel is zero."""
    any_nonzero = (torch.as_tensor(inputs) != 0).any(dim=0)  # (C, *S) -> union over the batch
    start, end = generate_spatial_bounding_box(any_nonzero, select_fn=_nonzero, margin=margin, allow_smaller=True)
    if not end or any(e <= s for s, e in zip(start, end)):
        return None
    return [int(s) for s in start], [int(e) for e in end]


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


class ForegroundSlidingWindowInferer(SlidingWindowInferer):
    """MONAI's :class:`~monai.inferers.SlidingWindowInferer` on the foreground box only, pasted back into the volume.

    The box is the smallest one holding every nonzero input voxel (any item of the batch, any channel), grown by
    ``margin`` voxels per side and clipped to the volume (:func:`foreground_box`). The sliding window runs on the
    cropped input exactly as ``SlidingWindowInferer`` would on the whole one (MONAI pads a crop smaller than the ROI
    with ``cval`` zeros, which is what lies outside the box anyway); every output voxel outside the box gets the
    network's background answer: per output channel, the median of the output over the all-zero input voxels inside
    the box (the margin guarantees there are some unless the box reaches every edge), or, with none there, of the
    network's output on one all-zero window. An input without a nonzero voxel is all background; an input whose box
    is the whole volume is the plain sliding window.

    On a skull-stripped scan this is the ordinary sliding window restricted to the head: the input there is
    identical, only windows lying wholly in the zero background are skipped (a BraTS volume of 240 x 240 x 155 has
    its brain in about 140 x 175 x 140 voxels, 0.42 of the volume). The preprocessing must keep the background
    exactly zero (``NormalizeIntensityd(nonzero=True)`` does).

    Args:
        roi_size, sw_batch_size, overlap, mode, ...: as :class:`~monai.inferers.SlidingWindowInferer`.
        margin: voxels added around the nonzero box on every side (default 8).
        crop_foreground: ``False`` makes this the plain ``SlidingWindowInferer`` (the reference path).

    Shapes: ``inputs (B, C, *S)``; returns ``(B, C_out, *S)`` (a MetaTensor with the input's metadata for a
    MetaTensor input, as MONAI's sliding window does). Networks whose output has another spatial size than their
    input (``SlidingWindowInferer``'s zoom support) run on the whole volume.
    """

    def __init__(self, roi_size: Sequence[int] | int, sw_batch_size: int = 1, overlap: Sequence[float] | float = 0.25,
                 mode: str = "constant", *args: Any, margin: int | Sequence[int] = 8, crop_foreground: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(roi_size, sw_batch_size, overlap, mode, *args, **kwargs)
        self.margin = margin
        self.crop_foreground = bool(crop_foreground)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not self.crop_foreground or inputs.ndim < 3:
            return super().__call__(inputs, network, *args, **kwargs)
        plain = inputs.as_tensor() if isinstance(inputs, MetaTensor) else torch.as_tensor(inputs)
        spatial = list(plain.shape[2:])
        box = foreground_box(plain, self.margin)
        if box is not None and box[0] == [0] * len(spatial) and box[1] == spatial:
            return super().__call__(inputs, network, *args, **kwargs)
        if box is None:  # nothing but background: one window of zeros says what background is
            box = ([0] * len(spatial), [min(r, s) for r, s in zip(self._roi(spatial), spatial)])
            crop = torch.zeros_like(plain[(slice(None), slice(None), *[slice(s, e) for s, e in zip(*box)])])
            inside = torch.ones_like(crop[:, :1], dtype=torch.bool)
        else:
            crop = plain[(slice(None), slice(None), *[slice(s, e) for s, e in zip(*box)])]
            inside = ~(crop != 0).any(dim=1, keepdim=True)  # (B, 1, *crop): all-zero input voxels
        region = (slice(None), slice(None), *[slice(s, e) for s, e in zip(*box)])
        cropped_out = super().__call__(crop, network, *args, **kwargs)

        def paste(out: torch.Tensor) -> torch.Tensor:
            out = out.as_tensor() if isinstance(out, MetaTensor) else out
            if list(out.shape[2:]) != list(crop.shape[2:]):
                raise _ZoomedOutput
            fill = self._background(out, inside, network, plain, args, kwargs)
            full = fill.reshape(*fill.shape, *([1] * len(spatial))).expand(*out.shape[:2], *spatial).clone()
            full[region] = out
            if isinstance(inputs, MetaTensor):
                meta = MetaTensor([]).copy_meta_from(inputs, copy_attr=False)
                full = convert_to_dst_type(full, meta, device=full.device)[0]
            return full

        try:
            if isinstance(cropped_out, torch.Tensor):
                return paste(cropped_out)
            if isinstance(cropped_out, dict):
                return {k: paste(v) for k, v in cropped_out.items()}
            return type(cropped_out)(paste(v) for v in cropped_out)
        except _ZoomedOutput:
            return super().__call__(inputs, network, *args, **kwargs)

    def _roi(self, spatial: Sequence[int]) -> list[int]:
        roi = [self.roi_size] * len(spatial) if isinstance(self.roi_size, int) else list(self.roi_size)
        return [s if r is None or int(r) <= 0 else int(r) for r, s in zip(roi, spatial)]

    def _background(self, out: torch.Tensor, inside: torch.Tensor | None, network: Callable[..., Any],
                    plain: torch.Tensor, args: tuple, kwargs: dict) -> torch.Tensor:
        """``(B, C_out)``: the output at all-zero input voxels (median per item and channel)."""
        if inside is not None and bool(inside.any()):
            values = []
            for b in range(out.shape[0]):
                mask = inside[b, 0].to(out.device)
                if not bool(mask.any()):
                    mask = inside[:, 0].any(dim=0).to(out.device)
                values.append(out[b][:, mask].median(dim=1).values)
            return torch.stack(values)
        zeros = torch.zeros(1, plain.shape[1], *self._roi(list(plain.shape[2:])), dtype=plain.dtype)
        background = super().__call__(zeros, network, *args, **kwargs)
        if not isinstance(background, torch.Tensor):
            background = next(iter(background.values())) if isinstance(background, dict) else background[0]
        background = background.as_tensor() if isinstance(background, MetaTensor) else background
        value = background.flatten(2).median(dim=2).values.to(out.device, out.dtype)  # (1, C_out)
        return value.expand(out.shape[0], -1)


class _ZoomedOutput(Exception):
    """The network's output has another spatial size than its input: no paste-back."""

