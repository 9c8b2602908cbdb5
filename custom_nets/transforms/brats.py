"""BraTS label transforms.

MONAI already converts BraTS labels to TC/WT/ET channels (``ConvertToMultiChannelBasedOnBratsClassesd``); the
inverse, from thresholded region channels back to one BraTS label map, is written here.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils.type_conversion import convert_to_dst_type

__all__ = ["RegionsToBratsLabels", "RegionsToBratsLabelsd"]


class RegionsToBratsLabels(Transform):
    """Turn binary TC, WT, ET channels ``(3, *spatial)`` into one BraTS label map ``(1, *spatial)``.

    ET voxels get ``et_label`` (4 for BraTS 2018-2022, 3 for BraTS 2023), TC voxels outside ET get 1 (necrotic /
    non-enhancing core), WT voxels outside TC get 2 (oedema). Nested regions are enforced: ET counts only inside TC,
    TC only inside WT, so inconsistent predictions (ET outside the whole tumour) never create labels outside WT.
    """

    def __init__(self, et_label: int = 4) -> None:
        if et_label in (0, 1, 2):
            raise ValueError(f"et_label must differ from 0, 1 and 2 (background, core, oedema), got {et_label}.")
        self.et_label = et_label

    def __call__(self, regions: torch.Tensor) -> torch.Tensor:
        if regions.shape[0] != 3:
            raise ValueError(f"expected 3 region channels (TC, WT, ET), got shape {tuple(regions.shape)}.")
        tc, wt, et = (torch.as_tensor(regions[i]) > 0.5 for i in range(3))
        tc = tc & wt
        et = et & tc
        labels = torch.zeros_like(wt, dtype=torch.uint8)
        labels[wt] = 2
        labels[tc] = 1
        labels[et] = self.et_label
        out, *_ = convert_to_dst_type(labels[None], dst=regions, dtype=torch.uint8)
        if isinstance(regions, MetaTensor) and isinstance(out, MetaTensor):
            out.copy_meta_from(regions, copy_attr=False)
        return out


class RegionsToBratsLabelsd(MapTransform):
    """Dictionary version of :class:`RegionsToBratsLabels`."""

    def __init__(self, keys: KeysCollection, et_label: int = 4, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.converter = RegionsToBratsLabels(et_label=et_label)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.converter(d[key])
        return d
