"""Grayscale targets for reconstruction decoders (DDANet).

DDANet (Tomar et al., arXiv 2012.15245) trains a second decoder to reconstruct the grayscale version of the RGB input.
:class:`AppendGrayscaled` appends that grayscale image to the label as one extra channel, so that a trainer that calls
``loss_function(pred, label)`` (MONAI's ``SupervisedTrainer``) hands both targets to
:class:`~custom_nets.losses.ddanet.MaskAndReconstructionLoss`.

Grayscale uses the ITU-R BT.601 luma weights: ``Y = 0.299 R + 0.587 G + 0.114 B``. Apply it after the image has been
scaled to [0, 1] and after every spatial transform (so image and label share the grid); the grayscale channel then is
in [0, 1], a valid BCE target.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

__all__ = ["BT601_WEIGHTS", "AppendGrayscaled", "RGBToGrayscale"]

BT601_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R BT.601 luma weights of the R, G and B channels."""


class RGBToGrayscale(Transform):
    """Channel-first RGB ``(3, *S)`` -> grayscale ``(1, *S)`` float32 with the BT.601 weights.

    A one-channel image is returned as float32 unchanged (it already is grayscale); an image of another channel
    count (a dataset's own channels, not RGB) gives the mean of its channels. The result is a plain tensor (no
    metadata).
    """

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        img = torch.as_tensor(image)
        if isinstance(img, MetaTensor):
            img = img.as_tensor()
        img = img.to(torch.float32)
        if img.dim() < 2:
            raise ValueError(f"RGBToGrayscale expects a channel-first image (C, *spatial), got shape {tuple(img.shape)}.")
        if img.shape[0] == 1:
            return img.clone()
        if img.shape[0] != 3:  # not RGB (a dataset's own channels): their mean is the intensity image
            return img.mean(dim=0, keepdim=True)
        weights = torch.tensor(BT601_WEIGHTS, dtype=torch.float32, device=img.device)
        return torch.tensordot(weights, img, dims=([0], [0])).unsqueeze(0)


class AppendGrayscaled(MapTransform):
    """Append the grayscale version of ``data[image_key]`` to each ``data[key]`` as one more channel.

    ``label (C, *S)`` and ``image (3, *S)`` in [0, 1] -> ``label (C + 1, *S)`` float32 = ``[label, gray]``. The label's
    metadata (MetaTensor) is kept. The image is not modified.

    Args:
        keys: the label key(s) to extend.
        image_key: key of the channel-first RGB (or one-channel) image.
        allow_missing_keys: skip missing label keys instead of raising.

    Raises:
        KeyError: ``image_key`` missing.
        ValueError: image and label spatial shapes differ, or the image has neither 1 nor 3 channels.
    """

    def __init__(self, keys: KeysCollection, image_key: str = "image", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key
        self.to_gray = RGBToGrayscale()

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        if self.image_key not in d:
            raise KeyError(f"AppendGrayscaled: image key {self.image_key!r} not in the data (keys {list(d)}).")
        gray = self.to_gray(d[self.image_key])
        for key in self.key_iterator(d):
            label = d[key]
            label_t = label if isinstance(label, torch.Tensor) else torch.as_tensor(label)
            if tuple(label_t.shape[1:]) != tuple(gray.shape[1:]):
                raise ValueError(
                    f"AppendGrayscaled: label {key!r} spatial shape {tuple(label_t.shape[1:])} differs from image "
                    f"{self.image_key!r} spatial shape {tuple(gray.shape[1:])}; apply it after the spatial transforms."
                )
            d[key] = torch.cat([label_t.to(torch.float32), gray.to(label_t.device)], dim=0)
        return d
