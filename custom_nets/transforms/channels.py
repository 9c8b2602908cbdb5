"""Channel-count adapters for inputs whose channels differ from what a network was trained on."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["RepeatChannelsd"]


class RepeatChannelsd(MapTransform):
    """Make a channel-first image have ``channels`` channels: pass it on if it has them, repeat a single channel.

    Used where a 2D network trained on multi-channel slices (e.g. LGG's pre-contrast / FLAIR / post-contrast) is
    applied to single-channel volumes. Any other channel count is an error naming the file.
    """

    def __init__(self, keys: KeysCollection, channels: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.channels = channels

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            if image.shape[0] == self.channels:
                continue
            if image.shape[0] != 1:
                source = getattr(image, "meta", {}).get("filename_or_obj", key)
                raise ValueError(
                    f"{source}: has {image.shape[0]} channels; the network takes {self.channels} (or 1, repeated)"
                )
            d[key] = image.repeat(self.channels, *([1] * (image.ndim - 1)))
        return d
