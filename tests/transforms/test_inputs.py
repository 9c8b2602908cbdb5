"""Tests of :mod:`custom_nets.transforms.inputs`: TaskInputd checks a study against what the model takes (as MONAI
Label serves it any image) and names the file and the problem in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from custom_nets.data.dataset import demo_task
from custom_nets.transforms.inputs import TaskInputd


def _image(shape: tuple[int, ...], name: str = "study.nii.gz") -> MetaTensor:
    return MetaTensor(torch.zeros(shape), meta={"filename_or_obj": name, "spatial_shape": np.array(shape[1:])})


def test_task_input_drops_the_slice_axis_of_a_2d_study_saved_as_volume() -> None:
    check = TaskInputd(["image", "label"], demo_task("uwmadison"))
    out = check({"image": _image((3, 40, 30), "slice.png"), "label": _image((1, 40, 30, 1), "slice.nii.gz")})
    assert out["image"].shape == (3, 40, 30) and out["label"].shape == (1, 40, 30)
    assert out["label"].affine.shape == (4, 4) and list(out["label"].meta["spatial_shape"]) == [40, 30]


@pytest.mark.parametrize(
    "demo, shape, message",
    [
        ("brats", (1, 8, 8, 8), r"study.nii.gz: 1 channel, but the model takes 4 \(FLAIR, T1, T1ce, T2\) in one image"),
        ("brats", (4, 8, 8), r"study.nii.gz: a 2D image of size \(8, 8\), but the model takes 3D images"),
        ("kvasir", (1, 8, 8), r"study.nii.gz: 1 channel, but the model takes 3 \(R, G, B\) in one image"),
        ("uwmadison", (3, 8, 8, 4), r"study.nii.gz: a 3D image of size \(8, 8, 4\), but the model takes 2D images"),
    ],
)
def test_task_input_names_what_the_model_takes(demo: str, shape: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TaskInputd("image", demo_task(demo))({"image": _image(shape)})


def test_task_input_refuses_a_label_with_channels() -> None:
    with pytest.raises(ValueError, match="a label with 3 channels, but the model takes one label map"):
        TaskInputd(["image", "label"], demo_task("lgg"))({"image": _image((3, 8, 8)), "label": _image((3, 8, 8))})
    assert np.array_equal(TaskInputd("label", demo_task("lgg"))({"label": _image((1, 8, 8))})["label"], np.zeros((1, 8, 8)))
