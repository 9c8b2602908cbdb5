"""Every bundle on a user's own dataset, given by ``--dataset_dir`` alone (issue 14's floor).

The dataset is generated in the canonical layout (nnU-Net v2 ``dataset.json``) and differs from each bundle's
default task: another channel count, another label count, and for the 3D bundles an oblique, axis-flipped and
swapped, anisotropic geometry. Each bundle trains one epoch, segments the dataset's test images and evaluates it
per label, through ``python -m monai.bundle`` from an unrelated working directory; the networks are shrunk by
overrides (widths, patch sizes) only, never by dataset-specific ones.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO, bundle_names, copy_bundle, run_bundle
from PIL import Image
from tiny_networks import tiny_args

from custom_nets.data.synthetic import make_synthetic_dataset

# patch sizes that, with the tiny widths, make one epoch take seconds (no dataset-specific value among them)
PATCH = {
    "arunet3d": ["--roi_size", "[16,16,16]"],
    "linknet3d": ["--roi_size", "[32,32,32]"],
    "pspnet3d": ["--roi_size", "[16,16,16]"],
    "unet2d": ["--roi_size", "[32,32]"],
    "attention_unet2d": ["--roi_size", "[32,32]"],
    "attention_resunet2d": ["--roi_size", "[32,32]"],
    "drrmsan": ["--image_size", "[64,64]"],
    "ddanet": ["--image_size", "[64,64]"],
    "ssformer": ["--image_size", "[64,64]"],
    "unet3plus": ["--roi_size", "[64,64]"],
    "fct": ["--roi_size", "[64,64]"],
}
SMALL = {name: tiny_args(name) + patch for name, patch in PATCH.items()}
COMMON = ["--num_workers", "0"]


def _spatial_dims(name: str) -> int:
    meta = json.loads((REPO / "bundles" / name / "configs" / "metadata.json").read_text())
    return len(meta["network_data_format"]["inputs"]["image"]["spatial_shape"])


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("own")
    return {
        # 2 MR-like channels, 2 labels, oblique + flipped + swapped axes, 1.0 x 1.25 x 3.0 mm voxels
        3: make_synthetic_dataset(root / "Dataset3D", spatial_dims=3, num_channels=2, num_labels=2, num_cases=4,
                                  shape=(36, 32, 14), spacing=(1.0, 1.25, 3.0), num_test=1),
        # 2 grayscale channels (one PNG each), 2 labels, non-square images
        2: make_synthetic_dataset(root / "Dataset2D", spatial_dims=2, num_channels=2, num_labels=2, num_cases=6,
                                  shape=(72, 56), num_test=1),
    }


def test_every_bundle_is_covered() -> None:
    assert sorted(SMALL) == bundle_names()


@pytest.mark.parametrize("name", sorted(SMALL))
def test_bundle_on_own_dataset(name: str, datasets: dict[int, Path], tmp_path: Path, elsewhere: Path) -> None:
    dims = _spatial_dims(name)
    data = datasets[dims]
    bundle = copy_bundle(name, tmp_path)
    configs = bundle / "configs"
    fast = SMALL[name] + COMMON
    result = run_bundle(["run", "training", "--config_file", str(configs / "train.json"), "--dataset_dir", str(data),
                         "--epochs", "1", "--val_interval", "1", *fast], cwd=elsewhere)  # fmt: skip
    log = result.stdout + result.stderr
    assert "val_mean_dice" in log, log[-2000:]
    task = json.loads((bundle / "models" / "task.json").read_text())
    assert task["channel_names"] == ["MR0", "MR1"] and task["label_names"] == ["structure 1", "structure 2"]
    assert (bundle / "models" / "model.pt").is_file() and not (bundle / "demo_data").exists()

    out, metrics = tmp_path / "out", tmp_path / "eval"
    ext = [] if dims == 3 else ["--output_ext", ".png"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda args: run_bundle(args, cwd=elsewhere), [
            ["run", "--config_file", str(configs / "inference.json"), "--dataset_dir", str(data), "--output_dir",
             str(out), *ext, *fast],
            ["run", "--config_file", str(configs / "evaluate.json"), "--dataset_dir", str(data), "--output_dir",
             str(metrics), *fast],
        ]))  # fmt: skip
    assert not any(elsewhere.iterdir()), f"outputs leaked into the working directory: {list(elsewhere.iterdir())}"

    # the test image's label map: the input's grid, only the dataset's label values
    written = sorted(out.iterdir())
    (first_channel,) = sorted((data / "imagesTs").glob("*_0000.*"))
    case = first_channel.name.split("_0000")[0]
    assert len(written) == 1, written
    if dims == 3:
        source = nib.load(first_channel)
        pred = nib.load(written[0])
        assert written[0].name == f"{case}_seg.nii.gz"
        assert pred.shape == source.shape
        np.testing.assert_allclose(pred.affine, source.affine, atol=1e-4)
        values = np.unique(np.asarray(pred.dataobj))
    else:
        source = Image.open(first_channel)
        pred = Image.open(written[0])
        assert written[0].name == f"{case}_mask.png" and pred.size == source.size and pred.mode == "L"
        values = np.unique(np.asarray(pred))
    assert set(values.tolist()) <= {0, 1, 2}, values

    # per-label metrics of every training case
    with open(metrics / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {"dice_structure_1", "dice_structure_2"} <= set(rows[0]), list(rows[0])
    cases = [r for r in rows if r.get("case", r.get("group")) not in ("mean", None)]
    assert len(cases) == 4 if dims == 3 else 6


@pytest.mark.parametrize("name", ["arunet3d", "unet2d"])
def test_a_bad_dataset_is_one_line_and_writes_nothing(name: str, datasets: dict[int, Path], tmp_path: Path,
                                                      elsewhere: Path) -> None:
    """An undeclared label value: training stops before writing anything, with one line naming the file."""
    dims = _spatial_dims(name)
    import shutil

    data = tmp_path / "bad"
    shutil.copytree(datasets[dims], data)
    meta = json.loads((data / "dataset.json").read_text())
    meta["labels"] = {"background": 0, "structure 1": 1}  # label 2 occurs but is not declared
    (data / "dataset.json").write_text(json.dumps(meta))
    bundle = copy_bundle(name, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(bundle / "configs" / "train.json"),
         "--dataset_dir", str(data), *COMMON], cwd=elsewhere, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "DatasetError" in errors[0], result.stderr[-3000:]
    assert "not declared in dataset.json" in result.stderr and "labelsTr/case_00" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in bundle.iterdir()) == ["LICENSE", "configs", "docs", "large_files.yml"]
    assert not any(elsewhere.iterdir())
