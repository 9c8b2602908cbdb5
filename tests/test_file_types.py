"""custom_nets.file_types: the one list of image endings and the one ground-truth naming rule, as the data layer's
plain-folder datalist (``inference.json``) and batch inference's discovery (``segment.py``) both apply it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from custom_nets.data.dataset import Task, inference_datalist
from custom_nets.file_types import file_ending, is_label_name, strip_ending
from custom_nets.inference import discover_cases
from custom_nets.inference.discovery import InputSpec


@pytest.mark.parametrize(
    ("name", "ending"),
    [("a.nii.gz", ".nii.gz"), ("A.NII", ".nii"), ("x.nhdr", ".nhdr"), ("p.JPEG", ".jpeg"), (".nii.gz", None),
     ("notes.txt", None), ("a.nii.gz.bak", None)],
)  # fmt: skip
def test_file_ending(name: str, ending: str | None) -> None:
    assert file_ending(name) == ending
    assert strip_ending(name) == (name[: -len(ending)] if ending else name)


@pytest.mark.parametrize("stem", ["case_seg", "case-SEG", "case_label", "case_labels", "c_mask", "c_gt", "gt",
                                  "BraTS-GLI-00000-000-seg", "case_segmentation"])  # fmt: skip
def test_ground_truth_names(stem: str) -> None:
    assert is_label_name(stem)


@pytest.mark.parametrize("stem", ["case", "case_0000", "segment_01", "masking", "case_t1", "tag"])
def test_image_names(stem: str) -> None:
    assert not is_label_name(stem)


def test_inference_json_and_segment_take_the_same_images_of_a_plain_folder(tmp_path: Path) -> None:
    """Ground-truth files beside the images, in every spelling of the rule, are no input to either path."""
    picture = np.zeros((16, 12), np.uint8)
    for name in ["a", "b", "a_seg", "b-mask", "c_gt", "d_labels", "BraTS-GLI-00000-000-seg"]:
        Image.fromarray(picture).save(tmp_path / f"{name}.png")
    task = Task("plain", ("gray",), ("structure",), ((1,),), (1,), spatial_dims=2)
    datalist = inference_datalist(tmp_path, task, demo="lgg")
    discovered = discover_cases(tmp_path, InputSpec(spatial_dims=2, num_channels=1, channel_names=("gray",)))
    assert sorted(c["case"] for c in datalist) == sorted(c.name for c in discovered) == ["a", "b"]
