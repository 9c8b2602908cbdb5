"""Tests of :mod:`custom_nets.transforms.grayscale`: AppendGrayscaled adds the image's grayscale (RGB luma, or the
mean of a dataset's own channels) to the label as DDANet's reconstruction target."""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor

from custom_nets.transforms.grayscale import AppendGrayscaled


def test_append_grayscaled_values() -> None:
    image = torch.zeros(3, 2, 3)
    image[0, 0, 0] = 1.0  # pure red
    image[1, 0, 1] = 1.0  # pure green
    image[2, 0, 2] = 1.0  # pure blue
    image[:, 1, :] = 0.5  # mid gray
    label = MetaTensor(torch.tensor([[[0, 1, 1], [0, 0, 1]]], dtype=torch.uint8), meta={"filename_or_obj": "m.png"})
    out = AppendGrayscaled(keys="label")({"image": image, "label": label})
    assert out["label"].shape == (2, 2, 3) and out["label"].dtype == torch.float32
    torch.testing.assert_close(torch.as_tensor(out["label"][0]), torch.as_tensor(label[0]).float())
    expected_gray = torch.tensor([[0.299, 0.587, 0.114], [0.5, 0.5, 0.5]])
    torch.testing.assert_close(torch.as_tensor(out["label"][1]), expected_gray)
    assert isinstance(out["label"], MetaTensor) and out["label"].meta["filename_or_obj"] == "m.png"
    assert out["image"] is image
    one_channel = AppendGrayscaled(keys="label")({"image": image[:1], "label": label.float()})
    torch.testing.assert_close(torch.as_tensor(one_channel["label"][1]), image[0])
    with pytest.raises(ValueError, match="spatial shape"):
        AppendGrayscaled(keys="label")({"image": image, "label": torch.zeros(1, 4, 4)})
    # a dataset's own channels (not RGB): the intensity image is their mean
    two = torch.stack([image[0], image[2]])
    two_channels = AppendGrayscaled(keys="label")({"image": two, "label": label.float()})
    torch.testing.assert_close(torch.as_tensor(two_channels["label"][1]), two.mean(0))
    with pytest.raises(ValueError, match="channel-first"):
        AppendGrayscaled(keys="label")({"image": torch.zeros(3), "label": label})
