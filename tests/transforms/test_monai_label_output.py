"""Tests of :mod:`custom_nets.transforms.monai_label` (MonaiLabelOutputd, the last inference postprocessing step of
the 2D bundles). Not ``test_monai_label.py``: test basenames are unique across tests/, and
``tests/bundles/test_monai_label.py`` is the MONAI Label server test."""

from __future__ import annotations

import pytest
import torch

from custom_nets.transforms.monai_label import MonaiLabelOutputd


def test_monai_label_output_only_acts_on_monai_label_requests():
    """Identity without MONAI Label's ``image_path`` key (bundle runs, custom_nets.inference), so it can end any
    inference postprocessing after SaveImaged."""
    pred = torch.zeros(1, 6, 4)
    data = {"image": torch.zeros(3, 6, 4), "pred": pred}
    out = MonaiLabelOutputd("pred")(data)
    assert out["pred"] is pred and "result_extension" not in out


def test_monai_label_output_label_map():
    pred = torch.zeros(1, 6, 4)
    pred[0, 1, 2] = 1.0
    out = MonaiLabelOutputd("pred")({"pred": pred, "image_path": "/tmp/x.tif"})
    assert out["pred"].shape == (6, 4) and out["pred"].dtype == torch.uint8 and out["pred"][1, 2] == 1
    assert "result_extension" not in out  # TIFF holds a label map: MONAI Label keeps the input's type
    # (y, x) images (reverse_indexing=False) come out as MONAI Label's (x, y); JPEG inputs get a PNG result
    out = MonaiLabelOutputd("pred", reverse_indexing=False)({"pred": pred, "image_path": "/tmp/x.JPG"})
    assert out["pred"].shape == (4, 6) and out["pred"][2, 1] == 1 and out["result_extension"] == ".png"
    # a request's own result_extension wins
    out = MonaiLabelOutputd("pred")({"pred": pred, "image_path": "x.jpg", "result_extension": ".nii.gz"})
    assert out["result_extension"] == ".nii.gz"
    with pytest.raises(ValueError, match="one-channel"):
        MonaiLabelOutputd("pred")({"pred": torch.zeros(2, 6, 4), "image_path": "x.png"})


def test_monai_label_output_multi_label_later_channel_wins():
    pred = torch.zeros(3, 2, 2)
    pred[0, 0, :] = 1  # large bowel
    pred[2, 0, 1] = 1  # stomach over large bowel
    pred[1, 1, 1] = 1  # small bowel
    out = MonaiLabelOutputd("pred", multi_label=True)({"pred": pred, "image_path": "x.png"})
    assert out["pred"].tolist() == [[1, 3], [0, 2]] and out["pred"].dtype == torch.uint8
