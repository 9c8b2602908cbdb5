"""The intensity normalisation of a task's images, chosen from what the dataset declares.

One place decides it for every bundle (MONAI has the transforms, not the choice):

- RGB images (channel names R, G, B): 0-255 scaled to 0-1;
- volumes (3D): z-score per channel over the nonzero voxels (nnU-Net's choice for skull-stripped MR; BraTS);
- other 2D images (grayscale, 16-bit, stacks of slices): the image's [0, 99.8] percentile range scaled to 0-1, over
  all channels together (robust to scanners' unknown ranges; neighbouring slices keep their relative contrast).

With a plan (:mod:`custom_nets.planning`), each channel takes the plan's scheme instead: ``ct`` (clip to the
dataset's foreground percentiles, subtract its mean, divide by its std), ``zscore``, ``zscore_nonzero`` or ``rgb``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import (
    MapTransform,
    NormalizeIntensity,
    NormalizeIntensityd,
    ScaleIntensityRange,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
)

__all__ = ["PlannedNormalized", "intensity_normalization"]

SCHEMES = ("ct", "zscore", "zscore_nonzero", "rgb")


def _channel_transform(entry: Mapping[str, Any]):
    """MONAI's array transform for one channel's planned scheme."""
    scheme = entry["scheme"]
    if scheme == "ct":
        low, high = entry["clip"]
        return lambda x: NormalizeIntensity(subtrahend=entry["mean"], divisor=entry["std"])(x.clamp(low, high))
    if scheme in ("zscore", "zscore_nonzero"):
        return NormalizeIntensity(nonzero=scheme == "zscore_nonzero")
    if scheme == "rgb":
        return ScaleIntensityRange(a_min=0, a_max=255, b_min=0.0, b_max=1.0, clip=True)
    raise ValueError(f"unknown normalisation scheme {scheme!r}; expected one of {', '.join(SCHEMES)}")


class PlannedNormalized(MapTransform):
    """Each channel of ``keys`` normalised by its own scheme of a plan's ``normalization`` list (MONAI's transforms
    apply one scheme to every channel). Input and output: (C, *spatial), one entry per channel."""

    def __init__(self, keys: KeysCollection, normalization: Sequence[Mapping[str, Any]],
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.channels = [_channel_transform(entry) for entry in normalization]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            if image.shape[0] != len(self.channels):
                raise ValueError(f"{key} has {image.shape[0]} channels; the plan normalises {len(self.channels)}")
            image = image.float() if isinstance(image, torch.Tensor) else image.astype("float32")
            out = [t(image[c : c + 1]) for c, t in enumerate(self.channels)]
            d[key] = torch.cat(out, 0) if isinstance(image, torch.Tensor) else np.concatenate(out, 0)
        return d


def intensity_normalization(task: Any, keys: str = "image", plan: Mapping[str, Any] | None = None):
    """The MONAI dictionary transform that normalises ``keys`` for ``task`` (a :class:`custom_nets.data.Task`), by
    ``plan``'s per-channel schemes when a plan is given."""
    from custom_nets.data.dataset import is_rgb

    if plan:
        return PlannedNormalized(keys=keys, normalization=plan["normalization"])
    if is_rgb(task.channel_names):
        return ScaleIntensityRanged(keys=keys, a_min=0, a_max=255, b_min=0.0, b_max=1.0, clip=True)
    if task.spatial_dims == 3:
        return NormalizeIntensityd(keys=keys, nonzero=True, channel_wise=True)
    return ScaleIntensityRangePercentilesd(keys=keys, lower=0.0, upper=99.8, b_min=0.0, b_max=1.0, clip=True,
                                           channel_wise=False)
