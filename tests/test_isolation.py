"""Per-case isolation for MONAI workflows (``custom_nets.isolation``): good cases are processed, bad ones named in one
line each, and the run ends with an error after the last case."""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedEvaluator
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from custom_nets.handlers import CaseProgressLogger
from custom_nets.isolation import CasesFailed, IsolatedCases, IsolatedLoader


def make_cases(folder) -> list[dict]:
    import nibabel as nib

    cases = []
    for name in ("good1", "empty", "good2", "text", "good3"):
        path = folder / f"{name}.nii.gz"
        if name == "empty":
            path.write_bytes(b"")
        elif name == "text":
            path.write_text("not an image")
        else:
            nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), str(path))
        cases.append({"image": str(path)})
    return cases


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_cases_fail_alone_and_the_run_ends_non_zero(tmp_path, caplog, workers: int) -> None:
    transform = Compose([LoadImaged(keys="image", image_only=True), EnsureChannelFirstd(keys="image")])
    dataset = IsolatedCases(Dataset(make_cases(tmp_path), transform))
    loader = IsolatedLoader(DataLoader(dataset, batch_size=1, num_workers=workers))
    seen = []

    class Record:
        def attach(self, engine):
            engine.add_event_handler(Events.ITERATION_COMPLETED,
                                     lambda e: seen.append(str(e.state.batch[0]["image"].meta["filename_or_obj"])))

    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=loader, network=torch.nn.Identity(),
                                    val_handlers=[loader, Record(), CaseProgressLogger()])
    caplog.set_level(logging.INFO)
    with pytest.raises(CasesFailed) as error:
        evaluator.run()
    assert [name.rsplit("/", 1)[-1] for name in seen] == ["good1.nii.gz", "good2.nii.gz", "good3.nii.gz"]
    assert "2 of 5 case(s) failed" in str(error.value) and "empty.nii.gz" in str(error.value)
    failed = [r.getMessage() for r in caplog.records if r.getMessage().startswith("FAILED")]
    assert len(failed) == 2 and all("\n" not in line for line in failed)
    assert "empty.nii.gz" in failed[0] and "text.nii.gz" in failed[1]
    progress = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[")]
    assert [line.split("]")[0] for line in progress] == ["[1/5", "[2/5", "[3/5"] and "good3" in progress[-1]
    assert all(re.search(r" ETA 0:00:\d\d$", line) for line in progress), progress  # the trainer's h:mm:ss


def test_a_run_without_failures_completes(tmp_path) -> None:
    good = [c for c in make_cases(tmp_path) if "good" in c["image"]]
    loader = IsolatedLoader(DataLoader(IsolatedCases(Dataset(good, LoadImaged(keys="image"))), batch_size=1))
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=loader, network=torch.nn.Identity(),
                                    val_handlers=[loader])
    evaluator.run()
    assert loader.succeeded == 3 and loader.failures == []


def test_a_run_where_every_case_fails_still_ends_with_the_one_line_report(tmp_path) -> None:
    bad = [c for c in make_cases(tmp_path) if "good" not in c["image"]]
    loader = IsolatedLoader(DataLoader(IsolatedCases(Dataset(bad, LoadImaged(keys="image"))), batch_size=1))
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=loader, network=torch.nn.Identity(),
                                    val_handlers=[loader])
    with pytest.raises(CasesFailed, match=r"^2 of 2 case\(s\) failed"):
        evaluator.run()


TINY = {"network_def#channels": [4, 8, 16, 32], "inference_roi_size": [32, 32, 32]}


def own_data_bundle(tmp_path: Path, num_cases: int) -> tuple[Path, Path]:
    """A 2-channel, 2-label synthetic dataset (2 test cases) and an AR-UNet bundle with random weights and its task."""
    from conftest import copy_bundle, save_random_weights

    from custom_nets.data import read_dataset
    from custom_nets.data.dataset import prepare_task
    from custom_nets.data.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "own", num_channels=2, num_labels=2, num_cases=num_cases, num_test=2,
                                  shape=(24, 20, 12))
    bundle = copy_bundle("arunet3d", tmp_path)
    prepare_task(read_dataset(data).task, bundle / "models")
    save_random_weights(bundle, TINY)
    return data, bundle


def run_route(config: Path, dataset_dir: Path, output: Path, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m monai.bundle run --config_file CONFIG --dataset_dir DIR --output_dir OUT`` with tiny settings."""
    args = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(config),
            "--dataset_dir", str(dataset_dir), "--output_dir", str(output), "--num_workers", "0"]
    for key, value in TINY.items():
        args += [f"--{key}", json.dumps(value)]
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def truncate(path: Path) -> None:
    """Keep a NIfTI's header but cut its data in half (read_header passes, reading the voxels fails)."""
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2]))


def test_bundle_route_segments_good_cases_names_bad_ones_and_exits_non_zero(tmp_path) -> None:
    """``python -m monai.bundle run --config_file inference.json --dataset_dir FOLDER`` on 2 good and 3 bad cases
    (issue 21): the good label maps are written, each bad case is one FAILED line naming its file (an empty channel
    file and one whose header promises 8e12 voxels, caught by the datalist's header check and never read; a truncated
    one, failing on reading), the run ends
    with one error line and a non-zero exit status, and nothing is written for the bad cases."""
    data, bundle = own_data_bundle(tmp_path, num_cases=2)
    inputs = tmp_path / "in"
    shutil.copytree(data / "imagesTs", inputs)
    good = sorted({p.name.rsplit("_", 1)[0] for p in inputs.iterdir()})
    a_channel = sorted(inputs.iterdir())[1]
    shutil.copy(a_channel, inputs / "empty_0001.nii.gz")
    (inputs / "empty_0000.nii.gz").write_bytes(b"")
    shutil.copy(a_channel, inputs / "truncated_0001.nii.gz")
    shutil.copy(a_channel, inputs / "truncated_0000.nii.gz")
    truncate(inputs / "truncated_0000.nii.gz")
    shutil.copy(a_channel, inputs / "huge_0001.nii.gz")
    header = bytearray(gzip.decompress(a_channel.read_bytes())[:352])
    header[42:48] = np.array([20000, 20000, 20000], dtype="<i2").tobytes()  # dim[1:4]: 8e12 voxels, no data
    (inputs / "huge_0000.nii.gz").write_bytes(gzip.compress(bytes(header)))
    output = tmp_path / "out"
    result = run_route(bundle / "configs" / "inference.json", inputs, output, tmp_path)

    assert result.returncode != 0, result.stderr[-3000:]
    assert sorted(p.name for p in output.iterdir()) == [f"{case}_seg.nii.gz" for case in good], result.stderr[-3000:]
    log = result.stdout + result.stderr
    failed = [line for line in log.splitlines() if "FAILED /" in line]
    assert len(failed) == 3, log[-3000:]
    assert any("empty_0000" in line for line in failed) and any("truncated_0000" in line for line in failed)
    assert any("huge_0000" in line and "implausible size" in line for line in failed)  # refused before reading
    assert "Traceback" not in log, log[-3000:]
    errors = [line for line in log.splitlines() if line.startswith("error: CasesFailed: 3 of 5 case(s) failed")]
    named = [f"{inputs / name}_0000.nii.gz" in errors[0] for name in ("empty", "huge", "truncated")] if errors else []
    assert len(errors) == 1 and all(named), log[-3000:]


def test_evaluation_route_scores_good_cases_and_exits_non_zero(tmp_path) -> None:
    """``evaluate.json`` on a labelled dataset with one image damaged after its header: the other cases are scored
    (metrics.csv), the damaged one is one FAILED line, and the run ends with one error line, non-zero."""
    import csv

    data, bundle = own_data_bundle(tmp_path, num_cases=3)
    damaged = sorted((data / "imagesTr").glob("*_0000.nii.gz"))[1]
    truncate(damaged)
    output = tmp_path / "eval"

    result = run_route(bundle / "configs" / "evaluate.json", data, output, tmp_path)

    log = result.stdout + result.stderr
    assert result.returncode != 0, log[-3000:]
    failed = [line for line in log.splitlines() if "FAILED /" in line]
    assert len(failed) == 1 and damaged.name in failed[0], log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert sum(line.startswith("error: CasesFailed: 1 of 3 case(s) failed") for line in log.splitlines()) == 1
    with open(output / "metrics.csv", newline="") as f:
        cases = [row["case"] for row in csv.DictReader(f) if row["case"] != "mean"]
    assert len(cases) == 2 and damaged.name[: -len("_0000.nii.gz")] not in cases, cases
