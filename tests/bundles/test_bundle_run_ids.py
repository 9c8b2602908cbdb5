"""What MONAI Label and 3D Slicer run: the whole train.json (run_id ""), "run" or "training" each train once."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import copy_bundle
from monai.bundle import ConfigParser


@pytest.mark.parametrize("run_id", ["", "run", "training"])
def test_any_run_id_starts_the_trainer_once(run_id: str, tmp_path: Path) -> None:
    bundle = copy_bundle("unet2d", tmp_path)
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    parser["bundle_root"] = str(bundle)
    parser["num_workers"] = 0
    parser["cache_rate"] = 0.0
    parser["train#trainer"] = "$__import__('unittest.mock', fromlist=['Mock']).Mock()"
    parser.get_parsed_content(run_id)
    trainer = parser.get_parsed_content("train#trainer")
    assert trainer.run.call_count == 1
