"""The 2D LGG bundles end to end through ``python -m monai.bundle``, from an unrelated working directory."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import BUNDLES, copy_bundle, parse_config, run_bundle
from PIL import Image
from tiny_networks import tiny_args

from custom_nets.data import lgg
from custom_nets.data.dataset import read_dataset

LGG_BUNDLES = ["attention_resunet2d", "unet2d", "attention_unet2d"]
TINY = tiny_args("unet2d")  # the same widths for the three LGG bundles
FAST = [*TINY, "--num_workers", "0", "--batch_size", "8"]



@pytest.mark.parametrize("name", LGG_BUNDLES)
def test_train_infer_evaluate_export(name: str, tmp_path: Path) -> None:
    bundle = copy_bundle(name, tmp_path)
    configs = bundle / "configs"
    cwd = tmp_path / "cwd"
    cwd.mkdir()

    run_bundle(["run", "training", "--config_file", str(configs / "train.json"), "--epochs", "2", "--val_interval", "1", *FAST], cwd=cwd)
    assert (bundle / "models" / "model.pt").is_file() and (bundle / "runs" / "train.log").is_file()
    assert json.loads((bundle / "models" / "task.json").read_text())["label_names"] == ["tumour"]
    assert not any(cwd.iterdir())

    # 2D inference: any folder of images (TIFF and PNG); masks keep the image's size (non-square too) and name stem,
    # written as label-value PNGs (the dataset's values: 0 background, 1 tumour)
    images = tmp_path / "images dir"
    images.mkdir()
    source = bundle / "demo_data" / "imagesTr" / "DEMO_LGG_000_4_0000.png"
    Image.open(source).save(images / "square.tif")
    Image.fromarray(np.asarray(Image.open(source))[:112, :80]).save(images / "wide ünïcode.png")
    out = tmp_path / "masks"
    run_bundle(["run", "--config_file", str(configs / "inference.json"), "--dataset_dir", str(images), "--output_dir", str(out), *TINY], cwd=cwd)
    assert sorted(p.name for p in out.iterdir()) == ["square_mask.png", "wide ünïcode_mask.png"]
    for stem, ext in [("square", ".tif"), ("wide ünïcode", ".png")]:
        mask = Image.open(out / f"{stem}_mask.png")
        assert mask.size == Image.open(images / f"{stem}{ext}").size and mask.mode == "L"
        assert set(np.unique(np.asarray(mask))) <= {0, 1}

    # 3D NIfTI volume, slice by slice: the label map keeps the volume's shape and affine
    volumes = tmp_path / "volumes"
    volumes.mkdir()
    volume = np.stack([np.asarray(Image.open(source))[..., 1]] * 5, axis=-1).astype(np.float32)
    affine = np.array([[0.9, 0, 0, 10], [0, 0.9, 0, -20], [0, 0, 3.0, 5], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(volume[:120], affine), volumes / "case one.nii.gz")
    run_bundle(["run", "--config_file", str(configs / "inference_volume.json"), "--dataset_dir", str(volumes), "--output_dir", str(out), *TINY], cwd=cwd)
    pred = nib.load(out / "case one_mask.nii.gz")
    assert pred.shape == (120, 128, 5)
    np.testing.assert_allclose(pred.affine, affine, atol=1e-5)

    # evaluation: one row per group of the dataset (a patient: see test_demo_groups_are_patients), pooled over all
    # its slices, and a mean row
    run_bundle(["run", "--config_file", str(configs / "evaluate.json"), *FAST[:-2]], cwd=cwd)
    with open(bundle / "eval" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    groups = sorted({item["group"] for item in read_dataset(bundle / "demo_data").training})
    assert [r["group"] for r in rows] == [*groups, "mean"]
    assert {"dice_tumour", "iou_tumour", "precision_tumour", "recall_tumour"} <= set(rows[0])
    assert int(rows[-1]["slices"]) == sum(int(r["slices"]) for r in rows[:-1])

    # network matches metadata; TorchScript export reproduces eager
    run_bundle(["verify_net_in_out", "network_def", "--config_file", str(configs / "inference.json"), "--meta_file", str(configs / "metadata.json"), *TINY], cwd=cwd)
    exported = tmp_path / "model.ts"
    run_bundle(
        ["ckpt_export", "network_def", "--filepath", str(exported), "--ckpt_file", str(bundle / "models" / "model.pt"),
         "--meta_file", str(configs / "metadata.json"), "--config_file", str(configs / "inference.json"), *TINY],
        cwd=cwd,
    )  # fmt: skip
    net = parse_config(configs / "inference.json", **{"network_def#channels": [4, 8, 16, 32, 64]}).get_parsed_content("network_def")
    net.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))
    net.eval()
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        assert (torch.jit.load(str(exported))(x) - net(x)).abs().max().item() < 1e-4


def test_split_is_by_patient_and_wce_weight_comes_from_training_masks(tmp_path: Path) -> None:
    bundle = copy_bundle("attention_resunet2d", tmp_path)
    parser = parse_config(bundle / "configs" / "train.json", bundle_root=str(bundle), loss_name="wce")
    train, val = parser.get_parsed_content("train_datalist"), parser.get_parsed_content("val_datalist")
    assert train and val
    # cases are slices <patient>_<n>; splits_final.json keeps a patient's slices on one side
    assert not {patient_of(i["case"]) for i in train} & {patient_of(i["case"]) for i in val}
    weight = parser.get_parsed_content("positive_class_weight")
    assert weight == pytest.approx(lgg.positive_class_weight(train)) and weight > 1
    loss = parser.get_parsed_content("loss")
    assert isinstance(loss.loss, torch.nn.BCEWithLogitsLoss) and loss.loss.pos_weight.item() == pytest.approx(weight)
    parser = parse_config(bundle / "configs" / "train.json", bundle_root=str(bundle))
    assert parser.get_parsed_content("positive_class_weight") is None


def patient_of(case: str) -> str:
    """The patient of an LGG slice case ``<patient>_<n>``."""
    return case.rsplit("_", 1)[0]


def test_demo_groups_are_patients(tmp_path: Path) -> None:
    """Evaluation and the split pool an LGG patient's slices: the datalist's group of a slice is its patient."""
    from custom_nets.data.dataset import open_dataset

    dataset = open_dataset("demo", demo="lgg", demo_dir=tmp_path / "demo", spatial_dims=2)
    assert len(dataset.training) == 72
    assert [c["group"] for c in dataset.training] == [patient_of(c["case"]) for c in dataset.training]
    assert len({c["group"] for c in dataset.training}) == 6


@pytest.mark.parametrize("loss_name", ["dice", "focal", "dicefocal", "wce"])
def test_every_loss_choice_builds(loss_name: str, tmp_path: Path) -> None:
    bundle = copy_bundle("unet2d", tmp_path)
    parser = parse_config(bundle / "configs" / "train.json", bundle_root=str(bundle), loss_name=loss_name)
    loss = parser.get_parsed_content("loss")
    pred, target = torch.randn(2, 1, 16, 16), (torch.rand(2, 1, 16, 16) > 0.8).float()
    assert torch.isfinite(loss(pred, target))


def test_metadata_channels_match_networks() -> None:
    for name in LGG_BUNDLES:
        meta = json.loads((BUNDLES / name / "configs" / "metadata.json").read_text())
        assert meta["network_data_format"]["inputs"]["image"]["num_channels"] == 3
        assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {"1": "tumour"}
