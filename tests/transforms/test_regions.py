"""Tests of :mod:`custom_nets.transforms.regions`: nested region targets from a label map and back (nnU-Net's
regions, outermost first), and plain labels decoded by the most probable channel."""

from __future__ import annotations

import numpy as np
import torch
from monai.transforms import ConvertToMultiChannelBasedOnBratsClasses

from custom_nets.transforms.regions import label_to_regions, regions_to_label_map


def test_regions_decode_nested_outermost_first_like_nnunet() -> None:
    """BraTS 2023 numbering as a region definition: TC [1, 3], WT [1, 2, 3], ET 3 give back the label map."""
    labels = torch.zeros(1, 6, 6, 6, dtype=torch.uint8)
    labels[0, 1:5, 1:5, 1:5] = 2  # oedema
    labels[0, 2:4, 2:4, 2:4] = 1  # necrosis
    labels[0, 3, 3, 3] = 3  # enhancing
    regions, values = [[1, 3], [1, 2, 3], [3]], [1, 2, 3]
    targets = label_to_regions(labels, regions)
    # the same targets as MONAI's BraTS conversion (TC, WT, ET) with the old enhancing value 4
    old = torch.where(labels == 3, torch.tensor(4, dtype=torch.uint8), labels)
    np.testing.assert_array_equal(targets.numpy(), ConvertToMultiChannelBasedOnBratsClasses()(old).float().numpy())
    np.testing.assert_array_equal(regions_to_label_map(targets, regions, values).numpy(), labels.numpy())
    # an inconsistent prediction (ET outside TC) never writes outside its parent region
    bad = targets.clone()
    bad[2, 0, 0, 0] = 1
    assert regions_to_label_map(bad, regions, values)[0, 0, 0, 0] == 0


def test_plain_labels_decode_by_the_most_probable_channel_above_threshold() -> None:
    prob = torch.tensor([[[0.9, 0.6, 0.2]], [[0.7, 0.8, 0.1]]])  # (2 channels, 1, 3)
    out = regions_to_label_map(prob, [[1], [5]], [1, 5])
    assert out.tolist() == [[[1, 5, 0]]]
