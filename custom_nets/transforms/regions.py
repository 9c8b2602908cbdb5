"""Label maps to sigmoid training targets and back, for any dataset's labels or nnU-Net regions.

MONAI has the BraTS case only (``ConvertToMultiChannelBasedOnBratsClassesd``); these take the regions from the
dataset (:class:`custom_nets.data.dataset.Task`), so one pipeline serves every dataset.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

__all__ = ["LabelToRegionsd", "RegionsToLabelMapd", "label_to_regions", "regions_to_label_map"]


def _plain(x: torch.Tensor) -> torch.Tensor:
    return x.as_tensor() if isinstance(x, MetaTensor) else torch.as_tensor(x)


def label_to_regions(label: torch.Tensor, regions: Sequence[Sequence[int]]) -> torch.Tensor:
    """``(1, *S)`` integer label map -> ``(len(regions), *S)`` float targets: channel ``i`` is 1 where the label is one
    of ``regions[i]``'s values."""
    values = _plain(label)[0].round().long()
    out = torch.stack([torch.isin(values, torch.as_tensor(list(r), device=values.device)) for r in regions])
    return out.float()


def regions_to_label_map(prob: torch.Tensor, regions: Sequence[Sequence[int]], output_values: Sequence[int],
                         threshold: float = 0.5) -> torch.Tensor:
    """``(C, *S)`` per-channel probabilities -> ``(1, *S)`` ``uint8``/``int16`` label map of ``output_values``.

    Disjoint single-value labels: the most probable channel where it exceeds ``threshold`` (0 elsewhere). Regions
    (nnU-Net): each channel above ``threshold`` writes its value, outer (larger) regions first so nested ones
    overwrite them; a region counts only inside the regions that contain it (BraTS: ET only inside TC, TC only inside
    WT), so an inconsistent prediction never writes outside its parent.
    """
    p = _plain(prob).float()
    sets = [set(int(v) for v in r) for r in regions]
    dtype = torch.uint8 if max(output_values) < 256 else torch.int16
    label = torch.zeros(p.shape[1:], dtype=dtype, device=p.device)
    flat = [v for s in sets for v in s]
    if all(len(s) == 1 for s in sets) and len(flat) == len(set(flat)):
        best, index = p.max(dim=0)
        values = torch.as_tensor(list(output_values), dtype=dtype, device=p.device)
        return torch.where(best > threshold, values[index], label)[None]
    on = p > threshold
    order = sorted(range(len(sets)), key=lambda i: -len(sets[i]))
    for i in order:
        inside = on[i].clone()
        for j, parent in enumerate(sets):
            if j != i and sets[i] < parent:
                inside &= on[j]
        label[inside] = int(output_values[i])
    return label[None]


class LabelToRegionsd(MapTransform):
    """Dictionary version of :func:`label_to_regions` (the training target of every bundle); keeps metadata."""

    def __init__(self, keys: KeysCollection, regions: Sequence[Sequence[int]], allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.regions = [list(r) for r in regions]

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = _like(label_to_regions(d[key], self.regions), d[key])
        return d


class RegionsToLabelMapd(MapTransform):
    """Dictionary version of :func:`regions_to_label_map` (what inference writes); keeps metadata and geometry."""

    def __init__(self, keys: KeysCollection, regions: Sequence[Sequence[int]], output_values: Sequence[int],
                 threshold: float = 0.5, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(regions) != len(output_values):
            raise ValueError(f"{len(regions)} regions but {len(output_values)} output values")
        self.regions = [list(r) for r in regions]
        self.output_values = [int(v) for v in output_values]
        self.threshold = threshold

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            pred = d[key]
            if pred.shape[0] != len(self.regions):
                raise ValueError(f"prediction has {pred.shape[0]} channels; the model's task has {len(self.regions)} "
                                 "labels/regions")
            d[key] = _like(regions_to_label_map(pred, self.regions, self.output_values, self.threshold), pred)
        return d


def _like(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    if isinstance(ref, MetaTensor):
        return MetaTensor(out, meta=dict(ref.meta), applied_operations=list(ref.applied_operations))
    return out
