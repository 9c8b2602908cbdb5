"""Batch inference under faults and on re-runs (issue 21): output-side write errors, stale results, untrusted
bundles, misregistered channels, unreadable or foreign checkpoints, outputs inside the input folder, a cheap --help.

The bundles and data helpers are those of ``tests/test_segment.py`` (throw-away copies of ``bundles/arunet3d``).
"""

from __future__ import annotations

import errno
import re
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import REPO
from test_segment import (  # noqa: F401 - fixtures
    MONO,
    OBLIQUE_AFFINE,
    SHAPE,
    TINY,
    blob,
    brats_bundle,
    hidden_leftovers,
    mono_bundle,
    read_summary,
    run,
    save_nifti,
)

from custom_nets.inference import io as inference_io
from custom_nets.inference import model as inference_model


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def three_cases(folder: Path) -> Path:
    image, _ = blob()
    for name in ("a", "b", "c"):
        save_nifti(folder / f"{name}.nii.gz", image)
    return folder


class ModelBuilt(Exception):
    pass


@pytest.fixture()
def no_model(monkeypatch):
    """Fail the test if the network would be built (the checks must come first)."""
    def refuse(*args, **kwargs):
        raise ModelBuilt("the model was built before the output folder was checked")
    monkeypatch.setattr(inference_model.BundleSegmenter, "__init__", refuse)


# ----------------------------------------------------------------------------------------------------------------------
# Output-side faults
# ----------------------------------------------------------------------------------------------------------------------


def test_an_unwritable_output_folder_is_one_line_and_exit_2_before_the_model(mono_bundle: Path, tmp_path: Path,
                                                                             monkeypatch, capsys, no_model) -> None:
    inputs = three_cases(tmp_path / "in")
    output = tmp_path / "read-only"
    output.mkdir()
    real_open = open

    def read_only(path, mode="r", *args, **kwargs):  # root ignores permission bits: a read-only file system instead
        if any(m in mode for m in "wxa") and Path(path).parent == output:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, mode, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr("builtins.open", read_only)
        assert run(mono_bundle, inputs, output) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "not writable" in line and "Read-only file system" in line and str(output) in line

    # a folder that cannot be created (/proc refuses new folders, even for root)
    assert run(mono_bundle, inputs, Path("/proc/no-such-folder/out")) == 2
    assert "cannot be created" in one_line_error(capsys.readouterr().err)


def test_too_little_free_space_is_refused_before_the_model(mono_bundle: Path, tmp_path: Path, monkeypatch, capsys,
                                                           no_model) -> None:
    inputs = three_cases(tmp_path / "in")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(inference_io.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 4096, 4096))
    assert run(mono_bundle, inputs, tmp_path / "out") == 2
    assert "MiB free, less than" in one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize("workers", ["0", "1"])  # writing in turn, or in the background writer thread
def test_a_full_disk_mid_batch_stops_cleanly_with_a_complete_summary(mono_bundle: Path, tmp_path: Path, monkeypatch,
                                                                     capsys, workers: str) -> None:
    inputs = three_cases(tmp_path / "in")
    output = tmp_path / "out"
    real_save, real_usage = nib.save, shutil.disk_usage
    full = []

    def save(img, filename):
        if ".partial-b-" in str(filename):
            Path(filename).write_bytes(b"\x1f\x8b partial")
            full.append(True)  # the disk is full from now on
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(img, filename)

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(nib, "save", save)
    monkeypatch.setattr(inference_io.shutil, "disk_usage",
                        lambda path: usage(10**9, 10**9, 0) if full else real_usage(path))
    assert run(mono_bundle, inputs, output, "--workers", workers) == 2
    err = capsys.readouterr().err
    line = one_line_error(err)
    assert "stopped:" in line and "MiB free" in line and "1 not attempted" in line
    assert "FAILED b" in err and "No space left on device" in err
    summary = read_summary(output)
    assert {k: v["status"] for k, v in summary.items()} == {"a": "ok", "b": "failed"}
    written = {p.name for p in output.glob("*.nii.gz")}
    assert written == {"a.nii.gz"}, "summary.csv and the label maps must agree"
    assert not hidden_leftovers(output)

    full.clear()  # space freed: the same command does the rest
    monkeypatch.setattr(nib, "save", real_save)
    assert run(mono_bundle, inputs, output) == 0
    assert {k: v["status"] for k, v in read_summary(output).items()} == {"a": "skipped", "b": "ok", "c": "ok"}


def test_a_case_whose_path_is_too_long_fails_alone(mono_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    inputs = three_cases(tmp_path / "in")
    real_save = nib.save

    def save(img, filename):
        if ".partial-b-" in str(filename):
            raise OSError(errno.ENAMETOOLONG, "File name too long", str(filename))
        real_save(img, filename)

    monkeypatch.setattr(nib, "save", save)
    assert run(mono_bundle, inputs, tmp_path / "out") == 1  # the folder still takes files: the batch goes on
    summary = read_summary(tmp_path / "out")
    assert {k: v["status"] for k, v in summary.items()} == {"a": "ok", "b": "failed", "c": "ok"}
    assert "File name too long" in summary["b"]["error"] and "\n" not in summary["b"]["error"]


# ----------------------------------------------------------------------------------------------------------------------
# Provenance: a re-run with another model or other settings redoes the cases
# ----------------------------------------------------------------------------------------------------------------------


def test_a_rerun_with_another_checkpoint_or_settings_redoes_the_cases(mono_bundle: Path, tmp_path: Path,
                                                                       capsys) -> None:
    inputs = three_cases(tmp_path / "in")
    output = tmp_path / "out"
    assert run(mono_bundle, inputs, output) == 0
    first = read_summary(output)
    assert len(first["a"]["model_sha256"]) == 64 and first["a"]["bundle_version"]
    assert '"tta=false' not in first["a"]["settings"] and "tta=false" in first["a"]["settings"]
    assert "backend=\"eager\"" in first["a"]["settings"]

    assert run(mono_bundle, inputs, output) == 0  # same model and settings: skipped
    assert {v["status"] for v in read_summary(output).values()} == {"skipped"}
    assert read_summary(output)["a"]["model_sha256"] == first["a"]["model_sha256"]

    other = tmp_path / "other.pt"
    state = torch.load(mono_bundle / "models" / "model.pt", weights_only=True)
    torch.save({k: v * 2 for k, v in state.items()}, other)
    assert run(mono_bundle, inputs, output, "--checkpoint", str(other)) == 0
    second = read_summary(output)
    assert {v["status"] for v in second.values()} == {"ok"}, "another checkpoint must redo the cases"
    assert second["a"]["model_sha256"] != first["a"]["model_sha256"]
    assert "redoing 3 case(s) whose output was made by another model" in capsys.readouterr().err

    assert run(mono_bundle, inputs, output, "--checkpoint", str(other), "--tta") == 0
    assert {v["status"] for v in read_summary(output).values()} == {"ok"}, "--tta must redo the cases"
    assert "tta=true" in read_summary(output)["b"]["settings"]
    assert run(mono_bundle, inputs, output, "--checkpoint", str(other), "--tta", "--overlap", "0.1") == 0
    assert {v["status"] for v in read_summary(output).values()} == {"ok"}, "another overlap must redo the cases"
    assert "overlap=0.1" in read_summary(output)["b"]["settings"]


# ----------------------------------------------------------------------------------------------------------------------
# Trust and checkpoints
# ----------------------------------------------------------------------------------------------------------------------


def test_a_bundle_from_outside_the_repository_needs_trust(mono_bundle: Path, tmp_path: Path, capsys) -> None:
    inputs = three_cases(tmp_path / "in")
    marker = tmp_path / "marker"
    config = mono_bundle.parent / "evil"
    shutil.copytree(mono_bundle, config)
    text = (config / "configs" / "inference.json").read_text()
    (config / "configs" / "inference.json").write_text(
        text.replace('"imports": [', f'"evil": "$open({str(marker)!r}, \'w\').close()",\n    "imports": [', 1))
    assert run(config, inputs, tmp_path / "out", trust=False) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "a bundle runs code" in line and "--trust" in line
    assert not marker.exists() and not (tmp_path / "out").exists()

    from custom_nets.inference.cli import REPOSITORY_BUNDLES, _check_trust

    assert REPOSITORY_BUNDLES == REPO / "bundles"
    assert _check_trust(str(REPO / "bundles" / "arunet3d"), trusted=False) is None
    assert _check_trust(str(REPO / "bundles" / "arunet3d" / ".." / ".." / "scripts"), trusted=False) is not None


def test_garbage_and_foreign_checkpoints_get_clear_one_line_errors(mono_bundle: Path, brats_bundle: Path,
                                                                   tmp_path: Path, capsys) -> None:
    inputs = three_cases(tmp_path / "in")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    assert run(mono_bundle, inputs, tmp_path / "o1", "--checkpoint", str(garbage)) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "garbage.pt is not a PyTorch checkpoint" in line and "KeyError" not in line.split("(")[0]

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((brats_bundle / "models" / "model.pt").read_bytes()[:2000])
    assert run(mono_bundle, inputs, tmp_path / "o2", "--checkpoint", str(truncated)) == 2
    assert "truncated or damaged PyTorch checkpoint" in one_line_error(capsys.readouterr().err)

    # the 4-channel AR-UNet's weights given to the 1x1-convolution bundle: another network
    assert run(mono_bundle, inputs, tmp_path / "o3", "--checkpoint", str(brats_bundle / "models" / "model.pt")) == 2
    line = one_line_error(capsys.readouterr().err)
    assert "another network's or another bundle's checkpoint" in line and "overrides" not in line


# ----------------------------------------------------------------------------------------------------------------------
# Misregistered channels
# ----------------------------------------------------------------------------------------------------------------------


def test_a_misregistered_channel_fails_its_case_unless_resampling_is_allowed(brats_bundle: Path,
                                                                               tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    rng = np.random.default_rng(0)
    shifted = OBLIQUE_AFFINE.copy()
    shifted[:3, :3] *= 1.5  # 1.5x voxels
    shifted[:3, 3] += [40.0, 0.0, 0.0]  # 40 mm off
    for case, t2_affine in (("good", OBLIQUE_AFFINE), ("moved", shifted)):
        for name in ("flair", "t1", "t1ce"):
            save_nifti(inputs / case / f"{case}_{name}.nii.gz", rng.random(SHAPE, dtype=np.float32))
        save_nifti(inputs / case / f"{case}_t2.nii.gz", rng.random(SHAPE, dtype=np.float32), t2_affine)
    save_nifti(inputs / "smaller" / "smaller_t2.nii.gz", rng.random((30, 28, 20), dtype=np.float32))
    for name in ("flair", "t1", "t1ce"):
        save_nifti(inputs / "smaller" / f"smaller_{name}.nii.gz", rng.random(SHAPE, dtype=np.float32))

    output = tmp_path / "out"
    assert run(brats_bundle, inputs, output, overrides=TINY) == 1
    summary = read_summary(output)
    assert summary["good"]["status"] == "ok" and summary["good"]["note"] == ""
    for case in ("moved", "smaller"):
        assert summary[case]["status"] == "failed", case
        assert f"{case}_t2.nii.gz" in summary[case]["error"] and "--allow-resample" in summary[case]["error"]
    assert "mm away" in summary["moved"]["error"] and "shape (30, 28, 20)" in summary["smaller"]["error"]

    assert run(brats_bundle, inputs, output, "--allow-resample", overrides=TINY) == 0
    summary = read_summary(output)
    assert summary["moved"]["status"] == "ok" and "T2 resampled onto the FLAIR grid" in summary["moved"]["note"]
    assert summary["smaller"]["status"] == "ok" and "resampled" in summary["smaller"]["note"]
    assert summary["good"]["status"] == "skipped", "--allow-resample does not change a registered case's result"
    assert nib.load(output / "moved.nii.gz").shape == SHAPE


def test_resampling_puts_the_channel_on_the_reference_grid() -> None:
    data = np.zeros((1, 8, 8, 8), np.float32)
    data[0, 2, 3, 4] = 1.0
    moved = np.eye(4)
    moved[:3, 3] = [1.0, 0.0, 0.0]  # the channel's voxel (i, j, k) is the reference voxel (i + 1, j, k)
    out = inference_io._resample_onto(data, moved, np.eye(4), (8, 8, 8))
    assert out.shape == (1, 8, 8, 8) and out[0, 3, 3, 4] == pytest.approx(1.0) and out[0, 2, 3, 4] == 0.0


# ----------------------------------------------------------------------------------------------------------------------
# Outputs inside the input folder, --help, console command
# ----------------------------------------------------------------------------------------------------------------------


def test_predictions_inside_the_input_folder_are_not_cases_next_time(mono_bundle: Path, tmp_path: Path) -> None:
    inputs = three_cases(tmp_path / "in")
    assert run(mono_bundle, inputs, inputs / "predictions") == 0
    assert run(mono_bundle, inputs, tmp_path / "elsewhere") == 0
    assert set(read_summary(tmp_path / "elsewhere")) == {"a", "b", "c"}


def test_help_does_not_import_torch() -> None:
    """--help (and the folder checks) come before any heavy import; so the console command answers at once."""
    code = ("import sys\nfrom custom_nets.inference.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n"
            "    pass\nprint('torch imported' if 'torch' in sys.modules else 'no torch')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0 and "--allow-resample" in result.stdout, result.stderr
    assert result.stdout.strip().endswith("no torch")
    for module in (["-m", "custom_nets.inference"], [str(REPO / "scripts" / "segment.py")]):
        result = subprocess.run([sys.executable, *module, "--help"], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0 and "--trust" in result.stdout


def test_pyproject_declares_the_console_command_and_the_imported_packages() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["custom-nets-segment"] == "custom_nets.inference.cli:main"
    declared = {re.split(r"[<>=\[ ]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    for needed in ("monai", "numpy", "nibabel", "pillow", "scipy", "tqdm", "pytorch-ignite", "itk", "pydicom",
                   "tensorboard", "jsonschema", "fire"):
        assert needed in declared, f"{needed} is imported by custom_nets but not declared in pyproject.toml"
    assert not any(d.startswith("torch") for d in declared), "torch is pinned in requirements.txt, not here"
