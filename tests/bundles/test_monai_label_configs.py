"""What MONAI Label does to a bundle's configs, without the server (the server itself:
tests/bundles/test_monai_label.py).

MONAI Label (0.8.5) trains a bundle by running ``train.json``'s root id (3D Slicer sends ``run_id ""``) with
``train#dataset#data`` / ``validate#dataset#data`` set to its own datalists; inference reads the study it is given
(the check of that study, TaskInputd: tests/transforms/test_inputs.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import bundle_names, copy_bundle
from monai.bundle import ConfigParser

from custom_nets.data import DatasetError, Task, open_dataset, trained_task
from custom_nets.data.dataset import TASK_FILE, DemoDataset, demo_task

MONAI_LABEL_DATA = [{"image": "/nowhere/study.nii.gz", "label": "/nowhere/labels/final/study.nii.gz"}]


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("name", bundle_names())
def test_root_run_with_monai_labels_datalists_builds_no_demo(name: str, tmp_path: Path) -> None:
    """The root id with MONAI Label's overrides trains once on its datalists, with the served model's task, and
    writes nothing in the bundle but models/ (task.json) and runs/ (logs): no demo data, no datalist of its own."""
    bundle = copy_bundle(name, tmp_path)
    before = _files(bundle)
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    parser.update({"bundle_root": str(bundle), "num_workers": 0, "cache_rate": 0.0, "device": "cpu",
                   "train#dataset#data": MONAI_LABEL_DATA, "validate#dataset#data": MONAI_LABEL_DATA,
                   "train#trainer#max_epochs": 1})
    parser["train#trainer"] = "$__import__('unittest.mock', fromlist=['Mock']).Mock()"
    parser.get_parsed_content("")
    assert parser.get_parsed_content("train#trainer").run.call_count == 1
    assert parser.get_parsed_content("train_datalist") == MONAI_LABEL_DATA
    assert parser.get_parsed_content("val_datalist") == MONAI_LABEL_DATA
    assert parser.get_parsed_content("task") == trained_task(bundle / "models", parser.get_parsed_content("data").demo)
    added = _files(bundle) - before
    assert not (bundle / "demo_data").exists(), sorted(added)
    assert all(p.split("/")[0] in ("models", "runs") for p in added), sorted(added)


def test_monai_label_trains_the_served_models_task(tmp_path: Path) -> None:
    """A served model trained on other data (its models/task.json: 2 channels, 2 labels) is trained by MONAI Label
    as that task; the demo (1 label, RGB) is not generated, and a run that does read it refuses it in one line."""
    bundle = copy_bundle("unet2d", tmp_path)
    own = Task("own", ("T1", "T2"), ("a", "b"), ((1,), (2,)), (1, 2), 2, None)
    (bundle / "models").mkdir()
    (bundle / "models" / TASK_FILE).write_text(__import__("json").dumps(own.to_dict()))
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    parser.update({"bundle_root": str(bundle), "num_workers": 0, "cache_rate": 0.0, "device": "cpu",
                   "train#dataset#data": MONAI_LABEL_DATA, "validate#dataset#data": MONAI_LABEL_DATA})
    assert parser.get_parsed_content("task") == own
    network = parser.get_parsed_content("network_def")
    assert network(torch.zeros(1, 2, 32, 32)).shape[1] == 2
    assert not (bundle / "demo_data").exists()
    with pytest.raises(DatasetError, match=r"the model was trained on 'own'.*another ckpt_dir, or delete .*task.json"):
        parser.get_parsed_content("data").split()


def test_demo_dataset_is_generated_when_its_cases_are_used(tmp_path: Path) -> None:
    data = open_dataset("demo", demo="kvasir", demo_dir=tmp_path / "demo", spatial_dims=2)
    assert isinstance(data, DemoDataset)
    task = data.task
    assert task == demo_task("kvasir") and not (tmp_path / "demo").exists()
    train, val = data.split(val_fraction=0.25, seed=0)
    assert (tmp_path / "demo" / "dataset.json").is_file() and len(train) + len(val) == len(data.training) == 16
    assert data.task == task  # the generated demo's task is the one announced before
    assert open_dataset("demo", demo="kvasir", demo_dir=tmp_path / "demo").root == data.root
