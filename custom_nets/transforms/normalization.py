"""The intensity normalisation of a task's images, chosen from what the dataset declares.

One place decides it for every bundle (MONAI has the transforms, not the choice):

- RGB images (channel names R, G, B): 0-255 scaled to 0-1;
- volumes (3D): z-score per channel over the nonzero voxels (nnU-Net's choice for skull-stripped MR; BraTS);
- other 2D images (grayscale, 16-bit, stacks of slices): the image's [0, 99.8] percentile range scaled to 0-1, over
  all channels together (robust to scanners' unknown ranges; neighbouring slices keep their relative contrast).
"""

from __future__ import annotations

from typing import Any

from monai.transforms import NormalizeIntensityd, ScaleIntensityRanged, ScaleIntensityRangePercentilesd

__all__ = ["intensity_normalization"]


def intensity_normalization(task: Any, keys: str = "image"):
    """The MONAI dictionary transform that normalises ``keys`` for ``task`` (a :class:`custom_nets.data.Task`)."""
    from custom_nets.data.dataset import is_rgb

    if is_rgb(task.channel_names):
        return ScaleIntensityRanged(keys=keys, a_min=0, a_max=255, b_min=0.0, b_max=1.0, clip=True)
    if task.spatial_dims == 3:
        return NormalizeIntensityd(keys=keys, nonzero=True, channel_wise=True)
    return ScaleIntensityRangePercentilesd(keys=keys, lower=0.0, upper=99.8, b_min=0.0, b_max=1.0, clip=True,
                                           channel_wise=False)
