"""Multi-label (one binary channel per class, classes may overlap) outputs to one label map, and 2.5D naming."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

__all__ = ["CentreSliceSourced", "MultiLabelToLabelMapd", "multilabel_to_label_map"]


def multilabel_to_label_map(pred: torch.Tensor) -> torch.Tensor:
    """``(C, *spatial)`` channels (set where ``> 0``) -> ``uint8`` label map ``(*spatial)``: value ``c + 1`` where
    channel ``c`` is set, 0 elsewhere; where channels overlap the **later** channel wins."""
    channels = torch.as_tensor(pred.as_tensor() if isinstance(pred, MetaTensor) else pred) > 0
    label = torch.zeros(channels.shape[1:], dtype=torch.uint8, device=channels.device)
    for c in range(channels.shape[0]):
        label[channels[c]] = c + 1
    return label


class MultiLabelToLabelMapd(MapTransform):
    """``(C, *spatial)`` binary channels -> ``(1, *spatial)`` ``uint8`` label map: value ``c + 1`` where channel ``c``
    is set, 0 elsewhere.

    Where channels overlap, the **later** channel wins (for the UW-Madison order large bowel, small bowel, stomach:
    stomach over small bowel over large bowel), the rule of :mod:`custom_nets.inference` for multi-channel outputs.
    A MetaTensor keeps its metadata (affine, file name), so ``SaveImaged`` writes the map with the input's geometry.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            pred = d[key]
            label = multilabel_to_label_map(pred)[None]
            if isinstance(pred, MetaTensor):
                label = MetaTensor(label, meta=dict(pred.meta), applied_operations=list(pred.applied_operations))
            d[key] = label
        return d


class CentreSliceSourced(MapTransform):
    """Name a loaded 2.5D stack after its centre slice: set ``filename_or_obj`` of ``keys`` to ``data[source_key]``.

    ``LoadImaged`` names an image loaded from a list of files (the neighbours of a 2.5D input) after the *first*
    file; outputs written with ``SaveImaged`` and progress logs must carry the centre slice's name instead. Entries
    without ``source_key`` pass unchanged.
    """

    def __init__(
        self, keys: KeysCollection, source_key: str = "center_image", allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.source_key = source_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        source = d.get(self.source_key)
        if source is None:
            return d
        for key in self.key_iterator(d):
            if isinstance(d[key], MetaTensor):
                d[key].meta["filename_or_obj"] = str(source)
        return d
