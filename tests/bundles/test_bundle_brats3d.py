"""The 3D BraTS bundles end to end, through ``python -m monai.bundle`` in a subprocess, as a user runs them.

Each bundle is copied out of the repository first (it must work on its own with ``custom_nets`` installed) and every
command runs from an unrelated working directory, so outputs must land inside the copied bundle folder.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import scipy.ndimage
import torch
from conftest import copy_bundle, labelled_cases, run_bundle
from tiny_networks import tiny_args

# Tiny settings so that a bundle trains, infers and evaluates in about a minute on 2 CPU cores.
FAST = {
    "arunet3d": [*tiny_args("arunet3d"), "--roi_size", "[32,32,32]"],
    "linknet3d": [*tiny_args("linknet3d"), "--roi_size", "[64,64,64]"],
    "pspnet3d": [*tiny_args("pspnet3d"), "--roi_size", "[48,48,48]"],
}
COMMON_FAST = ["--num_workers", "0", "--sw_batch_size", "4"]




@pytest.mark.parametrize("name", sorted(FAST))
def test_train_infer_evaluate_export(name: str, tmp_path: Path, elsewhere: Path) -> None:
    bundle = copy_bundle(name, tmp_path)
    configs = bundle / "configs"
    fast = FAST[name] + COMMON_FAST

    # train 2 epochs on the demo data (generated into the bundle on first use)
    result = run_bundle(
        ["run", "training", "--config_file", str(configs / "train.json"), "--epochs", "2", "--val_interval", "1", *fast],
        cwd=elsewhere,
    )
    demo_files = ["demo_data/dataset.json", "demo_data/imagesTr/DEMO_000_0000.nii.gz", "demo_data/labelsTr/DEMO_000.nii.gz"]
    for produced in ["models/model.pt", "models/checkpoint_last.pt", "models/task.json", "runs/train.log", *demo_files]:
        assert (bundle / produced).exists(), f"{produced} missing; stdout:\n{result.stdout[-2000:]}"
    assert list((bundle / "runs").glob("events.out.tfevents.*")), "no TensorBoard event file"
    assert not any(elsewhere.iterdir()), f"outputs leaked into the working directory: {list(elsewhere.iterdir())}"
    assert "val_dice_whole_tumor" in result.stdout + result.stderr
    # the task the model was trained on (regions TC, WT, ET in that order, BraTS 2023 values) is stored for inference
    task = json.loads((bundle / "models" / "task.json").read_text())
    assert task["label_names"] == ["tumor core", "whole tumor", "enhancing tumor"]
    assert task["regions"] == [[1, 3], [1, 2, 3], [3]] and task["output_values"] == [1, 2, 3]
    assert task["channel_names"] == ["FLAIR", "T1", "T1ce", "T2"] and task["spatial_dims"] == 3

    # resuming: a third epoch continues from the saved state instead of starting over
    result = run_bundle(
        ["run", "training", "--config_file", str(configs / "train.json"), "--epochs", "3", "--val_interval", "5", *fast],
        cwd=elsewhere,
    )
    log = result.stdout + result.stderr
    assert "resuming training from" in log and "Epoch: 3/3" in log and "Epoch: 1/3" not in log

    # inference over a folder: one label map per case, with the input's shape and affine, BraTS 2023 label values
    output = tmp_path / "predictions"
    demo = bundle / "demo_data"
    run_bundle(
        ["run", "--config_file", str(configs / "inference.json"), "--dataset_dir", str(demo), "--output_dir", str(output), *fast],
        cwd=elsewhere,
    )
    cases = labelled_cases(demo)
    assert len(cases) == json.loads((demo / "dataset.json").read_text())["numTraining"]
    assert sorted(p.name for p in output.iterdir()) == [f"{c}_seg.nii.gz" for c in cases]
    for case in cases[:2]:
        image = nib.load(demo / "imagesTr" / f"{case}_0000.nii.gz")
        pred = nib.load(output / f"{case}_seg.nii.gz")
        assert pred.shape == image.shape
        np.testing.assert_allclose(pred.affine, image.affine, atol=1e-5)
        assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2, 3}

    # evaluation: per-case, per-region Dice and HD95 and a mean row
    run_bundle(["run", "--config_file", str(configs / "evaluate.json"), "--dataset_dir", str(demo), *fast], cwd=elsewhere)
    with open(bundle / "eval" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["case"] for r in rows] == [*cases, "mean"]
    regions = ("tumor_core", "whole_tumor", "enhancing_tumor")
    assert set(rows[0]) == {"case"} | {f"{m}_{r}" for m in ("dice", "hd95") for r in regions}
    assert all(0.0 <= float(r["dice_whole_tumor"]) <= 1.0 for r in rows)
    # ... and nnU-Net's post-processing choice beside the weights, which inference then applies
    choice = json.loads((bundle / "models" / "postprocessing.json").read_text())
    assert set(choice["dice"]) == {"tumor core", "whole tumor", "enhancing tumor"} and choice["cases"] == len(cases)
    assert all(0 <= c < 3 for c in choice["channels"])
    choice["channels"] = [1]  # forced: whole tumour reduced to its largest component in every case
    (bundle / "models" / "postprocessing.json").write_text(json.dumps(choice))
    kept = tmp_path / "largest"
    run_bundle(["run", "--config_file", str(configs / "inference.json"), "--dataset_dir", str(demo), "--output_dir",
                str(kept), *fast], cwd=elsewhere)
    for case in cases[:2]:
        tumour = np.asarray(nib.load(kept / f"{case}_seg.nii.gz").dataobj) > 0
        assert scipy.ndimage.label(tumour, np.ones((3, 3, 3)))[1] <= 1
        assert tumour.sum() <= (np.asarray(nib.load(output / f"{case}_seg.nii.gz").dataobj) > 0).sum()

    # the network matches the metadata, and TorchScript export reproduces the eager network
    run_bundle(
        ["verify_net_in_out", "network_def", "--config_file", str(configs / "inference.json"),
         "--meta_file", str(configs / "metadata.json"), *FAST[name]],
        cwd=elsewhere,
    )  # fmt: skip
    exported = tmp_path / "model.ts"
    run_bundle(
        ["ckpt_export", "network_def", "--filepath", str(exported), "--ckpt_file", str(bundle / "models" / "model.pt"),
         "--meta_file", str(configs / "metadata.json"), "--config_file", str(configs / "inference.json"), *FAST[name]],
        cwd=elsewhere,
    )  # fmt: skip
    check_export_parity(configs / "inference.json", bundle / "models" / "model.pt", exported, FAST[name])


def check_export_parity(config: Path, checkpoint: Path, exported: Path, overrides: list[str]) -> None:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(config))
    parser["bundle_root"] = str(config.parent.parent)  # its models/task.json, not the working directory's
    for key, value in zip(overrides[::2], overrides[1::2]):
        parser[key.lstrip("-")] = json.loads(value)
    eager = parser.get_parsed_content("network_def")
    eager.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    eager.eval()
    scripted = torch.jit.load(str(exported), map_location="cpu")
    x = torch.randn(1, 4, 64, 64, 64)
    with torch.no_grad():
        difference = (scripted(x) - eager(x)).abs().max().item()
    assert difference < 1e-4, f"TorchScript export differs from eager by {difference}"


def test_missing_dataset_dir_is_a_clear_error(tmp_path: Path, elsewhere: Path) -> None:
    missing = tmp_path / "no such folder"
    bundle = copy_bundle("arunet3d", tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(bundle / "configs" / "train.json"),
         "--dataset_dir", str(missing)],
        cwd=elsewhere, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0
    assert "DatasetError" in result.stderr and str(missing) in result.stderr
    assert "Traceback" not in result.stderr, "a dataset error is one line, not a traceback"
    assert not (bundle / "demo_data").exists(), "must not fall back to demo data"


# Per bundle: network overrides and crop size for a fast learning run. AR-UNet's runs by default; the other two take
# several minutes on a CPU and are marked slow (make test-slow).
LEARNING = {  # bundle: (epochs, overrides)
    "arunet3d": (8, [*FAST["arunet3d"][:2], "--roi_size", "[48,48,48]"]),
    "linknet3d": (16, ["--network_def#channels", "[16,32,64,128]", "--roi_size", "[64,64,64]"]),
    "pspnet3d": (8, ["--network_def#channels", "[8,16,32,32]", "--network_def#layers", "[1,1,1,1]", "--roi_size", "[48,48,48]"]),
}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=[] if n == "arunet3d" else [pytest.mark.slow]) for n in sorted(LEARNING)]
)
def test_learning_on_demo_data(name: str, tmp_path: Path, elsewhere: Path) -> None:
    """Each BraTS bundle learns the demo task: the loss falls and whole-tumour validation Dice exceeds 0.7 (48 or 96
    optimiser steps)."""
    epochs, overrides = LEARNING[name]
    bundle = copy_bundle(name, tmp_path)
    result = run_bundle(
        ["run", "training", "--config_file", str(bundle / "configs" / "train.json"), "--epochs", str(epochs),
         "--val_interval", "1", "--learning_rate", "3e-3", *overrides, *COMMON_FAST],
        cwd=elsewhere,
    )  # fmt: skip
    log = result.stdout + result.stderr
    losses = [float(v) for v in re.findall(rf"Epoch: \d+/{epochs}, Iter: \d+/\d+ -- train_loss: ([0-9.]+)", log)]
    per_epoch = len(losses) // epochs
    assert per_epoch > 0, log[-3000:]
    first, last = np.mean(losses[:per_epoch]), np.mean(losses[-2 * per_epoch :])
    wt_dice = [float(v) for v in re.findall(r"val_dice_whole_tumor: ([0-9.]+)", log)]
    # Dice + focal over three small regions stays near 1 early on; a 5% fall in 48 steps is real learning
    assert last < 0.95 * first, f"loss did not fall: first epoch {first:.3f}, last two epochs {last:.3f}"
    assert max(wt_dice) > 0.7, f"whole-tumour Dice per epoch: {wt_dice}"
