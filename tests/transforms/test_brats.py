"""Tests of :mod:`custom_nets.transforms.brats`: RegionsToBratsLabels inverts MONAI's
ConvertToMultiChannelBasedOnBratsClasses and keeps the regions nested."""

from __future__ import annotations

import pytest
import torch
from monai.transforms import ConvertToMultiChannelBasedOnBratsClasses

from custom_nets.transforms.brats import RegionsToBratsLabels


@pytest.mark.parametrize("et_label", [4, 3])
def test_regions_to_brats_labels_inverts_monai_conversion(et_label):
    labels = torch.zeros(1, 6, 6, 6, dtype=torch.uint8)
    labels[0, 1:5, 1:5, 1:5] = 2
    labels[0, 2:4, 2:4, 2:4] = 1
    labels[0, 3, 3, 3] = et_label
    regions = ConvertToMultiChannelBasedOnBratsClasses(et_label=et_label)(labels).float()
    back = RegionsToBratsLabels(et_label=et_label)(regions)
    assert back.shape == labels.shape and back.dtype == torch.uint8
    assert torch.equal(back, labels)


def test_regions_to_brats_labels_enforces_nesting():
    regions = torch.zeros(3, 4, 4)
    regions[2, 0, 0] = 1  # ET outside WT/TC: not a tumour voxel
    regions[1, 1, 1] = regions[2, 1, 1] = 1  # ET inside WT but outside TC
    out = RegionsToBratsLabels()(regions)
    assert out[0, 0, 0] == 0 and out[0, 1, 1] == 2
    with pytest.raises(ValueError, match="3 region channels"):
        RegionsToBratsLabels()(torch.zeros(2, 4, 4))
