"""Tests of :mod:`custom_nets.transforms.multilabel`: MultiLabelToLabelMapd turns the GI bundles' overlapping
per-class channels into one label map, the later class winning."""

from __future__ import annotations

import torch

from custom_nets.transforms.multilabel import MultiLabelToLabelMapd


def test_multilabel_to_label_map_later_class_wins() -> None:
    pred = torch.zeros(3, 4, 4)
    pred[0, :2] = 1
    pred[1, 1:3] = 1
    pred[2, :, :1] = 1
    label = MultiLabelToLabelMapd(keys="pred")({"pred": pred})["pred"]
    assert label.shape == (1, 4, 4) and label.dtype == torch.uint8
    assert label[0, 0, 1] == 1 and label[0, 1, 1] == 2 and label[0, 1, 0] == 3 and label[0, 3, 3] == 0
