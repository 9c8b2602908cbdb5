"""The first check of every image a bundle reads: the channels and dimensions its network was trained on."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, SqueezeDim

__all__ = ["TaskInputd"]


def _source(image: Any, key: Hashable) -> str:
    meta = getattr(image, "meta", None) or {}
    return str(meta.get("filename_or_obj") or key)


class TaskInputd(MapTransform):
    """Check that channel-first images fit a task: ``task.in_channels`` channels (one for ``label_keys``) and
    ``task.spatial_dims`` spatial axes; a 2D image stored as a one-slice volume loses that slice axis.

    MONAI has no such check: a wrong input otherwise ends deep inside the network (a convolution's channel error) or
    in a loss's shape error. Here it fails on reading with one line naming the file, what it holds and what the model
    takes, e.g. ``case.nii.gz: 1 channel, but the model takes 4 (FLAIR, T1, T1ce, T2) in one image``.

    The one-slice case is how 3D Slicer saves a 2D study's labels (its default ``.nii.gz``: a ``(W, H, 1)`` volume),
    so ``(C, W, H, 1)`` becomes ``(C, W, H)`` when the task is 2D (MONAI's :class:`~monai.transforms.SqueezeDim`),
    with the metadata of a 2D image as MONAI's PIL reader gives it: the same ``spatial_shape`` length and affine
    size, so such labels and PNG labels batch together.

    Args:
        keys: the image (and label) keys, after ``EnsureChannelFirstd``: ``(C, *spatial)``.
        task: a :class:`custom_nets.data.Task` (``channel_names``, ``spatial_dims``).
        label_keys: keys holding a label map (one channel).
    """

    def __init__(self, keys: KeysCollection, task: Any, label_keys: Sequence[str] | str = ("label",),
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.channel_names = tuple(task.channel_names)
        self.spatial_dims = int(task.spatial_dims)
        self.label_keys = {label_keys} if isinstance(label_keys, str) else set(label_keys)
        self.squeeze = SqueezeDim(dim=-1, update_meta=False)  # the affine keeps its size, as a 2D reader's

    def check(self, image: torch.Tensor, key: Hashable) -> torch.Tensor:
        """``image`` ``(C, *spatial)`` fitted to the task (a trailing one-slice axis dropped), or ``ValueError``."""
        if image.ndim == self.spatial_dims + 2 and image.shape[-1] == 1:
            image = self.squeeze(image)
            meta = getattr(image, "meta", None)
            if meta is not None and "spatial_shape" in meta:
                meta["spatial_shape"] = np.asarray(meta["spatial_shape"])[: self.spatial_dims]
        spatial = tuple(image.shape[1:])
        if len(spatial) != self.spatial_dims:
            raise ValueError(f"{_source(image, key)}: a {len(spatial)}D image of size {spatial}, but the model takes "
                             f"{self.spatial_dims}D images")
        channels = image.shape[0]
        if key in self.label_keys:
            if channels != 1:
                raise ValueError(f"{_source(image, key)}: a label with {channels} channels, but the model takes one "
                                 "label map (integer values, background 0)")
        elif channels != len(self.channel_names):
            raise ValueError(
                f"{_source(image, key)}: {channels} channel{'s' * (channels != 1)}, but the model takes "
                f"{len(self.channel_names)} ({', '.join(self.channel_names)}) in one image"
            )
        return image

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.check(d[key], key)
        return d
