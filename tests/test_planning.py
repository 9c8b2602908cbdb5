"""Plans from the data (custom_nets.planning, scripts/plan.py): nnU-Net's rules on generated datasets whose spacing,
intensities and dimensionality are known, the cache, the bundles reading the plan, and a one-case dataset that plans
and trains with the planned patch and batch size. The planned normalisation transform:
tests/transforms/test_normalization.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, copy_bundle, run_bundle

from custom_nets.data import DatasetError, read_dataset
from custom_nets.data.synthetic import make_synthetic_dataset
from custom_nets.planning import (
    BYTES_PER_VOXEL,
    MIN_BATCH,
    PATCH_DIVISOR,
    load_plan,
    patch_and_batch,
    plan_dataset,
    planned_batch_size,
    planned_patch_size,
    planned_pixdim,
    target_spacing,
    trained_plan,
    training_plan,
)

PLAN_KEYS = ("spatial_dims", "target_spacing", "normalization", "patch_size", "batch_size", "labels", "channels")


def _plan(tmp_path: Path, name: str, **kwargs) -> dict:
    data = make_synthetic_dataset(tmp_path / name, num_test=0, **kwargs)
    return plan_dataset(read_dataset(data), tmp_path / f"{name}.json", progress=False)


def test_ct_volume_plan(tmp_path: Path) -> None:
    # voxel axes (0.8, 0.9, 2.0) mm stored with the first two axes swapped: RAS spacing (0.9, 0.8, 2.0)
    plan = _plan(tmp_path, "ct", ct=True, num_channels=1, num_labels=2, spacing=(0.8, 0.9, 2.0), shape=(40, 36, 24))
    assert all(k in plan for k in PLAN_KEYS)
    assert plan["spatial_dims"] == 3 and plan["configuration"] == "3d"
    np.testing.assert_allclose(plan["target_spacing"], [0.9, 0.8, 2.0], atol=1e-4)
    (norm,) = plan["normalization"]
    assert norm["scheme"] == "ct"
    # foreground (labels) of the synthetic CT lies in tissue (0-200 HU), never in the -1000 HU air
    low, high = norm["clip"]
    assert -100 < low < high < 300 and low <= norm["mean"] <= high and norm["std"] > 0
    assert plan["channels"] == ["CT"] and plan["labels"] == {"structure 1": [1], "structure 2": [2]}
    assert all(p % PATCH_DIVISOR == 0 for p in plan["patch_size"]) and len(plan["patch_size"]) == 3
    assert plan["batch_size"] >= MIN_BATCH


def test_mr_volumes_zscore_nonzero_and_anisotropic_axis(tmp_path: Path) -> None:
    # a body in air: cropping to nonzero shrinks the image below 3/4, so z-score over the nonzero voxels
    plan = _plan(tmp_path, "mr", num_channels=2, spacing=(1.0, 1.0, 6.0), shape=(64, 64, 8), oblique=False)
    assert [n["scheme"] for n in plan["normalization"]] == ["zscore_nonzero", "zscore_nonzero"]
    # 6 mm slices, 8 of them against 64 in plane: very anisotropic, so slices (2D) are recommended
    assert plan["spatial_dims"] == 2 and plan["configurations"]["2d"]["slice_axis"] == 2
    assert len(plan["patch_size"]) == 2 and len(plan["configurations"]["3d"]["patch_size"]) == 3


def test_zscore_without_background(tmp_path: Path) -> None:
    data = make_synthetic_dataset(tmp_path / "full", num_channels=1, num_test=0, spacing=(1.0, 1.0, 1.0))
    dataset = read_dataset(data)
    for case in dataset.training:  # fill the air: nothing to crop
        import nibabel as nib

        img = nib.load(case["image"])
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj) + 50.0, img.affine), case["image"])
    plan = plan_dataset(read_dataset(data), progress=False)
    assert [n["scheme"] for n in plan["normalization"]] == ["zscore"]


def test_2d_plans(tmp_path: Path) -> None:
    rgb = _plan(tmp_path, "rgb", spatial_dims=2, rgb=True, shape=(72, 56))
    assert rgb["spatial_dims"] == 2 and rgb["target_spacing"] is None
    assert [n["scheme"] for n in rgb["normalization"]] == ["rgb"] * 3 and rgb["channels"] == ["R", "G", "B"]
    # PNG arrays are (W, H) as MONAI's PIL reader gives them: a 72 x 56 (rows x columns) image is 56 wide
    assert rgb["median_shape"][0] < rgb["median_shape"][1]


def test_target_spacing_rules() -> None:
    spacings = np.array([[1.0, 1.0, 5.0], [1.0, 1.0, 6.0], [1.0, 1.0, 4.0], [1.0, 1.0, 8.0]])
    iso_shapes = np.array([[100, 100, 100]] * 4)
    assert target_spacing(spacings, iso_shapes) == [1.0, 1.0, 5.5]  # many slices: the median
    thin = np.array([[200, 200, 20]] * 4)
    coarse = target_spacing(spacings, thin)  # few coarse slices: the 10th percentile
    assert coarse[2] == pytest.approx(np.percentile(spacings[:, 2], 10))


@pytest.mark.parametrize("dims", [2, 3])
def test_patch_fits_the_budget(dims: int) -> None:
    median = [400.0] * dims
    budget = 2e9
    patch, batch = patch_and_batch([1.0] * dims, median, budget, dataset_voxels=1e12)
    assert batch >= MIN_BATCH and all(p % PATCH_DIVISOR == 0 for p in patch)
    assert batch * np.prod(patch) * BYTES_PER_VOXEL[dims] <= budget
    # a larger budget never plans a smaller batch of voxels
    bigger, big_batch = patch_and_batch([1.0] * dims, median, 4 * budget, dataset_voxels=1e12)
    assert big_batch * np.prod(bigger) >= batch * np.prod(patch)
    # patches never exceed the (rounded-up) median shape
    small, _ = patch_and_batch([1.0] * dims, [20.0] * dims, budget, dataset_voxels=1e6)
    assert small == [32] * dims


def test_cache_recomputed_when_files_change(tmp_path: Path) -> None:
    data = make_synthetic_dataset(tmp_path / "d", num_test=0)
    path = tmp_path / "plans.json"
    first = plan_dataset(read_dataset(data), path, progress=False)
    path.write_text(json.dumps({**first, "patch_size": [999, 999, 999]}))  # a marker only the cache holds
    assert plan_dataset(read_dataset(data), path, progress=False)["patch_size"] == [999, 999, 999]
    label = sorted((data / "labelsTr").iterdir())[0]
    os.utime(label, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert plan_dataset(read_dataset(data), path, progress=False)["patch_size"] == first["patch_size"]


def test_training_plan_given_file_and_trained_plan(tmp_path: Path) -> None:
    data = read_dataset(make_synthetic_dataset(tmp_path / "d", num_test=0))
    ckpt = tmp_path / "models"
    assert trained_plan(ckpt) is None
    plan = training_plan(data, ckpt)
    assert (ckpt / "plans.json").is_file() and trained_plan(ckpt)["patch_size"] == plan["patch_size"]
    other = read_dataset(make_synthetic_dataset(tmp_path / "o", num_channels=1, num_test=0))
    with pytest.raises(DatasetError, match="channels"):
        training_plan(other, tmp_path / "m2", plan=ckpt / "plans.json")
    # a run with dataset_dir "demo" (the demo, or MONAI Label's studies for the served model) keeps the model's plan
    # when it fits the task, and drops one of other channels
    assert training_plan(data, ckpt, dataset_dir="demo") == plan and (ckpt / "plans.json").is_file()
    assert training_plan(other, ckpt, dataset_dir="demo") is None and not (ckpt / "plans.json").exists()
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(DatasetError, match="bad.json lacks"):
        load_plan(tmp_path / "bad.json")
    # planned values, capped by the bundle's own
    assert planned_pixdim(plan, data.task) == plan["target_spacing"]
    assert planned_pixdim(None, data.task) == data.task.pixdim
    assert planned_patch_size(plan, [8, 8, 8]) == [8, 8, 8]
    assert planned_patch_size(plan, [512, 512, 512]) == plan["configurations"]["3d"]["patch_size"]
    assert planned_patch_size(None, [64, 64]) == [64, 64]
    flat = {"spatial_dims": 2, "patch_size": [32, 48], "batch_size": 2, "configurations": {}}
    assert planned_patch_size(flat, [128, 128]) == [48, 48]  # 2D: square, the largest side
    assert planned_patch_size(flat, [40, 40]) == [40, 40]
    # rounded up to the network's own size divisor (LinkNet: 32), still at most the bundle's window
    thin = {"spatial_dims": 3, "patch_size": [64, 64, 16], "batch_size": 2, "configurations": {}}
    assert planned_patch_size(thin, [64, 64, 64], [32, 32, 32]) == [64, 64, 32]
    assert planned_patch_size(thin, [64, 64, 64], 8) == [64, 64, 16]
    assert planned_patch_size(thin, [64, 64, 24], 32) == [64, 64, 24]
    assert planned_batch_size(plan, 1, 3) == 1 and planned_batch_size(None, 7, 3) == 7


def test_plan_cli(tmp_path: Path) -> None:
    data = make_synthetic_dataset(tmp_path / "d", ct=True, num_channels=1, num_test=0)
    out = tmp_path / "p" / "plans.json"
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "plan.py"), str(data), "-o", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert load_plan(out)["normalization"][0]["scheme"] == "ct"
    bad = subprocess.run([sys.executable, str(REPO / "scripts" / "plan.py"), str(tmp_path / "missing"), "-o",
                          str(tmp_path / "x.json")], capture_output=True, text=True)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1 and "missing" in bad.stderr
    assert not (tmp_path / "x.json").exists()


def test_one_case_dataset_plans_and_trains(tmp_path: Path) -> None:
    data = make_synthetic_dataset(tmp_path / "one", spatial_dims=2, num_channels=1, num_labels=1, num_cases=1,
                                  shape=(48, 40), num_test=0)
    plan = plan_dataset(read_dataset(data), tmp_path / "plans.json", progress=False)
    assert plan["spatial_dims"] == 2 and plan["batch_size"] >= MIN_BATCH
    bundle = copy_bundle("unet2d", tmp_path)
    run_bundle(["run", "training", "--config_file", str(bundle / "configs" / "train.json"), "--dataset_dir",
                str(data), "--epochs", "1", "--val_interval", "1", "--num_workers", "0",
                "--network_def#channels", "[4,8,16,32,64]"], cwd=tmp_path)  # patch and batch size: planned
    assert (bundle / "models" / "model.pt").is_file()
    # the run planned the dataset itself (the same plan) and saved it beside the model for inference
    assert trained_plan(bundle / "models")["normalization"] == plan["normalization"]


@pytest.mark.parametrize("name, dims, default_roi", [("unet2d", 2, [128, 128]), ("arunet3d", 3, [64, 64, 64])])
def test_bundle_configs_read_the_plan(name: str, dims: int, default_roi: list, tmp_path: Path) -> None:
    from monai.bundle import ConfigParser

    data = make_synthetic_dataset(tmp_path / "d", spatial_dims=dims, num_channels=1, shape=(48, 40, 24), num_test=0)
    root = tmp_path / "bundle"

    def parsed(config: str, **overrides):
        parser = ConfigParser()
        parser.read_config(str(REPO / "bundles" / name / "configs" / config))
        parser.update({"bundle_root": str(root), "dataset_dir": str(data), **overrides})
        return parser

    train = parsed("train.json")
    plans = train.get_parsed_content("plans")
    # computed on the first run and cached beside the checkpoints, where inference and evaluation read it
    assert (root / "models" / "plans.json").is_file() and trained_plan(root / "models") == plans
    assert train.get_parsed_content("roi_size") == planned_patch_size(plans, default_roi)
    assert train.get_parsed_content("batch_size") == planned_batch_size(plans, 16 if dims == 2 else 1, dims)
    norm = train.get_parsed_content("train#deterministic_transforms")
    assert any(type(t).__name__ == "PlannedNormalized" for t in norm)
    assert parsed("evaluate.json").get_parsed_content("plans") == plans
    # a planned value stays overridable on the command line, and a given plan file is used (and saved)
    assert parsed("train.json", roi_size=[16] * dims).get_parsed_content("roi_size") == [16] * dims
    given = dict(plans, batch_size=1, configurations={})
    (tmp_path / "given.json").write_text(json.dumps(given))
    other = parsed("train.json", plan=str(tmp_path / "given.json"), ckpt_dir=str(tmp_path / "m2"))
    assert other.get_parsed_content("batch_size") == 1
    assert json.loads((tmp_path / "m2" / "plans.json").read_text())["batch_size"] == 1
    # --plan none: the bundle's own settings, and no plan left for inference
    off = parsed("train.json", plan="none", ckpt_dir=str(tmp_path / "m2"))
    assert off.get_parsed_content("roi_size") == default_roi and not (tmp_path / "m2" / "plans.json").exists()


def test_round_up_ignores_floating_point_noise() -> None:
    from custom_nets.planning import _round_up

    assert _round_up(96.00000000000001) == 96  # a median shape through an oblique affine
    assert _round_up(96.5) == 112 and _round_up(3) == 16 and _round_up(40, 8) == 40
