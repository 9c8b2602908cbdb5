"""The default training augmentation every bundle's train.json carries (``train#augmentation``, issue 15): each step
runs on a patch of the bundle's task, keeps image and label aligned and the label binary, and the list is what the
model card documents."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import BUNDLES, bundle_names
from monai.bundle import ConfigParser


def augmentation(name: str) -> list[dict]:
    return json.loads((BUNDLES / name / "configs" / "train.json").read_text())["train"]["augmentation"]


@pytest.mark.parametrize("name", bundle_names())
def test_every_step_keeps_image_and_label_aligned(name: str) -> None:
    """Every step applied (probability 1) to a patch whose label is where the image is bright: shapes kept, the label
    stays binary and still marks the bright region after the spatial steps."""
    steps = augmentation(name)
    spatial_dims = 3 if "rotate_range" in steps[0] and len(steps[0]["rotate_range"]) == 3 else 2
    shape = (24,) * spatial_dims
    label = torch.zeros(1, *shape)
    label[(0, *[slice(8, 16)] * spatial_dims)] = 1.0
    image = torch.cat([label * 2.0 + 0.1 * torch.rand(1, *shape)] * 3) + 0.5
    for step in steps:
        transform = ConfigParser({"t": {**step, "prob": 1.0} if "prob" in step else step}).get_parsed_content("t")
        if hasattr(transform, "set_random_state"):
            transform.set_random_state(0)
        out = transform({"image": image.clone(), "label": label.clone()})
        assert out["image"].shape == image.shape and out["label"].shape == label.shape, step["_target_"]
        assert set(torch.unique(torch.as_tensor(out["label"])).tolist()) <= {0.0, 1.0}, step["_target_"]
        inside = torch.as_tensor(out["image"])[0][torch.as_tensor(out["label"])[0] > 0]
        outside = torch.as_tensor(out["image"])[0][torch.as_tensor(out["label"])[0] == 0]
        if "label" in step["keys"]:  # spatial: the label moved with the image
            assert inside.numel() > 0 and inside.mean() > outside.mean(), step["_target_"]


@pytest.mark.parametrize("name", bundle_names())
def test_the_model_card_lists_the_augmentation(name: str) -> None:
    card = (BUNDLES / name / "docs" / "README.md").read_text()
    for index, step in enumerate(augmentation(name)):
        assert f"| {index} | `{step['_target_']}` |" in card, step["_target_"]


def test_family_choices() -> None:
    """Mirroring and rotation as the anatomy allows: brains mirrored with small rotations, abdomens never mirrored,
    lesions rotated by any angle; bias field on MR only."""
    def targets(name: str) -> list[str]:
        return [s["_target_"] for s in augmentation(name)]

    assert targets("arunet3d").count("RandFlipd") == 3 and "RandBiasFieldd" in targets("arunet3d")
    assert "RandFlipd" not in targets("unet3plus") and "RandBiasFieldd" in targets("unet3plus")
    assert "RandBiasFieldd" not in targets("drrmsan")
    assert augmentation("drrmsan")[0]["rotate_range"][0] > 3.1 > 0.3 > augmentation("unet2d")[0]["rotate_range"][0]
    train = json.loads((BUNDLES / "arunet3d" / "configs" / "train.json").read_text())
    crop = next(t for t in train["train"]["random_transforms"] if t["_target_"] == "RandCropByPosNegLabeld")
    assert crop["pos"] == "@foreground_crop_fraction" and 0 < train["foreground_crop_fraction"] < 1


@pytest.mark.parametrize("name", bundle_names())
def test_generated_files_say_where_they_come_from(name: str) -> None:
    """Every generated JSON's first item names its template and registry entry; the card says it is generated."""
    for path in sorted((BUNDLES / name / "configs").glob("*.json")):
        config = json.loads(path.read_text())
        first = next(iter(config))
        assert first == "_generated", path
        assert f"'{name}'" in config[first] and "build_bundle_configs.py" in config[first], path
    head = (BUNDLES / name / "docs" / "README.md").read_text().splitlines()[:6]
    assert any("This card is generated" in line for line in head), head
