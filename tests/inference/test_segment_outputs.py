"""Optional outputs of batch inference (``--save-probabilities``, ``--uncertainty``, ``--statistics``; issue 17).

The bundles are the throw-away ones of ``tests/test_segment.py``: ``mono`` (a 1x1 convolution: every region channel
is ``sigmoid(10 * normalised intensity)``, flip-equivariant, so all TTA passes agree), ``brats`` (the real AR-UNet
pipeline with tiny widths and random weights: probabilities spread around 0.5 and an ``Invertd`` that resamples), and
here ``shifted``: a 3x3x3 convolution that only reads the next voxel along the first axis, so a flipped pass reads
the previous one and the passes disagree exactly at the edges of a structure along that axis.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from test_segment import (  # noqa: F401 - fixtures
    OBLIQUE_AFFINE,
    SHAPE,
    TINY,
    _brats_case,
    _copy_bundle,
    blob,
    brats_bundle,
    hidden_leftovers,
    mono_bundle,
    read_summary,
    run,
    save_itk,
    save_nifti,
)

from custom_nets.data.dataset import Task, demo_task, prepare_task
from custom_nets.files import PARTIAL_PREFIX
from custom_nets.inference import outputs
from custom_nets.inference.io import Geometry
from custom_nets.transforms.regions import regions_to_label_map

EXACT = ["--override", "inferer#mode=constant"]  # no Gaussian weighting: the flipped passes are bit-identical
PLAIN_AFFINE = np.diag([1.5, 1.5, 3.0, 1.0])
BRATS_NAMES = ["tumor core", "whole tumor", "enhancing tumor"]


@pytest.fixture(scope="module")
def shifted_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle = _copy_bundle(tmp_path_factory.mktemp("bundles") / "shifted bundle")
    config_file = bundle / "configs" / "inference.json"
    config = json.loads(config_file.read_text())
    config["network_def"] = {"_target_": "torch.nn.Conv3d", "in_channels": 1, "out_channels": 3, "kernel_size": 3,
                             "padding": 1}
    config_file.write_text(json.dumps(config, indent=4))
    meta_file = bundle / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["network_data_format"]["inputs"]["image"].update(num_channels=1, channel_def={"0": "image"})
    meta.pop("input_channel_suffixes")
    meta_file.write_text(json.dumps(meta, indent=4))
    brats = demo_task("brats")
    prepare_task(Task("mono", ("image",), brats.label_names, brats.regions, brats.output_values, 3), bundle / "models")
    conv = torch.nn.Conv3d(1, 3, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, 0, 2, 1, 1] = 10.0  # output(i) = 10 * input(i + 1) along the first axis
        conv.bias.zero_()
    torch.save(conv.state_dict(), bundle / "models" / "model.pt")
    return bundle


def _regions(probabilities: np.ndarray) -> np.ndarray:
    brats = demo_task("brats")
    prob = torch.from_numpy(np.asarray(probabilities, dtype=np.float32))
    return regions_to_label_map(prob, brats.regions, brats.output_values, 0.5)[0].numpy()


# ----------------------------------------------------------------------------------------------------------------------
# --save-probabilities
# ----------------------------------------------------------------------------------------------------------------------


def test_probabilities_are_on_the_input_grid_and_give_the_label_map(brats_bundle: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    _brats_case(inputs / "case", "case", seed=3)
    output = tmp_path / "out"
    assert run(brats_bundle, inputs, output, "--save-probabilities", overrides=TINY) == 0

    label = nib.load(output / "case.nii.gz")
    probs = nib.load(output / "case_probabilities.nii.gz")
    assert probs.shape == (*SHAPE, 3) and probs.get_data_dtype() == np.float32  # channels in the 4th dimension
    assert np.allclose(probs.affine, OBLIQUE_AFFINE, atol=1e-5) and np.allclose(label.affine, OBLIQUE_AFFINE, atol=1e-5)
    p = np.moveaxis(np.asarray(probs.dataobj), 3, 0)
    assert p.min() >= 0.0 and p.max() <= 1.0 and p.std() > 0  # random weights: real, varied probabilities
    np.testing.assert_array_equal(_regions(p), np.asarray(label.dataobj))
    info = json.loads((output / "probabilities.json").read_text())
    assert [c["name"] for c in info["channels"]] == BRATS_NAMES
    assert [c["label_values"] for c in info["channels"]] == [[1, 3], [1, 2, 3], [3]]
    assert [c["writes"] for c in info["channels"]] == [1, 2, 3]

    # npz: float16, channel first; the label map is made from the stored values, so it is reproduced exactly too
    output = tmp_path / "npz"
    assert run(brats_bundle, inputs, output, "--save-probabilities", "npz", overrides=TINY) == 0
    with np.load(output / "case_probabilities.npz") as f:
        assert f["probabilities"].dtype == np.float16 and f["probabilities"].shape == (3, *SHAPE)
        assert list(f["channel_names"]) == BRATS_NAMES and np.allclose(f["affine"], OBLIQUE_AFFINE, atol=1e-5)
        p16 = f["probabilities"].astype(np.float32)
    np.testing.assert_array_equal(_regions(p16), np.asarray(nib.load(output / "case.nii.gz").dataobj))
    assert np.abs(p16 - p).max() < 1e-3
    assert not hidden_leftovers(output)


def test_probabilities_of_an_itk_input_keep_its_geometry(mono_bundle: Path, tmp_path: Path) -> None:
    import itk

    image, mask = blob()
    inputs = tmp_path / "in"
    save_itk(inputs / "volume.nrrd", image)
    output = tmp_path / "out"
    assert run(mono_bundle, inputs, output, "--save-probabilities") == 0

    label = itk.imread(str(output / "volume.nrrd"))
    probs = nib.load(output / "volume_probabilities.nii.gz")
    assert probs.shape == (*SHAPE, 3)
    # the same voxels in the same place: the NIfTI's RAS affine is the NRRD's LPS geometry
    lps = np.eye(4)
    lps[:3, :3] = itk.array_from_matrix(label.GetDirection()) @ np.diag(label.GetSpacing())
    lps[:3, 3] = label.GetOrigin()
    np.testing.assert_allclose(probs.affine, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps, atol=1e-5)
    p = np.moveaxis(np.asarray(probs.dataobj), 3, 0)
    np.testing.assert_array_equal(_regions(p), itk.array_from_image(label).T)
    np.testing.assert_array_equal(p[2] > 0.5, mask)


def test_nifti_outputs_keep_a_grid_whose_first_axes_share_a_world_axis(tmp_path: Path) -> None:
    """Columns along -y and rows along -z (a sagittal DICOM series): the affine's first 2x2 block is singular, which
    MONAI 1.6's writers' ``set_metadata`` cannot take for a volume without a channel axis (it reads it as 2D)."""
    affine = np.array([[0.0, 0.0, 2.5, 30.0], [-0.7, 0.0, 0.0, -12.0], [0.0, -0.9, 0.0, 40.0], [0.0, 0.0, 0.0, 1.0]])
    geometry = Geometry(spatial_shape=(5, 4, 3), affine=affine, writer="itk")
    rng = np.random.default_rng(0)
    uncertainty = rng.random((5, 4, 3)).astype(np.float32)
    outputs.write_uncertainty(tmp_path / "u.nii.gz", uncertainty, geometry)
    probabilities = rng.random((2, 5, 4, 3)).astype(np.float32)
    outputs.write_probabilities(tmp_path / "p.nii.gz", probabilities, geometry, "nifti", [])
    for name, expected in (("u.nii.gz", uncertainty), ("p.nii.gz", np.moveaxis(probabilities, 0, -1))):
        written = nib.load(tmp_path / name)
        assert written.shape == expected.shape and np.allclose(written.affine, affine, atol=1e-5), name
        np.testing.assert_array_equal(np.asarray(written.dataobj), expected)


def test_bad_probability_format_is_a_usage_error(mono_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run(mono_bundle, tmp_path, tmp_path / "out", "--save-probabilities", "png")
    assert exit_info.value.code == 2
    with pytest.raises(ValueError, match="2D bundle"):
        outputs.probability_format("nifti", 2)
    assert outputs.probability_format("auto", 2) == "npz" and outputs.probability_format("auto", 3) == "nifti"


# ----------------------------------------------------------------------------------------------------------------------
# --uncertainty
# ----------------------------------------------------------------------------------------------------------------------


def test_uncertainty_is_zero_where_the_passes_agree(mono_bundle: Path, tmp_path: Path) -> None:
    image, mask = blob()
    inputs = tmp_path / "in"
    save_nifti(inputs / "case.nii.gz", image)
    output = tmp_path / "out"
    assert run(mono_bundle, inputs, output, "--uncertainty", overrides=["--override", "roi_size=[32,32,32]",
                                                                        "--no-progress", *EXACT]) == 0
    u = nib.load(output / "case_uncertainty.nii.gz")
    assert u.shape == SHAPE and np.allclose(u.affine, OBLIQUE_AFFINE, atol=1e-5)
    assert np.all(np.asarray(u.dataobj) == 0.0)  # a flip-equivariant network: every pass gives the same
    row = read_summary(output)["case"]
    assert float(row["tta_uncertainty"]) == 0.0 and float(row["tta_agreement"]) == 1.0
    assert "tta=true" in row["settings"]  # --uncertainty implies TTA (and is recorded as such)
    np.testing.assert_array_equal(np.asarray(nib.load(output / "case.nii.gz").dataobj), np.where(mask, 3, 0))


def test_uncertainty_rises_where_the_passes_disagree_and_ranks_cases(shifted_bundle: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    thick, thin = np.full(SHAPE, 0.1, np.float32), np.full(SHAPE, 0.1, np.float32)
    thick[6:26, 8:20, 5:15] = 1.0
    thin[15:17, 8:20, 5:15] = 1.0
    for name, image in (("thick", thick), ("thin", thin)):
        save_nifti(inputs / f"{name}.nii.gz", image, PLAIN_AFFINE)
    output = tmp_path / "out"
    assert run(shifted_bundle, inputs, output, "--uncertainty", "--save-probabilities",
               overrides=["--override", "roi_size=[32,32,32]", "--no-progress", *EXACT]) == 0

    u = np.asarray(nib.load(output / "thick_uncertainty.nii.gz").dataobj)
    p = np.moveaxis(np.asarray(nib.load(output / "thick_probabilities.nii.gz").dataobj), 3, 0)
    # the passes read voxel i+1 (unflipped) or i-1 (flipped along the first axis): they agree where both are alike
    high = thick > 0.5
    before, after = np.zeros_like(high), np.zeros_like(high)
    before[1:], after[:-1] = high[:-1], high[1:]
    inner = np.zeros_like(high)
    inner[1:-1] = True  # the first and last slices read the zero padding on one side
    agree = inner & (before == after)
    disagree = inner & (before != after)
    assert agree.sum() > 0.8 * agree.size and disagree.sum() > 0
    # a 3x3x3 convolution of a flipped input sums in another order: the passes agree to rounding (exactly 0 for the
    # bit-identical passes of the 1x1 convolution above)
    assert u[agree].max() < 1e-6
    # half the passes give the structure's probability (~1), half the background's (b): over the 8 passes the mean is
    # their midpoint and the standard deviation half their difference, so mean + std = ~1 and mean - std = b
    background = p[0][agree & ~before][0]
    assert 0 < background < 0.1 and u[disagree].min() > 0.45
    np.testing.assert_allclose(p[:, disagree] + u[disagree], 1.0, atol=1e-4)
    np.testing.assert_allclose(p[:, disagree] - u[disagree], background, atol=1e-4)
    assert u.min() >= 0.0 and u.max() <= 0.5 + 1e-6

    summary = read_summary(output)
    scores = {case: (float(row["tta_uncertainty"]), float(row["tta_agreement"])) for case, row in summary.items()}
    assert 0 < scores["thick"][0] < scores["thin"][0]  # mean uncertainty inside the passes' foreground
    assert 1 > scores["thick"][1] > scores["thin"][1]  # mean pairwise Dice of the passes
    # 28 pairs of passes: 12 read the same way (Dice 1), 16 one voxel apart: thick 20 slices overlap in 18 (Dice
    # 0.9), thin 2 slices in none (Dice 0)
    assert scores["thick"][1] == pytest.approx((12 + 16 * 0.9) / 28, abs=1e-5)
    assert scores["thin"][1] == pytest.approx(12 / 28, abs=1e-5)
    ranked = sorted(summary, key=lambda case: float(summary[case]["tta_agreement"]))
    assert ranked == ["thin", "thick"]  # the least trustworthy first


def test_pass_agreement_unit() -> None:
    agreement = outputs.PassAgreement(0.5)
    same = torch.tensor([[[0.2, 0.7, 0.9, 0.1]]])  # (C=1, 1, 4)
    for _ in range(3):
        agreement.add(same)
    assert torch.equal(agreement.uncertainty(), torch.zeros(1, 1, 4))
    assert agreement.scores() == {"tta_uncertainty": 0.0, "tta_agreement": 1.0}
    agreement.add(torch.tensor([[[0.2, 0.3, 0.9, 0.1]]]))
    u = agreement.uncertainty()[0, 0]
    np.testing.assert_allclose(u.numpy(), [0.0, np.std([0.7, 0.7, 0.7, 0.3]), 0.0, 0.0], atol=1e-6)
    scores = agreement.scores()
    assert scores["tta_uncertainty"] == pytest.approx(float(u[1] + u[2]) / 2)  # the union: voxels 1 and 2
    assert scores["tta_agreement"] == pytest.approx((3 * 1.0 + 3 * (2 * 1 / 3)) / 6)


# ----------------------------------------------------------------------------------------------------------------------
# --statistics
# ----------------------------------------------------------------------------------------------------------------------


def test_statistics_match_the_label_map_and_the_input(mono_bundle: Path, tmp_path: Path) -> None:
    image = np.full(SHAPE, 0.1, np.float32)
    rng = np.random.default_rng(0)
    big, small = (slice(2, 10), slice(3, 12), slice(2, 9)), (slice(20, 23), slice(18, 21), slice(12, 15))
    image[big] = 1.0 + 0.1 * rng.random(image[big].shape, dtype=np.float32)
    image[small] = 1.0
    mask = image > 0.5
    inputs = tmp_path / "in"
    save_nifti(inputs / "case.nii.gz", image, PLAIN_AFFINE)
    output = tmp_path / "out"
    assert run(mono_bundle, inputs, output, "--statistics") == 0

    label = np.asarray(nib.load(output / "case.nii.gz").dataobj)
    np.testing.assert_array_equal(label, np.where(mask, 3, 0))
    stats = json.loads((output / "case_statistics.json").read_text())
    assert stats["unit"] == "mm3" and stats["voxel_size_mm"] == pytest.approx([1.5, 1.5, 3.0])
    by_value = {entry["value"]: entry for entry in stats["labels"]}
    assert set(by_value) == {1, 2, 3}
    three = by_value[3]
    assert three["voxels"] == mask.sum() and three["volume_mm3"] == pytest.approx(mask.sum() * 1.5 * 1.5 * 3.0)
    assert three["components"] == 2 and three["largest_component_voxels"] == 8 * 9 * 7
    assert three["channels"]["image"]["mean"] == pytest.approx(float(image[mask].mean()), rel=1e-6)
    assert three["channels"]["image"]["std"] == pytest.approx(float(image[mask].std()), rel=1e-5)
    assert by_value[1]["voxels"] == 0 and by_value[1]["components"] == 0
    assert by_value[1]["channels"]["image"] == {"mean": None, "std": None}

    row = read_summary(output)["case"]
    assert int(row["label_3_voxels"]) == mask.sum() and int(row["label_3_components"]) == 2
    assert float(row["label_3_largest_ml"]) == pytest.approx(8 * 9 * 7 * 6.75 / 1000, abs=1e-3)
    assert float(row["label_3_mean_image"]) == pytest.approx(float(image[mask].mean()), rel=1e-5)
    assert float(row["label_3_ml"]) == pytest.approx(mask.sum() * 6.75 / 1000, abs=1e-3)  # the existing column stays


def test_label_statistics_unit_components_and_2d_units() -> None:
    label = np.zeros((6, 5), np.uint8)
    label[0, 0] = label[1, 1] = 1  # touching only diagonally: two components (face connectivity)
    label[3:6, 2:5] = 2
    label[4, 0] = 2
    image = np.stack([np.arange(30, dtype=np.float32).reshape(6, 5), np.ones((6, 5), np.float32)])
    picture = Geometry(spatial_shape=(6, 5), affine=np.eye(4), writer="png")
    stats = outputs.label_statistics(label, image, picture, {1: "a", 2: "b", 7: "absent"}, ["gray", "flat"])
    by_value = {entry["value"]: entry for entry in stats["labels"]}
    assert stats["unit"] == "pixels" and by_value[1]["area_pixels"] == 2 and by_value[1]["components"] == 2
    assert by_value[2]["components"] == 2 and by_value[2]["largest_component_area_pixels"] == 9
    assert by_value[2]["channels"]["gray"]["mean"] == pytest.approx(image[0][label == 2].mean())
    assert by_value[2]["channels"]["flat"] == {"mean": 1.0, "std": 0.0}
    assert by_value[7]["voxels"] == 0
    scanned = Geometry(spatial_shape=(6, 5), affine=np.diag([0.5, 0.25, 1.0, 1.0]), writer="itk")
    stats = outputs.label_statistics(label, None, scanned, {}, [])
    assert stats["unit"] == "mm2"
    assert {e["value"]: e["area_mm2"] for e in stats["labels"]} == pytest.approx({1: 0.25, 2: 1.25})
    cells = outputs.statistics_columns(stats)
    assert cells["label_2_voxels"] == "10" and cells["label_2_largest_mm2"] == "1.125"


# ----------------------------------------------------------------------------------------------------------------------
# Resume and failures
# ----------------------------------------------------------------------------------------------------------------------


def test_resume_needs_every_output_asked_for(mono_bundle: Path, tmp_path: Path) -> None:
    image, _ = blob()
    inputs = tmp_path / "in"
    for name in ("a", "b"):
        save_nifti(inputs / f"{name}.nii.gz", image)
    output = tmp_path / "out"
    assert run(mono_bundle, inputs, output, "--statistics") == 0
    first = read_summary(output)
    assert run(mono_bundle, inputs, output, "--statistics") == 0
    summary = read_summary(output)
    assert {v["status"] for v in summary.values()} == {"skipped"}
    assert summary["a"]["label_3_voxels"] == first["a"]["label_3_voxels"] != ""  # carried over

    (output / "a_statistics.json").unlink()
    assert run(mono_bundle, inputs, output, "--statistics") == 0
    assert {k: v["status"] for k, v in read_summary(output).items()} == {"a": "ok", "b": "skipped"}

    assert run(mono_bundle, inputs, output, "--statistics", "--save-probabilities") == 0  # a new output: redo
    assert {v["status"] for v in read_summary(output).values()} == {"ok"}
    assert (output / "a_probabilities.nii.gz").exists() and (output / "probabilities.json").exists()

    assert run(mono_bundle, inputs, output) == 0  # fewer outputs asked for: what exists is enough
    summary = read_summary(output)
    assert {v["status"] for v in summary.values()} == {"skipped"} and summary["b"]["label_3_voxels"] != ""


def test_a_failed_extra_output_fails_the_case_and_leaves_none_of_its_files(mono_bundle: Path, tmp_path: Path,
                                                                          monkeypatch) -> None:
    image, _ = blob()
    inputs = tmp_path / "in"
    for name in ("a", "b"):
        save_nifti(inputs / f"{name}.nii.gz", image)
    real = outputs.write_uncertainty

    def failing(tmp: Path, uncertainty, geometry) -> None:
        if tmp.name.startswith(f"{PARTIAL_PREFIX}b_"):
            tmp.write_bytes(b"\x1f\x8b partial")
            raise OSError(28, "No space left on device")
        real(tmp, uncertainty, geometry)

    monkeypatch.setattr(outputs, "write_uncertainty", failing)
    output = tmp_path / "out"
    assert run(mono_bundle, inputs, output, "--save-probabilities", "--uncertainty", "--statistics") == 1
    summary = read_summary(output)
    assert summary["a"]["status"] == "ok" and summary["b"]["status"] == "failed"
    assert "No space left on device" in summary["b"]["error"] and "b.nii.gz" in summary["b"]["error"]
    assert "\n" not in summary["b"]["error"]
    assert not [p.name for p in output.iterdir() if p.name.startswith("b")]  # nor its probabilities
    assert not hidden_leftovers(output)
    assert {p.name for p in output.iterdir()} == {"a.nii.gz", "a_probabilities.nii.gz", "a_uncertainty.nii.gz",
                                                  "a_statistics.json", "probabilities.json", "summary.csv"}

    monkeypatch.setattr(outputs, "write_uncertainty", real)
    assert run(mono_bundle, inputs, output, "--save-probabilities", "--uncertainty", "--statistics") == 0
    assert {k: v["status"] for k, v in read_summary(output).items()} == {"a": "skipped", "b": "ok"}
    assert read_summary(output)["a"]["tta_agreement"] != ""  # kept from the first run


# ----------------------------------------------------------------------------------------------------------------------
# The same probabilities through inference.json (docs/batch_inference.md, "Through inference.json")
# ----------------------------------------------------------------------------------------------------------------------


def _documented_override() -> dict:
    """The JSON of the docs' ``save_probabilities.json`` (so the page shows what is tested)."""
    from conftest import REPO

    text = (REPO / "docs" / "batch_inference.md").read_text(encoding="utf-8")
    section = text[text.index("### Through `inference.json`"):]
    block = section[section.index("```json") + len("```json"): section.index("```", section.index("```json") + 7)]
    return json.loads(block)


def test_inference_json_override_saves_the_same_probabilities(mono_bundle: Path, tmp_path: Path) -> None:
    from conftest import run_bundle

    image, mask = blob()
    inputs = tmp_path / "in"
    save_nifti(inputs / "case.nii.gz", image)
    extra = tmp_path / "save_probabilities.json"
    extra.write_text(json.dumps(_documented_override()))
    bundle_out = tmp_path / "bundle out"
    run_bundle(["run", "--config_file", str([str(mono_bundle / "configs" / "inference.json"), str(extra)]),
                "--dataset_dir", str(inputs), "--output_dir", str(bundle_out)], cwd=tmp_path)
    probs = nib.load(bundle_out / "case_probabilities.nii.gz")
    label = np.asarray(nib.load(bundle_out / "case_seg.nii.gz").dataobj)
    assert probs.shape == (*SHAPE, 3) and np.allclose(probs.affine, OBLIQUE_AFFINE, atol=1e-5)
    p = np.moveaxis(np.asarray(probs.dataobj), 3, 0)
    np.testing.assert_array_equal(label, np.where(mask, 3, 0))
    np.testing.assert_array_equal(_regions(p), label)

    output = tmp_path / "segment out"
    assert run(mono_bundle, inputs, output, "--save-probabilities") == 0
    ours = np.moveaxis(np.asarray(nib.load(output / "case_probabilities.nii.gz").dataobj), 3, 0)
    np.testing.assert_allclose(ours, p, atol=1e-5)


# ----------------------------------------------------------------------------------------------------------------------
# 2D
# ----------------------------------------------------------------------------------------------------------------------


def test_2d_bundle_writes_npz_outputs_in_pixels(tmp_path: Path) -> None:
    from conftest import copy_bundle, save_random_weights
    from PIL import Image

    from custom_nets.inference.cli import main

    bundle = copy_bundle("unet2d", tmp_path)
    save_random_weights(bundle)
    rng = np.random.default_rng(0)
    inputs = tmp_path / "in"
    inputs.mkdir()
    pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)  # 48 rows, 64 columns
    Image.fromarray(pixels).save(inputs / "picture.png")
    output = tmp_path / "out"
    assert main(["--bundle", str(bundle), "-i", str(inputs), "-o", str(output), "--no-progress", "--trust",
                 "--save-probabilities", "--uncertainty", "--statistics"]) == 0

    with Image.open(output / "picture.png") as written:
        label = np.asarray(written).T  # the array order the bundle works in: (W, H)
    with np.load(output / "picture_probabilities.npz") as f:
        probs = f["probabilities"]
        assert probs.dtype == np.float16 and probs.shape[1:] == (64, 48)
        info = json.loads((output / "probabilities.json").read_text())
        assert list(f["channel_names"]) == [c["name"] for c in info["channels"]]
    p = torch.from_numpy(probs.astype(np.float32))
    regions = [c["label_values"] for c in info["channels"]]
    values = [c["writes"] for c in info["channels"]]
    np.testing.assert_array_equal(regions_to_label_map(p, regions, values, info["threshold"])[0].numpy(), label)
    with np.load(output / "picture_uncertainty.npz") as f:
        u = f["uncertainty"]
        assert u.shape == (64, 48) and u.min() >= 0.0 and u.max() <= 0.5 + 1e-6
    stats = json.loads((output / "picture_statistics.json").read_text())
    assert stats["unit"] == "pixels"
    for entry in stats["labels"]:
        assert entry["voxels"] == int((label == entry["value"]).sum()) == entry["area_pixels"]
        assert len(entry["channels"]) == 3  # one per input channel (RGB)
    row = read_summary(output)["picture"]
    assert row["tta_agreement"] != "" and row["label_1_pixels"] == row["label_1_voxels"]


# ----------------------------------------------------------------------------------------------------------------------
# Several checkpoints: a fold ensemble
# ----------------------------------------------------------------------------------------------------------------------


def test_several_checkpoints_average_the_folds_probabilities(brats_bundle: Path, tmp_path: Path) -> None:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(brats_bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(brats_bundle)
    parser["network_def#channels"] = [4, 8, 16, 32]
    folds = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        folds.append(tmp_path / f"fold_{seed}.pt")
        torch.save(parser.get_parsed_content("network_def", lazy=False).state_dict(), folds[-1])
    inputs = tmp_path / "in"
    _brats_case(inputs / "case", "case", seed=5)

    def probabilities(name: str, *checkpoints: Path) -> tuple[np.ndarray, dict]:
        output = tmp_path / name
        assert run(brats_bundle, inputs, output, "--save-probabilities", "--checkpoint", *map(str, checkpoints),
                   overrides=TINY) == 0
        p = np.moveaxis(np.asarray(nib.load(output / "case_probabilities.nii.gz").dataobj), 3, 0)
        np.testing.assert_array_equal(_regions(p), np.asarray(nib.load(output / "case.nii.gz").dataobj))
        return p, read_summary(output)["case"]

    first, first_row = probabilities("one", folds[0])
    second, _ = probabilities("two", folds[1])
    both, both_row = probabilities("both", *folds)
    assert np.abs(first - second).max() > 0.05  # the folds disagree, so the test can tell a mean from either
    np.testing.assert_allclose(both, (first + second) / 2, atol=1e-4)  # the mean of probabilities
    assert both_row["model_sha256"] != first_row["model_sha256"]  # a re-run with other folds redoes the case


def test_ensemble_members_of_different_tasks_are_refused(brats_bundle: Path, tmp_path: Path) -> None:
    brats = demo_task("brats")
    folds = []
    for i, channels in enumerate((brats.channel_names, ("image",))):
        folder = tmp_path / f"fold_{i}"
        prepare_task(Task(f"t{i}", tuple(channels), brats.label_names, brats.regions, brats.output_values, 3), folder)
        torch.save({}, folder / "model.pt")
        folds.append(folder / "model.pt")
    inputs = tmp_path / "in"
    _brats_case(inputs / "case", "case", seed=5)
    assert run(brats_bundle, inputs, tmp_path / "out", "--checkpoint", *map(str, folds), overrides=TINY) == 2
