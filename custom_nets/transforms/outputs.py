"""Transforms on network outputs."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

__all__ = ["SelectFinalOutputd"]


class SelectFinalOutputd(MapTransform):
    """Keep only the final output of a deeply supervised prediction.

    Deeply supervised nets in :mod:`custom_nets.nets` return, in training mode, one stacked tensor
    ``(heads, C, *spatial)`` per sample (index 0 is the final output). Metrics and images need ``(C, *spatial)``;
    a prediction that already has ``reference_ndim`` dimensions passes unchanged.
    """

    def __init__(self, keys: KeysCollection, reference_ndim: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.reference_ndim = reference_ndim

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            if d[key].ndim == self.reference_ndim + 1:
                d[key] = d[key][0]
        return d
