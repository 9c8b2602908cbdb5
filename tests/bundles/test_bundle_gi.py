"""The UW-Madison GI tract bundles (UNet 3+, FCT) end to end, and the case-day metrics they report.

The bundles train on the canonical (nnU-Net v2) demo data, 2.5D: each case is a slice with its neighbours at -2 and
+2 as three channels. ``inference.json`` / ``evaluate.json`` read any dataset; the competition-layout outputs (RGB
mask PNGs mirroring the input tree, ``submission.csv``, case-day metrics) come from ``inference_uwmadison.json`` and
``evaluate_uwmadison.json``, whose demo is the public layout in ``demo_data/uwmadison_layout``.

The bundles run through ``python -m monai.bundle`` in subprocesses, as a user runs them: each bundle is copied out of
the repository first (it must work on its own with ``custom_nets`` installed), every command runs from an unrelated
working directory, and the networks are shrunk by overrides so that a bundle trains, infers, evaluates and exports
in about a minute on 2 CPU cores. Commands that only read a trained model run two at a time.
"""

from __future__ import annotations

import csv
import json
import math
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import BUNDLES, copy_bundle, labelled_cases, run_bundle
from PIL import Image
from tiny_networks import tiny_args

from custom_nets.convert.uwmadison import rle_decode
from custom_nets.data.dataset import read_dataset
from custom_nets.data.uwmadison import CLASSES
from custom_nets.data.uwmadison_bundle import case_day_volumes, slice_datalist, slice_id_from_path
from custom_nets.handlers_gi import CaseDayMetricsWriter, RLESubmissionWriter
from custom_nets.inferers import NeighbourSliceInferer
from custom_nets.metrics_gi import case_day_metrics, competition_score, volume_diagonal

NETS = {name: tiny_args(name) for name in ("unet3plus", "fct")}
COMMON_FAST = ["--num_workers", "0"]
TRAIN_FAST = ["--roi_size", "[64,64]", "--batch_size", "8"]




def run_two_at_a_time(commands: list[list[str]], cwd: Path) -> list[subprocess.CompletedProcess]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda args: run_bundle(args, cwd=cwd), commands))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def check_masks_and_csv(masks: Path, demo: Path, every: int = 5) -> list[Path]:
    """Every demo slice has an RGB 0/255 mask of its size and stem under ``masks`` (mirroring ``demo``'s tree), and
    ``masks/submission.csv`` decodes to those masks; returns the slices."""
    slices = sorted((demo / "train").rglob("slice_*.png"))
    written = sorted(masks.rglob("*_mask.png"))
    assert [p.relative_to(masks) for p in written] == [
        p.relative_to(demo).with_name(f"{p.stem}_mask.png") for p in slices
    ]
    rows = read_csv(masks / "submission.csv")
    assert len(rows) == 3 * len(slices) and list(rows[0]) == ["id", "class", "segmentation"]
    by_id = {(r["id"], r["class"]): r["segmentation"] for r in rows}
    for source in slices[::every]:
        mask = Image.open(masks / source.relative_to(demo).with_name(f"{source.stem}_mask.png"))
        assert mask.mode == "RGB" and mask.size == Image.open(source).size
        array = np.asarray(mask)
        assert set(np.unique(array).tolist()) <= {0, 255}
        for c, cls in enumerate(CLASSES):
            decoded = rle_decode(by_id[(slice_id_from_path(source), cls)], array.shape[:2])
            np.testing.assert_array_equal(decoded, array[..., c] // 255)
    return slices


# ----------------------------------------------------------------------------------------------------------------------
# End to end
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(NETS))
def test_train_infer_evaluate_export(name: str, tmp_path: Path, elsewhere: Path) -> None:
    bundle = copy_bundle(name, tmp_path)
    configs = bundle / "configs"
    net = NETS[name]
    fast = net + COMMON_FAST

    # train 1 epoch on the demo data (generated into the bundle on first use), validating once
    result = run_bundle(
        ["run", "training", "--config_file", str(configs / "train.json"), "--epochs", "1", "--val_interval", "1",
         *TRAIN_FAST, *fast],
        cwd=elsewhere,
    )  # fmt: skip
    produced_files = ["models/model.pt", "models/checkpoint_last.pt", "models/task.json", "runs/train.log",
                      "demo_data/dataset.json", "demo_data/imagesTr/case101_day0_slice_0001_0002.png"]
    for produced in produced_files:
        assert (bundle / produced).exists(), f"{produced} missing; stdout:\n{result.stdout[-2000:]}"
    assert not any(elsewhere.iterdir()), f"outputs leaked into the working directory: {list(elsewhere.iterdir())}"
    assert "val_mean_dice" in result.stdout + result.stderr

    canonical, demo = bundle / "demo_data", bundle / "demo_data" / "uwmadison_layout"
    masks, volumes, label_maps = tmp_path / "masks", tmp_path / "volumes", tmp_path / "label maps"
    exported = tmp_path / "model.ts"
    run_two_at_a_time(
        [
            # the first generates the competition-layout demo while the second reads the canonical one
            ["run", "--config_file", str(configs / "inference_uwmadison.json"), "--output_dir", str(masks),
             "--write_rle", "True", *fast],
            ["run", "--config_file", str(configs / "inference.json"), "--output_dir", str(label_maps), *fast],
            ["run", "--config_file", str(configs / "inference_volume.json"), "--output_dir", str(volumes), *fast],
            ["run", "--config_file", str(configs / "evaluate_uwmadison.json"), "--output_dir", str(tmp_path / "eval uw"),
             *fast],
            ["run", "--config_file", str(configs / "evaluate.json"), *fast],
            ["verify_net_in_out", "network_def", "--config_file", str(configs / "inference.json"),
             "--meta_file", str(configs / "metadata.json"), *net],
            ["ckpt_export", "network_def", "--filepath", str(exported),
             "--ckpt_file", str(bundle / "models" / "model.pt"), "--meta_file", str(configs / "metadata.json"), "--config_file", str(configs / "inference.json"), *net],
        ],
        cwd=elsewhere,
    )  # fmt: skip
    assert not any(elsewhere.iterdir()), f"outputs leaked into the working directory: {list(elsewhere.iterdir())}"

    # competition layout, inference on slices: one RGB mask per slice, same size and stem, in a mirror of the input
    # tree; CSV rows decode (height x width, row by row) to exactly the written masks
    slices = check_masks_and_csv(masks, demo)

    # any dataset (here the canonical demo): one label map per case (a 2.5D slice), its size, the label values 0-3
    cases = labelled_cases(canonical)
    assert len(cases) == 64
    assert sorted(p.name for p in label_maps.iterdir()) == [f"{case}_mask.png" for case in cases]
    for case in cases[::9]:
        label_map = Image.open(label_maps / f"{case}_mask.png")
        assert label_map.mode == "L" and label_map.size == Image.open(canonical / "labelsTr" / f"{case}.png").size
        assert set(np.unique(np.asarray(label_map)).tolist()) <= {0, 1, 2, 3}
    # evaluation of any dataset: one row per group of the dataset, pooled over its slices, and a mean row
    rows = read_csv(bundle / "eval" / "metrics.csv")
    groups = sorted({c["group"] for c in read_dataset(canonical).training})
    assert [r["group"] for r in rows] == [*groups, "mean"] and int(rows[-1]["slices"]) == 64
    overlap = [f"{m}_{c}" for c in CLASSES for m in ("dice", "iou", "precision", "recall")]
    assert list(rows[0]) == ["group", "slices", *overlap]
    assert all(0.0 <= float(r[c]) <= 1.0 for r in rows for c in overlap)

    # inference on volumes: a 1/2/3 label map per case-day volume, with the input's shape and affine
    inputs = sorted((demo / "volumes").glob("*.nii.gz"))
    assert len(inputs) == 8
    for source in inputs[:3]:
        pred = nib.load(volumes / source.name.replace(".nii.gz", "_mask.nii.gz"))
        image = nib.load(source)
        assert pred.shape == image.shape
        np.testing.assert_allclose(pred.affine, image.affine, atol=1e-5)
        assert set(np.unique(np.asarray(pred.dataobj)).tolist()) <= {0, 1, 2, 3}

    # competition layout, evaluation: one row per case-day and a mean row, per-class Dice, HD95, normalised HD and
    # the score
    rows = read_csv(tmp_path / "eval uw" / "metrics.csv")
    case_days = sorted(f"{c.name}_day{d.name.rsplit('day', 1)[1]}" for c in (demo / "train").iterdir()
                       for d in c.iterdir())  # fmt: skip
    assert sorted(r["case_day"] for r in rows[:-1]) == case_days and rows[-1]["case_day"] == "mean"
    metrics = [f"{m}_{c}" for m in ("dice", "hd95", "nhd") for c in CLASSES]
    assert list(rows[0]) == ["case_day", "slices", *metrics, "score"]
    for row in rows:
        dice = [float(row[f"dice_{c}"]) for c in CLASSES]
        nhd = [float(row[f"nhd_{c}"]) for c in CLASSES]
        assert all(0.0 <= v <= 1.0 for v in dice + nhd)
        expected = np.mean([competition_score(d, h) for d, h in zip(dice, nhd)])
        assert float(row["score"]) == pytest.approx(expected, abs=2e-4)
    assert int(rows[-1]["slices"]) == len(slices)

    check_export_parity(configs / "inference.json", bundle / "models" / "model.pt", exported, net)


def check_export_parity(config: Path, checkpoint: Path, exported: Path, overrides: list[str]) -> None:
    """TorchScript reproduces the eager network, and both return one (B, 3, H, W) tensor in eval mode (3 input
    channels: the 2.5D slice and its neighbours)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(config))
    parser["bundle_root"] = str(config.parent.parent)
    for key, value in zip(overrides[::2], overrides[1::2]):
        parser[key.lstrip("-")] = json.loads(value)
    eager = parser.get_parsed_content("network_def")
    eager.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    eager.eval()
    scripted = torch.jit.load(str(exported), map_location="cpu")
    x = torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        expected, actual = eager(x), scripted(x)
    assert isinstance(expected, torch.Tensor) and expected.shape == (2, 3, 64, 96)
    assert isinstance(actual, torch.Tensor) and actual.shape == (2, 3, 64, 96)
    difference = (actual - expected).abs().max().item()
    assert difference < 1e-4, f"TorchScript export differs from eager by {difference}"


def test_train_json_splits_by_case(tmp_path: Path) -> None:
    """train.json's training and validation lists hold different cases (all days of a case on one side); every item
    is a 2.5D slice: three channel files (slices -2, 0, +2)."""
    from monai.bundle import ConfigParser

    bundle = copy_bundle("unet3plus", tmp_path)
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    parser["bundle_root"] = str(bundle)
    train, val = parser.get_parsed_content("train_datalist"), parser.get_parsed_content("val_datalist")
    # case names: case<N>_day<D>_slice_<S>
    match = re.compile(r"^(case\d+)_day(\d+)_slice_\d{4}$")
    train_cases = {match.match(d["case"])[1] for d in train}
    val_cases = {match.match(d["case"])[1] for d in val}
    assert train_cases and val_cases and not train_cases & val_cases
    assert len(train) + len(val) == 64 and {int(match.match(d["case"])[2]) for d in val} == {0, 7}
    assert parser.get_parsed_content("task").in_channels == 3
    assert all(isinstance(d["image"], list) and len(d["image"]) == 3 for d in train + val)


def test_learning_on_demo_data(tmp_path: Path, elsewhere: Path) -> None:
    """UNet 3+ (deep supervision, CGM, hybrid loss; small widths, slices resized to 64 x 64) learns the demo task: the
    loss falls by a third and the validation Dice exceeds 0.5 within 8 epochs (48 steps; 0.77 when calibrated)."""
    epochs = 8
    bundle = copy_bundle("unet3plus", tmp_path)
    result = run_bundle(
        ["run", "training", "--config_file", str(bundle / "configs" / "train.json"), "--epochs", str(epochs),
         "--val_interval", "1", "--learning_rate", "3e-3", "--resize_to", "[64,64]", *TRAIN_FAST, *NETS["unet3plus"],
         *COMMON_FAST],
        cwd=elsewhere,
    )  # fmt: skip
    log = result.stdout + result.stderr
    losses = [float(v) for v in re.findall(rf"Epoch: \d+/{epochs}, Iter: \d+/\d+ -- train_loss: ([0-9.]+)", log)]
    per_epoch = len(losses) // epochs
    assert per_epoch > 0, log[-3000:]
    first, last = np.mean(losses[:per_epoch]), np.mean(losses[-2 * per_epoch :])
    dice = [float(v) for v in re.findall(r"val_mean_dice: ([0-9.]+)", log)]
    assert last < 0.67 * first, f"loss did not fall: first epoch {first:.3f}, last two epochs {last:.3f}"
    assert max(dice) > 0.5, f"validation Dice per epoch: {dice}"

    # the trained model finds organs: its masks (resized back from 64 x 64 to each slice's size) and their CSV rows
    # agree on every slice, and they are not empty
    masks = tmp_path / "masks"
    run_bundle(
        ["run", "--config_file", str(bundle / "configs" / "inference_uwmadison.json"), "--output_dir", str(masks),
         "--write_rle", "True", "--resize_to", "[64,64]", *NETS["unet3plus"], *COMMON_FAST],
        cwd=elsewhere,
    )  # fmt: skip
    check_masks_and_csv(masks, bundle / "demo_data" / "uwmadison_layout", every=1)
    rows = read_csv(masks / "submission.csv")
    found = {r["class"] for r in rows if r["segmentation"]}
    assert found == set(CLASSES), f"classes found: {found}"


# ----------------------------------------------------------------------------------------------------------------------
# Case-day metrics
# ----------------------------------------------------------------------------------------------------------------------


def _blob(shape: tuple[int, ...] = (3, 40, 32, 12)) -> np.ndarray:
    volume = np.zeros(shape, dtype=np.uint8)
    volume[0, 5:20, 4:18, 2:9] = 1
    volume[1, 15:30, 10:25, 4:11] = 1  # overlaps class 0, as organs do
    volume[2, 25:35, 20:30, 0:5] = 1
    return volume


def test_score_of_a_perfect_prediction_is_one() -> None:
    label = _blob()
    result = case_day_metrics(label.copy(), label, spacing=(1.5, 1.5, 3.0), class_names=CLASSES)
    assert result["dice"] == [1.0, 1.0, 1.0] and result["hd95"] == [0.0, 0.0, 0.0] and result["nhd"] == [0.0] * 3
    assert result["score"] == pytest.approx(1.0)


def test_score_with_empty_masks() -> None:
    empty = np.zeros((3, 20, 20, 6), dtype=np.uint8)
    both_empty = case_day_metrics(empty, empty, spacing=(1.5, 1.5, 3.0))
    assert both_empty["dice"] == [1.0] * 3 and both_empty["hd95"] == [0.0] * 3 and both_empty["nhd"] == [0.0] * 3
    assert both_empty["score"] == pytest.approx(1.0)

    organ = empty.copy()
    organ[1, 5:10, 5:10, 2:4] = 1
    for pred, label in ((empty, organ), (organ, empty)):  # missed organ, and organ predicted where there is none
        result = case_day_metrics(pred, label, spacing=(1.5, 1.5, 3.0))
        assert result["dice"] == [1.0, 0.0, 1.0] and result["nhd"] == [0.0, 1.0, 0.0]
        assert result["class_score"] == pytest.approx([1.0, 0.0, 1.0]) and math.isnan(result["hd95"][1])
        assert result["score"] == pytest.approx(2.0 / 3.0)


def test_hausdorff_in_mm_and_normalised_by_the_diagonal() -> None:
    label = np.zeros((1, 30, 20, 10), dtype=np.uint8)
    label[0, 5:15, 5:15, 2:6] = 1
    pred = np.zeros_like(label)
    pred[0, 5:15, 5:15, 3:7] = 1  # one slice further: 3 mm with a 3 mm slice thickness
    result = case_day_metrics(pred, label, spacing=(1.5, 1.5, 3.0))
    assert result["hausdorff"][0] == pytest.approx(3.0) and result["hd95"][0] == pytest.approx(3.0)
    diagonal = volume_diagonal((30, 20, 10), (1.5, 1.5, 3.0))
    assert diagonal == pytest.approx(math.sqrt(45.0**2 + 30.0**2 + 30.0**2))
    assert result["nhd"][0] == pytest.approx(3.0 / diagonal)
    assert result["dice"][0] == pytest.approx(0.75)  # 3 of 4 slices shared
    assert result["score"] == pytest.approx(0.4 * 0.75 + 0.6 * (1 - 3.0 / diagonal))


def test_case_day_writer_stacks_slices_per_case_day(tmp_path: Path) -> None:
    """Slices arrive one by one (in any order within a case-day); the writer scores each case-day volume once."""
    label = _blob()
    pred = label.copy()
    pred[2] = 0  # stomach missed
    writer = CaseDayMetricsWriter(tmp_path, CLASSES, slice_thickness=3.0)
    engine = SimpleNamespace(state=SimpleNamespace(batch=[], output=[]))
    for case, day in (("case1", 0), ("case2", 3)):
        for k in reversed(range(label.shape[-1])):
            engine.state.batch = [{"case": case, "day": torch.tensor(day), "slice": torch.tensor(k + 1),
                                   "spacing": [torch.tensor(1.5, dtype=torch.float64)] * 2}]  # fmt: skip
            engine.state.output = [{"pred": torch.as_tensor(pred[..., k]), "label": torch.as_tensor(label[..., k])}]
            writer._accumulate(engine)
    writer.write()
    rows = read_csv(tmp_path / "metrics.csv")
    assert [r["case_day"] for r in rows] == ["case1_day0", "case2_day3", "mean"]
    expected = case_day_metrics(pred, label, spacing=(1.5, 1.5, 3.0))
    for row in rows:
        assert row["slices"] == str(label.shape[-1] * (2 if row["case_day"] == "mean" else 1))
        assert float(row["score"]) == pytest.approx(expected["score"], abs=1e-4)
        assert float(row["dice_stomach"]) == 0.0 and row["hd95_stomach"] == "nan"
    engine.state.batch = [{"case": "case1", "day": 0, "slice": 1, "spacing": (1.5, 1.5)}]
    engine.state.output = [{"pred": torch.as_tensor(pred[..., 0]), "label": torch.as_tensor(label[..., 0])}]
    with pytest.raises(ValueError, match="list each case-day's slices together"):
        writer._accumulate(engine)


def test_rle_writer_encodes_monai_width_height_arrays(tmp_path: Path) -> None:
    """A prediction on a PILReader-loaded slice is (C, width, height); the CSV must encode it over (height, width)."""
    rng = np.random.default_rng(0)
    mask_hw = (rng.random((3, 5, 7)) > 0.6).astype(np.uint8)  # height 5, width 7
    writer = RLESubmissionWriter(tmp_path)
    pred_wh = torch.as_tensor(mask_hw.transpose(0, 2, 1))
    engine = SimpleNamespace(state=SimpleNamespace(batch=[{"id": "case1_day0_slice_0001"}], output=[{"pred": pred_wh}]))
    writer._collect(engine)
    writer.write()
    rows = read_csv(tmp_path / "submission.csv")
    assert [(r["id"], r["class"]) for r in rows] == [("case1_day0_slice_0001", c) for c in CLASSES]
    for c, row in enumerate(rows):
        np.testing.assert_array_equal(rle_decode(row["segmentation"], (5, 7)), mask_hw[c])


# ----------------------------------------------------------------------------------------------------------------------
# Building blocks of the configs
# ----------------------------------------------------------------------------------------------------------------------


def test_neighbour_slice_inferer() -> None:
    """Without offsets it is whole-slice inference; with offsets slice k sees slices clamp(k + o) as channels."""
    from monai.inferers import SliceInferer

    volume = torch.rand(1, 1, 8, 6, 5)
    conv = torch.nn.Conv2d(1, 3, 3, padding=1)
    with torch.no_grad():
        ours = NeighbourSliceInferer(spatial_dim=2, sw_batch_size=2)(volume, conv)
        monai_slices = SliceInferer(roi_size=(-1, -1), spatial_dim=2, sw_batch_size=2, progress=False)(volume, conv)
    torch.testing.assert_close(ours, monai_slices)

    seen = []

    def probe(x: torch.Tensor) -> torch.Tensor:
        seen.append(x[:, :, 0, 0].clone())
        return x[:, 1:2]

    stack = torch.arange(5.0).view(1, 1, 1, 1, 5).expand(1, 1, 2, 2, 5).contiguous()
    out = NeighbourSliceInferer(offsets=(-2, 0, 2), spatial_dim=2, sw_batch_size=4)(stack, probe)
    channels = torch.cat(seen)
    assert channels.tolist() == [[0, 0, 2], [0, 1, 3], [0, 2, 4], [1, 3, 4], [2, 4, 4]]
    torch.testing.assert_close(out, stack)


def test_slice_datalist_and_volumes(tmp_path: Path) -> None:
    from custom_nets.convert.uwmadison import find_uwmadison_slices
    from custom_nets.data.uwmadison import generate_uwmadison_demo

    demo = generate_uwmadison_demo(tmp_path / "demo", num_cases=2, days_per_case=1, slices_per_day=4)
    labelled = find_uwmadison_slices(demo)  # writes the hidden mask cache, which inference must not pick up
    items = slice_datalist(str(demo), offsets=(-1, 0, 1))
    assert [d["id"] for d in items] == [d["id"] for d in labelled]
    assert all(len(d["image"]) == 3 and d["image"][1] == d["center_image"] for d in items)
    assert items[0]["image"][0] == items[0]["center_image"]  # clamped at the first slice
    (tmp_path / "loose").mkdir()
    shutil.copy(labelled[0]["image"], tmp_path / "loose" / "my slice.png")
    assert slice_datalist(tmp_path / "loose")[0]["id"] == "my slice"

    paths = case_day_volumes(demo, tmp_path / "volumes", slice_thickness=3.0)
    assert [p.name for p in paths] == ["case101_day0.nii.gz", "case102_day0.nii.gz"]
    volume = nib.load(paths[0])
    first = labelled[0]
    assert volume.shape == (first["width"], first["height"], 4)
    np.testing.assert_allclose(np.diag(volume.affine), [*first["spacing"], 3.0, 1.0])
    png = np.asarray(Image.open(first["image"]))  # (height, width)
    np.testing.assert_array_equal(np.asarray(volume.dataobj)[..., 0], png.T)


def test_configs_expose_the_task_values() -> None:
    for name in NETS:
        train = json.loads((BUNDLES / name / "configs" / "train.json").read_text())
        assert "offsets" not in train and train["loss_kind"] in ("hybrid", "dice_bce")  # channels: the dataset's
        assert train["network_def"]["in_channels"] == "$@task.in_channels"
        for config in ("inference_uwmadison.json", "evaluate_uwmadison.json", "inference_volume.json"):
            assert json.loads((BUNDLES / name / "configs" / config).read_text())["offsets"] == [-2, 0, 2]
        meta = json.loads((BUNDLES / name / "configs" / "metadata.json").read_text())
        assert meta["label_values"] == {"1": "large_bowel", "2": "small_bowel", "3": "stomach"}
        assert meta["input_channel_suffixes"] == {}
    assert json.loads((BUNDLES / "unet3plus" / "configs" / "train.json").read_text())["loss"]["cgm"] == "@cgm"
    fct = json.loads((BUNDLES / "fct" / "configs" / "train.json").read_text())
    assert fct["loss"]["weights"] == [0.57, 0.29, 0.14]


def test_loss_kind_switches_the_loss(tmp_path: Path) -> None:
    from monai.bundle import ConfigParser

    from custom_nets.losses import DiceBCELoss, HybridLoss, UNet3PlusLoss

    for name, default in (("unet3plus", HybridLoss), ("fct", DiceBCELoss)):
        for kind, expected in (("hybrid", HybridLoss), ("dice_bce", DiceBCELoss), (None, default)):
            parser = ConfigParser()
            parser.read_config(str(BUNDLES / name / "configs" / "train.json"))
            parser["bundle_root"] = str(tmp_path)
            if kind:
                parser["loss_kind"] = kind
            loss = parser.get_parsed_content("loss")
            assert isinstance(loss.loss if name == "fct" else loss.seg_loss, expected)
            if name == "unet3plus":
                assert isinstance(loss, UNet3PlusLoss) and loss.cgm


@pytest.mark.parametrize("name", ["unet3plus", "fct"])
def test_building_the_inference_pipeline_writes_no_demo_data(name: str, tmp_path: Path) -> None:
    """MONAI Label and custom_nets.inference build ``postprocessing`` to serve other images: that must not generate
    the demo data set inside the bundle (the competition-layout saver's ``data_root`` only needs its path)."""
    from monai.bundle import ConfigParser

    bundle = copy_bundle(name, tmp_path)
    for config in ("inference.json", "inference_uwmadison.json"):
        parser = ConfigParser()
        parser.read_config(str(bundle / "configs" / config))
        parser["bundle_root"] = str(bundle)
        parser.get_parsed_content("postprocessing")
        if config == "inference_uwmadison.json":
            assert parser.get_parsed_content("data_root") == str(bundle / "demo_data" / "uwmadison_layout")
        assert not (bundle / "demo_data").exists(), f"building the postprocessing of {config} generated the demo data"
