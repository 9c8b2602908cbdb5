"""custom_nets.bundle, transforms, losses and handlers used by the configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.losses import DiceLoss
from monai.transforms import ConvertToMultiChannelBasedOnBratsClasses

from custom_nets.bundle import bundle_root, config_file_from_argv
from custom_nets.locate import root_of_config
from custom_nets.data.naming import case_name_from_path, case_output_name
from custom_nets.losses import StackedDeepSupervisionLoss
from custom_nets.transforms import MonaiLabelOutputd, RegionsToBratsLabels, SelectFinalOutputd


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


@pytest.mark.parametrize("et_label", [4, 3])
def test_regions_to_brats_labels_inverts_monai_conversion(et_label):
    labels = torch.zeros(1, 6, 6, 6, dtype=torch.uint8)
    labels[0, 1:5, 1:5, 1:5] = 2
    labels[0, 2:4, 2:4, 2:4] = 1
    labels[0, 3, 3, 3] = et_label
    regions = ConvertToMultiChannelBasedOnBratsClasses(et_label=et_label)(labels).float()
    back = RegionsToBratsLabels(et_label=et_label)(regions)
    assert back.shape == labels.shape and back.dtype == torch.uint8
    assert torch.equal(back, labels)


def test_regions_to_brats_labels_enforces_nesting():
    regions = torch.zeros(3, 4, 4)
    regions[2, 0, 0] = 1  # ET outside WT/TC: not a tumour voxel
    regions[1, 1, 1] = regions[2, 1, 1] = 1  # ET inside WT but outside TC
    out = RegionsToBratsLabels()(regions)
    assert out[0, 0, 0] == 0 and out[0, 1, 1] == 2
    with pytest.raises(ValueError, match="3 region channels"):
        RegionsToBratsLabels()(torch.zeros(2, 4, 4))


def test_stacked_deep_supervision_loss():
    target = (torch.rand(2, 3, 8, 8) > 0.5).float()
    single = torch.randn(2, 3, 8, 8, requires_grad=True)
    base = DiceLoss(sigmoid=True)
    loss = StackedDeepSupervisionLoss(base, weights=[1.0, 0.5])
    assert torch.allclose(loss(single, target), base(single, target))
    stacked = torch.randn(2, 2, 3, 8, 8, requires_grad=True)
    expected = base(stacked[:, 0], target) + 0.5 * base(stacked[:, 1], target)
    value = loss(stacked, target)
    assert torch.allclose(value, expected)
    value.backward()
    assert stacked.grad[:, 1].abs().sum() > 0, "every head receives gradient"
    with pytest.raises(ValueError, match="fits neither"):
        loss(torch.randn(2, 3, 8), target)


def test_select_final_output():
    data = {"pred": torch.randn(4, 3, 8, 8)}
    assert SelectFinalOutputd("pred", reference_ndim=3)(data)["pred"].shape == (3, 8, 8)
    data = {"pred": torch.randn(3, 8, 8)}
    assert SelectFinalOutputd("pred", reference_ndim=3)(data)["pred"].shape == (3, 8, 8)


def test_monai_label_output_only_acts_on_monai_label_requests():
    """Identity without MONAI Label's ``image_path`` key (bundle runs, custom_nets.inference), so it can end any
    inference postprocessing after SaveImaged."""
    pred = torch.zeros(1, 6, 4)
    data = {"image": torch.zeros(3, 6, 4), "pred": pred}
    out = MonaiLabelOutputd("pred")(data)
    assert out["pred"] is pred and "result_extension" not in out


def test_monai_label_output_label_map():
    pred = torch.zeros(1, 6, 4)
    pred[0, 1, 2] = 1.0
    out = MonaiLabelOutputd("pred")({"pred": pred, "image_path": "/tmp/x.tif"})
    assert out["pred"].shape == (6, 4) and out["pred"].dtype == torch.uint8 and out["pred"][1, 2] == 1
    assert "result_extension" not in out  # TIFF holds a label map: MONAI Label keeps the input's type
    # (y, x) images (reverse_indexing=False) come out as MONAI Label's (x, y); JPEG inputs get a PNG result
    out = MonaiLabelOutputd("pred", reverse_indexing=False)({"pred": pred, "image_path": "/tmp/x.JPG"})
    assert out["pred"].shape == (4, 6) and out["pred"][2, 1] == 1 and out["result_extension"] == ".png"
    # a request's own result_extension wins
    out = MonaiLabelOutputd("pred")({"pred": pred, "image_path": "x.jpg", "result_extension": ".nii.gz"})
    assert out["result_extension"] == ".nii.gz"
    with pytest.raises(ValueError, match="one-channel"):
        MonaiLabelOutputd("pred")({"pred": torch.zeros(2, 6, 4), "image_path": "x.png"})


def test_monai_label_output_multi_label_later_channel_wins():
    pred = torch.zeros(3, 2, 2)
    pred[0, 0, :] = 1  # large bowel
    pred[2, 0, 1] = 1  # stomach over large bowel
    pred[1, 1, 1] = 1  # small bowel
    out = MonaiLabelOutputd("pred", multi_label=True)({"pred": pred, "image_path": "x.png"})
    assert out["pred"].tolist() == [[1, 3], [0, 2]] and out["pred"].dtype == torch.uint8


def test_case_names():
    assert case_name_from_path("/d/BraTS20_001/BraTS20_001_t1ce.nii.gz") == "BraTS20_001"
    assert case_name_from_path("BraTS-GLI-00001-000-t2f.nii.gz") == "BraTS-GLI-00001-000"
    assert case_name_from_path("scan.nii") == "scan"
    assert case_output_name({"filename_or_obj": ["/d/c1/c1_flair.nii.gz", "/d/c1/c1_t1.nii.gz"]})["subject"] == "c1"
