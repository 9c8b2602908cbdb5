"""Every bundle follows the MONAI bundle specification and its generated configs are up to date."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest
from conftest import BUNDLES, REPO, bundle_names, run_bundle

SCHEMA = REPO / "custom_nets" / "schemas" / "meta_schema.json"
REQUIRED_FILES = [
    "configs/metadata.json",
    "configs/train.json",
    "configs/inference.json",
    "configs/evaluate.json",
    "configs/multi_gpu_train.json",
    "configs/logging.conf",
    "docs/README.md",
    "LICENSE",
    "large_files.yml",
]


def test_there_are_bundles():
    assert "arunet3d" in bundle_names()


@pytest.mark.parametrize("name", bundle_names())
def test_required_files(name):
    missing = [f for f in REQUIRED_FILES if not (BUNDLES / name / f).is_file()]
    assert not missing, f"{name} lacks {missing}"


@pytest.mark.parametrize("name", bundle_names())
def test_metadata_matches_schema(name):
    metadata = json.loads((BUNDLES / name / "configs" / "metadata.json").read_text())
    jsonschema.validate(metadata, json.loads(SCHEMA.read_text()))
    assert metadata["version"] in metadata["changelog"], "version must be a key of changelog"
    for tensor in [*metadata["network_data_format"]["inputs"].values(), *metadata["network_data_format"]["outputs"].values()]:
        assert len(tensor["channel_def"]) == tensor["num_channels"]


@pytest.mark.parametrize("name", bundle_names())
def test_label_names_are_keyed_by_label_map_values(name):
    """MONAI Label shows ``outputs.pred.channel_def`` as ``{name.lower(): int(key)}`` (background entries dropped), so
    its keys must be the values of the label map inference writes, every foreground label named once."""
    metadata = json.loads((BUNDLES / name / "configs" / "metadata.json").read_text())
    channel_def = metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert channel_def == metadata["label_values"], "label names must describe the written label map's values"
    assert all(int(value) > 0 for value in channel_def), "0 is background and needs no entry"
    names = [label.lower() for label in channel_def.values()]
    assert "background" not in names and len(set(names)) == len(names), f"labels must be distinct: {names}"
    assert len(metadata["network_output_channels"]) == metadata["network_data_format"]["outputs"]["pred"]["num_channels"]


def test_schema_rejects_incomplete_metadata():
    metadata = json.loads((BUNDLES / "arunet3d" / "configs" / "metadata.json").read_text())
    schema = json.loads(SCHEMA.read_text())
    del metadata["network_data_format"]["outputs"]["pred"]["channel_def"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(metadata, schema)


@pytest.mark.parametrize("name", bundle_names())
def test_monai_verify_metadata_offline(name, tmp_path):
    """MONAI's own ``verify_metadata`` with the project's schema on disk: nothing is downloaded."""
    run_bundle(
        ["verify_metadata", "--meta_file", str(BUNDLES / name / "configs" / "metadata.json"), "--filepath", str(SCHEMA)],
        cwd=tmp_path,
    )


def test_generated_configs_are_up_to_date():
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "build_bundle_configs.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
