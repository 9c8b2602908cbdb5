"""custom_nets.data.demo: each task's synthetic demo data in the canonical layout, deterministic and shared."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest

from custom_nets.data import demo
from custom_nets.files import PARTIAL_PREFIX
from custom_nets.data.errors import DatasetError

TINY = {
    "brats": {"num_cases": 2, "shape": [24, 24, 24]},
    "lgg": {"num_patients": 2, "slices_per_patient": 2, "size": 32},
    "kvasir": {"num_images": 2},
    "isic": {"num_images": 2},
    "uwmadison": {"num_cases": 2, "days_per_case": 1, "slices_per_day": 3, "size": [32, 32]},
}
COUNT = {"brats": 2, "lgg": 4, "kvasir": 2, "isic": 2, "uwmadison": 6}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("task", list(TINY))
def test_make_demo_writes_a_deterministic_canonical_dataset(task, tmp_path):
    out = demo.make_demo(task, tmp_path / "a", **TINY[task])
    info = json.loads((out / "dataset.json").read_text())
    assert info["numTraining"] == COUNT[task] == len(list((out / "labelsTr").iterdir()))
    expected = {k: v for k, v in demo.DEMO_TASKS[task].items() if k not in ("spatial_dims", "spacing")}
    training = info.pop("training", None)  # grouped tasks list their cases with the patient of each
    assert {**info, "numTraining": None} == {**expected, "numTraining": None}
    if task in ("lgg", "uwmadison"):
        assert len(training) == COUNT[task] and all(entry["group"] for entry in training)
        assert len({entry["group"] for entry in training}) < COUNT[task]
    else:
        assert training is None
    assert "SYNTHETIC" in info["description"]
    marker = json.loads((out / demo.DEMO_FILE).read_text())
    assert marker["task"] == task and marker["parameters"] == {**marker["parameters"], **TINY[task]}
    assert _files(demo.make_demo(task, tmp_path / "b", **TINY[task])) == _files(out)  # deterministic
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temporary folder left


def test_demo_tasks_keep_todays_default_sizes():
    """The bundles' learning tests were tuned on these demo sizes: the canonical demo keeps them."""
    counts = {task: info["numTraining"] for task, info in demo.DEMO_TASKS.items()}
    assert counts == {"brats": 8, "lgg": 72, "kvasir": 16, "isic": 16, "uwmadison": 64}
    assert demo.DEMO_TASKS["brats"]["spatial_dims"] == 3 and demo.DEMO_TASKS["lgg"]["spatial_dims"] == 2
    assert len(demo.DEMO_TASKS["brats"]["channel_names"]) == 4
    assert demo.DEMO_TASKS["uwmadison"]["labels"] == {"background": 0, "large_bowel": 1, "small_bowel": 2, "stomach": 3}


def test_a_demo_of_an_older_version_is_made_anew(tmp_path):
    out = demo.make_demo("kvasir", tmp_path / "d", num_images=2)
    marker = json.loads((out / demo.DEMO_FILE).read_text())
    (out / demo.DEMO_FILE).write_text(json.dumps({**marker, "demo_version": 1}))
    assert demo.make_demo("kvasir", out, num_images=2) == out
    assert json.loads((out / demo.DEMO_FILE).read_text()) == marker


def test_make_demo_reuses_refuses_and_overwrites(tmp_path):
    out = demo.make_demo("kvasir", tmp_path / "d", num_images=2)
    stamp = (out / "dataset.json").stat().st_mtime_ns
    assert demo.make_demo("kvasir", out, num_images=2) == out
    assert (out / "dataset.json").stat().st_mtime_ns == stamp  # reused, not rewritten
    with pytest.raises(DatasetError, match=r"holds the kvasir demo made with .*'num_images': 2"):
        demo.make_demo("kvasir", out, num_images=3)
    with pytest.raises(DatasetError, match="not the isic demo"):
        demo.make_demo("isic", out, num_images=2)
    demo.make_demo("kvasir", out, overwrite=True, num_images=3)
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(PARTIAL_PREFIX)]


def test_make_demo_refuses_other_data_and_bad_arguments(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "scan.png").write_bytes(b"x")
    with pytest.raises(DatasetError, match="not a demo made by make_demo"):
        demo.make_demo("isic", foreign, num_images=2)
    assert os.listdir(foreign) == ["scan.png"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatasetError, match="is not a folder"):
        demo.make_demo("isic", tmp_path / "file", num_images=2)
    with pytest.raises(ValueError, match="unknown demo task"):
        demo.make_demo("mri", tmp_path / "x")
    with pytest.raises(ValueError, match="unknown kvasir demo parameter"):
        demo.make_demo("kvasir", tmp_path / "x", shape=(3, 3))
    with pytest.raises(ValueError, match="num_images"):
        demo.make_demo("kvasir", tmp_path / "x", num_images=0)
    assert not (tmp_path / "x").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "mine"]


def test_an_empty_folder_is_filled(tmp_path):
    (tmp_path / "empty").mkdir()
    out = demo.make_demo("isic", tmp_path / "empty", num_images=2)
    assert (out / "dataset.json").is_file() and demo.read_demo_marker(out)["task"] == "isic"


def test_a_demo_made_meanwhile_by_another_process_is_shared(tmp_path, monkeypatch):
    """Bundles (or ranks) asking at once: the one that finishes second drops its copy and uses the first's."""
    out = tmp_path / "shared"
    generate = demo._GENERATORS["isic"]
    calls = []

    @functools.wraps(generate)  # same signature: make_demo reads the parameters' defaults from it
    def generate_while_another_process_finishes(folder, **parameters):
        calls.append(folder)
        generate(folder, **parameters)
        if len(calls) == 1:  # the "other process" writes the same demo before this one is done
            demo.make_demo("isic", out, num_images=2)

    monkeypatch.setitem(demo._GENERATORS, "isic", generate_while_another_process_finishes)
    assert demo.make_demo("isic", out, num_images=2) == out
    first_stamp = (out / "dataset.json").stat().st_mtime_ns
    assert len(calls) == 2 and demo.read_demo_marker(out)["parameters"]["num_images"] == 2
    assert demo.make_demo("isic", out, num_images=2) == out and (out / "dataset.json").stat().st_mtime_ns == first_stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared"]
