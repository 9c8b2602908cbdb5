"""Per-case isolation for MONAI workflows (``custom_nets.isolation``): good cases are processed, bad ones named in one
line each, and the run ends with an error after the last case."""

from __future__ import annotations

import logging

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
