"""custom_nets.bundle, custom_nets.locate and custom_nets.data.naming, used by the configs. The transforms and losses
the configs use: tests/transforms and tests/losses."""

from __future__ import annotations

from pathlib import Path

from custom_nets.bundle import bundle_root, config_file_from_argv
from custom_nets.locate import root_of_config
from custom_nets.data.naming import case_name_from_path, case_output_name


def test_config_file_from_argv_forms(tmp_path):
    cfg = str(tmp_path / "b" / "configs" / "train.json")
    assert config_file_from_argv(["x", "run", "--config_file", cfg]) == cfg
    assert config_file_from_argv(["x", f"--config_file={cfg}"]) == cfg
    assert config_file_from_argv(["x", "--config_file", f"['{cfg}', 'other.json']"]) == cfg
    assert config_file_from_argv(["x", "run"]) is None
    assert root_of_config(cfg) == (tmp_path / "b").resolve()


def test_bundle_root_from_config_workflow(tmp_path, monkeypatch):
    """A config parsed by MONAI's ConfigWorkflow finds its own bundle folder, whatever the working directory."""
    from monai.bundle import ConfigWorkflow

    configs = tmp_path / "my bundle" / "configs"
    configs.mkdir(parents=True)
    (configs / "c.json").write_text(
        '{"imports": ["$import custom_nets"], "root": "$custom_nets.bundle.bundle_root()", "initialize": ["$@root"]}'
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr("sys.argv", ["python"])
    workflow = ConfigWorkflow(config_file=str(configs / "c.json"), workflow_type=None, logging_file=False, meta_file=None)
    workflow.initialize()  # resolves "root" while MONAI's workflow is on the call stack, as bundle runs do
    assert Path(workflow.parser.get_parsed_content("root")) == (tmp_path / "my bundle").resolve()


def test_bundle_root_falls_back_to_default(monkeypatch, tmp_path):
    monkeypatch.setattr("sys.argv", ["python"])
    assert Path(bundle_root(default=tmp_path)) == tmp_path.resolve()


def test_case_names():
    assert case_name_from_path("/d/BraTS20_001/BraTS20_001_t1ce.nii.gz") == "BraTS20_001"
    assert case_name_from_path("BraTS-GLI-00001-000-t2f.nii.gz") == "BraTS-GLI-00001-000"
    assert case_name_from_path("scan.nii") == "scan"
    assert case_output_name({"filename_or_obj": ["/d/c1/c1_flair.nii.gz", "/d/c1/c1_t1.nii.gz"]})["subject"] == "c1"
