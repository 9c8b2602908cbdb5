"""The plan against the bundles' defaults (scripts/benchmark_plan.py) and the realistic generated CT data it runs on
(make_synthetic_dataset(anatomy=True)): the table built from two compare.py output folders, the settings a fold
trained with read back through a bundle's own config, the phantoms' geometry, intensities and plan; the end-to-end
run (it trains) is slow."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO

from custom_nets.data import read_dataset
from custom_nets.data.synthetic import make_synthetic_dataset
from custom_nets.planning import plan_dataset

sys.path.insert(0, str(REPO / "scripts"))
import benchmark_plan  # noqa: E402
import compare  # noqa: E402

BUNDLE = "arunet3d"
FIELDS = ["bundle", "fold", "parameters", "train_seconds", "dice_organ", "dice_lesion", "hd95_organ", "hd95_lesion"]


def _fake_run(out: Path, rows: list[list[float]], epochs: list[int]) -> Path:
    """A compare.py output folder: comparison.csv (another bundle's row too) and each fold's training log."""
    out.mkdir(parents=True)
    with open(out / "comparison.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(FIELDS)
        for fold, (values, n) in enumerate(zip(rows, epochs)):
            writer.writerow([BUNDLE, fold, 1000, *values])
            log = out / BUNDLE / f"fold_{fold}" / "train.log"
            log.parent.mkdir(parents=True)
            log.write_text("".join(f"INFO epoch {e}/100000 done in 1.0 s (elapsed ...)\n" for e in range(1, n + 1)))
        writer.writerow(["linknet3d", 0, 5, 1.0, 0.99, 0.99, 1.0, 1.0])
    return out


def test_table_from_two_comparisons(tmp_path: Path) -> None:
    planned = _fake_run(tmp_path / "planned", [[100.0, 0.8, 0.4, 2.0, 9.0], [110.0, 0.6, 0.2, 4.0, 11.0]], [12, 14])
    defaults = _fake_run(tmp_path / "defaults", [[120.0, 0.5, 0.0, 6.0, 20.0], [130.0, 0.3, 0.0, 8.0, 30.0]], [5, 5])
    settings = {
        "planned": [{"patch size": "64 x 64 x 32", "batch size": "1"}] * 2,
        "defaults": [{"patch size": "64 x 64 x 64", "batch size": "1"}] * 2,
    }
    table = benchmark_plan.plan_vs_defaults_table(BUNDLE, {"planned": planned, "defaults": defaults}, settings)
    lines = {line.split(" | ")[0].strip("| *"): line for line in table.splitlines() if line.startswith("|")}
    assert lines["patch size"] == "| patch size | 64 x 64 x 32 | 64 x 64 x 64 |"
    assert lines["batch size (same)"] == "| batch size (same) | 1 | 1 |"
    assert lines["epochs trained per fold"] == "| epochs trained per fold | 13.0 ± 1.4 | 5.0 ± 0.0 |"
    assert lines["training time per fold (s)"] == "| training time per fold (s) | 105 ± 7 | 125 ± 7 |"
    # mean Dice over the labels, then over the folds: (0.6 + 0.4) / 2 = 0.5 planned, (0.25 + 0.15) / 2 = 0.2
    assert lines["mean Dice"] == "| **mean Dice** | **0.500 ± 0.141** | **0.200 ± 0.071** |"
    assert lines["Dice lesion"] == "| Dice lesion | 0.300 ± 0.141 | 0.000 ± 0.000 |"
    assert lines["HD95 organ"] == "| HD95 organ | 3.000 ± 1.414 | 7.000 ± 1.414 |"
    assert "linknet3d" not in table and "over 2 fold(s)" in table
    with pytest.raises(compare.CompareError, match="no result of pspnet3d"):
        benchmark_plan.plan_vs_defaults_table("pspnet3d", {"planned": planned, "defaults": defaults}, settings)


@pytest.fixture(scope="module")
def ct_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("ct") / "ct", anatomy=True, ct=True, num_channels=1,
                                  num_labels=2, num_cases=6, num_test=0, shape=(48, 48, 12), spacing=(0.8, 0.8, 3.0),
                                  slice_spacings=(2.5, 3.0, 5.0), seed=1)


def test_anatomy_ct_phantoms(ct_data: Path) -> None:
    meta = json.loads((ct_data / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "organ": 1, "lesion": 2} and meta["channel_names"] == {"0": "CT"}
    thicknesses = set()
    for i in range(6):
        image = nib.load(ct_data / "imagesTr" / f"case_{i:03d}_0000.nii.gz")
        label = np.asarray(nib.load(ct_data / "labelsTr" / f"case_{i:03d}.nii.gz").dataobj)
        assert image.get_data_dtype() == np.int16
        thickness = float(np.linalg.norm(image.affine[:3, 2]))
        thicknesses.add(round(thickness, 3))
        # the slice count follows the thickness: the extent stays 12 x 3 mm
        assert image.shape[:2] == (48, 48) and abs(image.shape[2] * thickness - 36.0) <= thickness / 2
        hu = np.asarray(image.dataobj, dtype=np.float32)
        assert hu.min() < -900 and hu.max() > 400  # air and bone
        organ, lesion = label == 1, label == 2
        assert organ.sum() > lesion.sum() > 0  # structures of different sizes
        # the organ enhances; lesions are darker than the organ, and overlap it under the noise
        assert 70 < np.median(hu[organ]) < 120 and np.median(hu[lesion]) < np.median(hu[organ])
        assert np.percentile(hu[lesion], 95) > np.percentile(hu[organ], 5)
    assert len(thicknesses) > 1


def test_anatomy_plan_and_trained_settings(ct_data: Path, tmp_path: Path) -> None:
    dataset = read_dataset(ct_data)
    # the planned and the default fold of a run: task.json, and the plan only in the planned one
    planned, defaults = tmp_path / "planned" / "models", tmp_path / "defaults" / "models"
    for models in (planned, defaults):
        models.mkdir(parents=True)
        (models / "task.json").write_text(json.dumps(dataset.task.to_dict()))
    plan = plan_dataset(dataset, planned / "plans.json", progress=False)
    (norm,) = plan["normalization"]
    assert norm["scheme"] == "ct" and -100 < norm["clip"][0] < norm["mean"] < norm["clip"][1] < 400
    # 3 mm slices in 0.8 mm pixels and few of them: the coarse axis takes the 10th percentile of the thicknesses
    thicknesses = sorted(c["spacing"][2] for c in plan["fingerprint"]["cases"])
    assert plan["target_spacing"][2] == pytest.approx(np.percentile(thicknesses, 10), abs=1e-4)

    got = benchmark_plan.trained_settings(BUNDLE, planned.parent, {})
    assert got["normalisation"].startswith(f"ct: clip {norm['clip'][0]:.0f} to ")
    assert got["target spacing (mm)"] == " x ".join(f"{s:.2f}" for s in plan["target_spacing"])
    patch = [min(p, 64) for p in plan["configurations"]["3d"]["patch_size"]]
    assert got["patch size"] == " x ".join(map(str, patch)) and got["batch size"] == "1"
    own = benchmark_plan.trained_settings(BUNDLE, defaults.parent, {"roi_size": [48, 48, 32]})
    assert own["normalisation"] == "z-score per case over the nonzero voxels, per channel"
    assert own["patch size"] == "48 x 48 x 32" and own["batch size"] == "1"
    assert own["target spacing (mm)"] == " x ".join(f"{s:.2f}" for s in dataset.task.pixdim)


@pytest.mark.slow
def test_benchmark_plan_end_to_end(tmp_path: Path) -> None:
    data = make_synthetic_dataset(tmp_path / "data", anatomy=True, ct=True, num_channels=1, num_labels=2, num_cases=4,
                                  num_test=0, shape=(32, 32, 8), spacing=(0.8, 0.8, 3.0), seed=2)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "benchmark_plan.py"), "--bundle", BUNDLE, "--dataset_dir", str(data),
         "--folds", "2", "--epochs", "1", "--output_dir", str(out),
         "--extra", "--num_workers 0 --network_def#channels [4,8,16,32] --roi_size [32,32,16]"],
        capture_output=True, text=True, timeout=3000)
    assert result.returncode == 0, result.stderr[-3000:]
    table = (out / "plan_vs_defaults.md").read_text()
    assert "| normalisation | ct: clip" in table and "z-score per case over the nonzero voxels" in table
    assert "Dice organ" in table and "HD95 lesion" in table
    assert not (out / "defaults" / BUNDLE / "fold_0" / "models" / "plans.json").exists()
    assert (out / "planned" / BUNDLE / "fold_0" / "models" / "plans.json").is_file()


def test_compare_val_interval(ct_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["--bundles", BUNDLE, "--dataset_dir", str(ct_data), "--folds", "2", "--minutes", "1",
            "--output_dir", str(tmp_path / "out")]
    assert compare.main([*args, "--val_interval", "0"]) == 2
    commands = []

    def fake_run(command, log, what, timeout=None):  # record the training command instead of training
        commands.append(command)
        raise compare.CompareError(f"{what} stopped by the test")

    monkeypatch.setattr(compare, "run_logged", fake_run)
    assert compare.main([*args, "--val_interval", "3"]) == 1
    assert commands[0][commands[0].index("--val_interval") + 1] == "3"
    assert compare.main(args) == 1  # by default a run bounded by minutes validates after every epoch
    assert commands[1][commands[1].index("--val_interval") + 1] == "1"


@pytest.mark.parametrize("budget", [["--epochs", "4"], ["--minutes", "2.5", "--val_interval", "3"]])
def test_benchmark_plan_passes_its_budget_to_compare(budget: list[str], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """benchmark_plan.py takes compare.py's budget options (one helper) and hands them on unchanged."""
    calls = []

    def fake_main(argv):  # record the comparison's command line instead of running it
        calls.append(argv)
        return 3

    monkeypatch.setattr(compare, "main", fake_main)
    argv = ["--bundle", BUNDLE, "--dataset_dir", "data", "--folds", "3", *budget, "--output_dir", str(tmp_path)]
    assert benchmark_plan.main(argv) == 3
    (passed,) = calls
    assert passed[passed.index("--folds"):passed.index("--output_dir")] == ["--folds", "3", *budget]
    with pytest.raises(SystemExit):  # the budget stays required and one of the two
        benchmark_plan.main(["--bundle", BUNDLE, "--dataset_dir", "d", "--epochs", "1", "--minutes", "1",
                             "--output_dir", str(tmp_path)])


def test_budget_interrupts_a_child_that_inherited_sigint_ignored(tmp_path: Path) -> None:
    # a background job of a non-interactive shell starts with SIGINT ignored; the budget's SIGINT must still reach
    # the training run as KeyboardInterrupt (its handlers then stop it cleanly), not wait for the SIGKILL
    import signal

    child = ("import time\ntry:\n    time.sleep(600)\nexcept KeyboardInterrupt:\n    print('interrupted', flush=True)\n")
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        compare.run_logged([sys.executable, "-c", child], tmp_path / "child.log", "child", timeout=8)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert (tmp_path / "child.log").read_text().strip() == "interrupted"
