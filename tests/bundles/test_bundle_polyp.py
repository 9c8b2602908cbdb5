"""The DRRMSAN, DDANet and SSFormer bundles (Kvasir-SEG polyps, ISIC 2017 skin lesions) end to end.

Every bundle command runs through ``python -m monai.bundle`` in a subprocess, from an unrelated working directory, on
a copy of the bundle made outside the repository (a bundle must work on its own with ``custom_nets`` installed), with
tiny widths and a 64 x 64 network input so that the whole file stays within a few minutes on 2 CPU cores.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import BUNDLES, copy_bundle, labelled_cases, parse_config, run_bundle
from PIL import Image
from tiny_networks import TINY as TINY_NETWORK
from tiny_networks import tiny_args

from custom_nets.data import polyp_skin
from custom_nets.data.dataset import inference_datalist, trained_task
from custom_nets.data.errors import DatasetError
from custom_nets.losses import DiceBCELoss, MaskAndReconstructionLoss, StackedDeepSupervisionLoss

POLYP_BUNDLES = ["ddanet", "drrmsan", "ssformer"]
TINY = {name: tiny_args(name) for name in POLYP_BUNDLES}
SIZE = ["--image_size", "[64,64]"]
FAST = ["--num_workers", "0"]
# training mode: DRRMSAN stacks [weighted sum, 4 side outputs]; DDANet concatenates [mask, grayscale reconstruction]
TRAIN_SHAPE = {"drrmsan": (2, 5, 1, 64, 96), "ddanet": (2, 2, 64, 96), "ssformer": (2, 1, 64, 96)}
# default network input [width, height] of each bundle: SSFormer trains at the reference's 352 x 352
IMAGE_SIZE = {"ddanet": [256, 256], "drrmsan": [256, 256], "ssformer": [352, 352]}
# evaluation rows are the dataset's groups: for Kvasir-SEG and ISIC each image is its own group (its case name)
METRIC_COLUMNS = {"group", "slices", "dice_polyp", "iou_polyp", "precision_polyp", "recall_polyp"}


@pytest.fixture(autouse=True)
def _one_thread_per_subprocess(monkeypatch: pytest.MonkeyPatch) -> None:
    """2 shared CPU cores: every bundle subprocess runs single-threaded."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")



def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two boolean masks; 1 when both are empty (the evaluation's convention)."""
    denominator = pred.sum() + truth.sum()
    return 1.0 if denominator == 0 else 2.0 * (pred & truth).sum() / denominator


def losses_per_iteration(log: str, epochs: int) -> list[float]:
    return [float(v) for v in re.findall(rf"Epoch: \d+/{epochs}, Iter: \d+/\d+ -- train_loss: ([0-9.]+)", log)]


# ----------------------------------------------------------------------------------------------------------------------
# end to end, both bundles
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", POLYP_BUNDLES)
def test_train_infer_evaluate_export(name: str, tmp_path: Path) -> None:
    bundle = copy_bundle(name, tmp_path)
    configs = bundle / "configs"
    cwd = tmp_path / "somewhere else"
    cwd.mkdir()
    net = TINY[name] + SIZE

    # train 2 epochs on the Kvasir-layout demo data (generated into the bundle on first use)
    result = run_bundle(
        ["run", "training", "--config_file", str(configs / "train.json"), "--epochs", "2", "--val_interval", "1",
         "--batch_size", "4", *net, *FAST],
        cwd=cwd,
    )  # fmt: skip
    produced_files = ["models/model.pt", "models/checkpoint_last.pt", "models/task.json", "runs/train.log",
                      "demo_data/kvasir/dataset.json", "demo_data/kvasir/imagesTr/DEMO_000_0000.png"]
    for produced in produced_files:
        assert (bundle / produced).exists(), f"{produced} missing; log:\n{result.stderr[-2000:]}"
    assert not any(cwd.iterdir()), f"outputs leaked into the working directory: {list(cwd.iterdir())}"
    log = result.stdout + result.stderr
    losses = losses_per_iteration(log, 2)
    assert losses and all(np.isfinite(losses)), log[-2000:]
    assert "val_mean_dice" in log

    # inference on the demo dataset folder: its images only (never its label maps), each mask at the size of its image
    # (the demo images are 180-260 px per side, mostly non-square), named after its case, holding the dataset's label
    # values (0 background, 1 polyp)
    demo = bundle / "demo_data" / "kvasir"
    output = tmp_path / "predictions"
    run_bundle(
        ["run", "--config_file", str(configs / "inference.json"), "--dataset_dir", str(demo), "--output_dir",
         str(output), *net, *FAST],
        cwd=cwd,
    )  # fmt: skip
    cases = labelled_cases(demo)
    assert len(cases) == 16
    assert sorted(p.name for p in output.iterdir()) == [f"{case}_mask.png" for case in cases]
    shapes, dice_of_files = [], {}
    for case in cases:
        pred = np.asarray(Image.open(output / f"{case}_mask.png"))
        truth = np.asarray(Image.open(demo / "labelsTr" / f"{case}.png")) == 1
        assert pred.shape == truth.shape == np.asarray(Image.open(demo / "imagesTr" / f"{case}_0000.png")).shape[:2]
        assert set(np.unique(pred)) <= {0, 1}
        shapes.append(pred.shape)
        dice_of_files[case] = dice(pred == 1, truth)
    assert any(h != w for h, w in shapes), "no non-square image was checked"

    # evaluation: one row per image, scored at the image's original size (so it equals the Dice of the written masks),
    # and the mean over all images
    run_bundle(["run", "--config_file", str(configs / "evaluate.json"), *net, *FAST], cwd=cwd)
    rows = read_csv(bundle / "eval" / "metrics.csv")
    assert [r["group"] for r in rows] == [*cases, "mean"]
    assert set(rows[0]) == METRIC_COLUMNS
    for row in rows[:-1]:
        assert float(row["dice_polyp"]) == pytest.approx(dice_of_files[row["group"]], abs=1e-3), row["group"]
        assert all(0.0 <= float(row[c]) <= 1.0 for c in METRIC_COLUMNS - {"group", "slices"})
    assert float(rows[-1]["dice_polyp"]) == pytest.approx(np.mean([float(r["dice_polyp"]) for r in rows[:-1]]), abs=1e-3)
    assert int(rows[-1]["slices"]) == 16

    # the network matches the metadata; TorchScript export reproduces the eager network in eval mode
    run_bundle(
        ["verify_net_in_out", "network_def", "--config_file", str(configs / "inference.json"),
         "--meta_file", str(configs / "metadata.json"), *TINY[name]],
        cwd=cwd,
    )  # fmt: skip
    exported = tmp_path / "model.ts"
    run_bundle(
        ["ckpt_export", "network_def", "--filepath", str(exported), "--ckpt_file", str(bundle / "models" / "model.pt"),
         "--meta_file", str(configs / "metadata.json"), "--config_file", str(configs / "inference.json"), *TINY[name]],
        cwd=cwd,
    )  # fmt: skip
    eager = parse_config(configs / "inference.json", **TINY_NETWORK[name]).get_parsed_content("network_def")
    eager.load_state_dict(torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True))
    scripted = torch.jit.load(str(exported), map_location="cpu")
    x = torch.rand(2, 3, 64, 96)  # non-square
    with torch.no_grad():
        expected, got = eager.eval()(x), scripted(x)
        training_output = eager.train()(x)  # last: a training-mode pass updates the batch-norm statistics
    # eval mode (inference, export) returns one tensor, the final mask logits
    assert isinstance(expected, torch.Tensor) and isinstance(got, torch.Tensor)
    assert expected.shape == got.shape == (2, 1, 64, 96)
    assert training_output.shape == TRAIN_SHAPE[name]
    difference = (got - expected).abs().max().item()
    assert difference < 1e-4, f"TorchScript export differs from eager by {difference}"


# ----------------------------------------------------------------------------------------------------------------------
# inference geometry, the ISIC layout, learning
# ----------------------------------------------------------------------------------------------------------------------


def _image_with_block(shape: tuple[int, int], block: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
    """A dark image (rows, columns, RGB) with one bright red block, and the block's mask."""
    image = np.zeros((*shape, 3), dtype=np.uint8)
    image[..., 1:] = 80
    image[..., 0] = 60
    image[block + (0,)] = 230
    mask = np.zeros(shape, dtype=bool)
    mask[block] = True
    return image, mask


def test_inference_masks_keep_size_name_and_orientation(tmp_path: Path) -> None:
    """A 1x1 convolution that marks red pixels stands in for a trained network: every mask must land on its block.

    Non-square images in both orientations, a PNG and a JPEG, a space and non-ASCII letters in a name; the network
    input is square (64 x 64), so a transposed or unresized mask cannot pass.
    """
    bundle = copy_bundle("drrmsan", tmp_path)
    conv = torch.nn.Conv2d(3, 1, kernel_size=1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([20.0, 0.0, 0.0]).view(1, 3, 1, 1))  # logit 20 R - 10: red above 0.5
        conv.bias.fill_(-10.0)
    (bundle / "models").mkdir()
    torch.save(conv.state_dict(), bundle / "models" / "model.pt")
    images = tmp_path / "images"
    (images / "sub folder").mkdir(parents=True)
    cases = {
        "wide ünï frame": ((70, 150), (slice(8, 40), slice(20, 130)), ".png"),
        "tall": ((130, 60), (slice(70, 122), slice(6, 48)), ".jpg"),
    }
    truth = {}
    for stem, (shape, block, ext) in cases.items():
        image, truth[stem] = _image_with_block(shape, block)
        folder = images / "sub folder" if ext == ".jpg" else images
        Image.fromarray(image).save(folder / f"{stem}{ext}", quality=95)
    output = tmp_path / "out"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    network = {"_target_": "torch.nn.Conv2d", "in_channels": 3, "out_channels": 1, "kernel_size": 1}
    run_bundle(
        ["run", "--config_file", str(bundle / "configs" / "inference.json"), "--dataset_dir", str(images),
         "--output_dir", str(output), "--network_def", json.dumps(network), *SIZE, *FAST],
        cwd=cwd,
    )  # fmt: skip
    written = sorted(p.name for p in output.iterdir())
    for stem, expected in truth.items():
        if f"{stem}_mask.png" not in written:
            continue  # the names are asserted below, after the geometry of every mask that was written
        values = np.asarray(Image.open(output / f"{stem}_mask.png"))
        assert set(np.unique(values)) == {0, 1}, stem  # the label value of the one foreground label, not 255
        mask = values == 1
        assert mask.shape == expected.shape, stem
        iou = (mask & expected).sum() / (mask | expected).sum()
        assert iou > 0.9, f"{stem}: IoU {iou:.3f} with the drawn block"
    # every image of the folder, the one in a sub-folder included
    assert written == sorted(f"{stem}_mask.png" for stem in cases)


def test_isic_layout_by_override(tmp_path: Path) -> None:
    """``--layout isic --image_size [64,48] --dataset_dir DIR`` trains, evaluates and infers on the ISIC layout (read
    in place; image_size is [width, height])."""
    bundle = copy_bundle("ddanet", tmp_path)
    data = polyp_skin.generate_isic_demo(tmp_path / "ISIC 2017", num_images=6)
    image_dir = data / "ISIC-2017_Training_Data"
    shutil.copy(image_dir / "ISIC_DEMO000.jpg", image_dir / "ISIC_DEMO000_superpixels.png")  # never an input image
    isic = ["--layout", "isic", "--image_size", "[64,48]", "--dataset_dir", str(data), *TINY["ddanet"], *FAST]
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    configs = bundle / "configs"
    run_bundle(["run", "training", "--config_file", str(configs / "train.json"), "--epochs", "1", "--val_interval", "1", *isic], cwd=cwd)
    assert (bundle / "models" / "model.pt").is_file()
    assert not (bundle / "demo_data").exists(), "a real dataset_dir must never fall back to demo data"

    cases = [f"ISIC_DEMO{i:03d}" for i in range(6)]
    run_bundle(["run", "--config_file", str(configs / "evaluate.json"), *isic], cwd=cwd)
    rows = read_csv(bundle / "eval" / "metrics.csv")
    assert [r["group"] for r in rows] == [*cases, "mean"]

    output = tmp_path / "masks"
    run_bundle(["run", "--config_file", str(configs / "inference.json"), "--output_dir", str(output), *isic], cwd=cwd)
    assert sorted(p.name for p in output.iterdir()) == [f"{case}_mask.png" for case in cases]
    for case in cases:
        assert Image.open(output / f"{case}_mask.png").size == Image.open(image_dir / f"{case}.jpg").size


def test_ddanet_learns_the_demo_task(tmp_path: Path) -> None:
    """DDANet on the Kvasir demo at 64 x 64: within 12 epochs the loss falls by at least 10% and validation Dice exceeds
    0.8; the chosen model then scores a mean Dice above 0.8 over all 16 demo images at their original sizes."""
    bundle = copy_bundle("ddanet", tmp_path)
    configs = bundle / "configs"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    net = ["--network_def#channels", "[8,16,32,64]", "--network_def#decoder_channels", "[32,16,8,8]", *SIZE]
    result = run_bundle(
        ["run", "training", "--config_file", str(configs / "train.json"), "--epochs", "12", "--val_interval", "1",
         "--learning_rate", "3e-3", "--batch_size", "4", *net, *FAST],
        cwd=cwd,
    )  # fmt: skip
    log = result.stdout + result.stderr
    losses = losses_per_iteration(log, 12)
    per_epoch = len(losses) // 12
    assert per_epoch > 0, log[-3000:]
    first, last = np.mean(losses[:per_epoch]), np.mean(losses[-2 * per_epoch :])
    val_dice = [float(v) for v in re.findall(r"val_mean_dice: ([0-9.]+)", log)]
    # the grayscale-reconstruction BCE has a floor well above 0, so the total loss falls by tens of percent, not to 0
    assert last < 0.9 * first, f"loss did not fall: first epoch {first:.3f}, last two epochs {last:.3f}"
    assert max(val_dice) > 0.8, f"validation Dice per epoch: {val_dice}"

    run_bundle(["run", "--config_file", str(configs / "evaluate.json"), *net, *FAST], cwd=cwd)
    mean = read_csv(bundle / "eval" / "metrics.csv")[-1]
    assert mean["group"] == "mean" and float(mean["dice_polyp"]) > 0.8, mean


def test_ssformer_learns_the_demo_task(tmp_path: Path) -> None:
    """SSFormer (narrow widths, one block per stage) on the Kvasir demo at 64 x 64 with the bundle's own loss and
    optimizer (lr raised to 1e-3 for the short run): within 24 epochs the loss falls by at least 25% and validation
    Dice rises above 0.8 from a lower first value; the chosen model then scores a mean Dice above 0.75 over all 16 demo
    images at their original sizes. About 30 s on one core."""
    bundle = copy_bundle("ssformer", tmp_path)
    configs = bundle / "configs"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    net = ["--network_def#depths", "[1,1,1,1]", "--network_def#embed_dims", "[16,32,64,128]",
           "--network_def#num_heads", "[1,1,2,2]", "--network_def#decoder_channels", "32", *SIZE]
    result = run_bundle(
        ["run", "training", "--config_file", str(configs / "train.json"), "--epochs", "24", "--val_interval", "1",
         "--learning_rate", "1e-3", "--batch_size", "4", *net, *FAST],
        cwd=cwd,
    )  # fmt: skip
    log = result.stdout + result.stderr
    losses = losses_per_iteration(log, 24)
    per_epoch = len(losses) // 24
    assert per_epoch > 0, log[-3000:]
    first, last = np.mean(losses[:per_epoch]), np.mean(losses[-2 * per_epoch :])
    val_dice = [float(v) for v in re.findall(r"val_mean_dice: ([0-9.]+)", log)]
    assert last < 0.75 * first, f"loss did not fall: first epoch {first:.3f}, last two epochs {last:.3f}"
    assert max(val_dice) > 0.8 and val_dice[0] < 0.8, f"validation Dice per epoch: {val_dice}"

    run_bundle(["run", "--config_file", str(configs / "evaluate.json"), *net, *FAST], cwd=cwd)
    mean = read_csv(bundle / "eval" / "metrics.csv")[-1]
    assert mean["group"] == "mean" and float(mean["dice_polyp"]) > 0.75, mean


# ----------------------------------------------------------------------------------------------------------------------
# configs, datalists, metadata (no subprocess)
# ----------------------------------------------------------------------------------------------------------------------


def test_ddanet_grayscale_target_in_training_only(tmp_path: Path) -> None:
    bundle = copy_bundle("ddanet", tmp_path)
    parser = parse_config(bundle / "configs" / "train.json", bundle_root=str(bundle), image_size=[64, 64])
    item = parser.get_parsed_content("train_datalist")[0]
    train = parser.get_parsed_content("train#preprocessing")(dict(item))
    assert train["image"].shape == (3, 64, 64) and train["label"].shape == (2, 64, 64)
    gray = (torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1) * train["image"].as_tensor()).sum(0)
    torch.testing.assert_close(train["label"][1].as_tensor(), gray)
    assert set(torch.unique(train["label"][0]).tolist()) <= {0.0, 1.0}
    assert 0.0 <= float(gray.min()) and float(gray.max()) <= 1.0
    validation = parser.get_parsed_content("validate#preprocessing")(dict(item))
    assert validation["label"].shape == (1, 64, 64)
    loss = parser.get_parsed_content("loss")
    assert isinstance(loss, MaskAndReconstructionLoss) and isinstance(loss.mask_loss, DiceBCELoss)
    parser["reconstruction_weight"] = 0.25
    assert parser.get_parsed_content("loss", lazy=False).recon_weight == 0.25


def test_drrmsan_loss_is_bce_on_all_outputs_with_configurable_weights(tmp_path: Path) -> None:
    bundle = copy_bundle("drrmsan", tmp_path)
    parser = parse_config(bundle / "configs" / "train.json", bundle_root=str(bundle))
    loss = parser.get_parsed_content("loss")
    assert isinstance(loss, StackedDeepSupervisionLoss) and isinstance(loss.loss, torch.nn.BCEWithLogitsLoss)
    torch.manual_seed(0)
    stacked = torch.randn(2, 5, 1, 16, 16)
    target = (torch.rand(2, 1, 16, 16) > 0.7).float()
    per_head = [F.binary_cross_entropy_with_logits(stacked[:, k], target) for k in range(5)]
    torch.testing.assert_close(loss(stacked, target), sum(per_head))
    parser["deep_supervision_weights"] = [1.0, 0.5, 0.0, 0.0, 0.0]
    weighted = parser.get_parsed_content("loss", lazy=False)
    torch.testing.assert_close(weighted(stacked, target), per_head[0] + 0.5 * per_head[1])


def test_ssformer_loss_optimizer_and_pretrained_option(tmp_path: Path) -> None:
    """BCE + Dice on logits, AdamW lr 1e-4 / weight decay 0.01, and ``network_def#pretrained_checkpoint`` loading a
    user's MiT checkpoint strictly (a wrong one stops the build naming the file)."""
    bundle = copy_bundle("ssformer", tmp_path)
    tiny = TINY_NETWORK["ssformer"]
    parser = parse_config(bundle / "configs" / "train.json", bundle_root=str(bundle), device="cpu", **tiny)
    assert isinstance(parser.get_parsed_content("loss"), DiceBCELoss)
    optimizer = parser.get_parsed_content("optimizer")
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.defaults["lr"] == 1e-4 and optimizer.defaults["weight_decay"] == 0.01
    encoder = parser.get_parsed_content("network_def", lazy=False).backbone
    mit = {k: torch.randn_like(v) for k, v in encoder.state_dict().items()}  # MiT names: patch_embed1.proj.weight, ...
    mit |= {"head.weight": torch.zeros(1000, 64), "head.bias": torch.zeros(1000)}
    checkpoint = tmp_path / "mit.pth"
    torch.save(mit, checkpoint)
    parser["network_def#pretrained_checkpoint"] = str(checkpoint)
    loaded = parser.get_parsed_content("network_def", lazy=False)
    assert all(torch.equal(v, mit[k]) for k, v in loaded.backbone.state_dict().items())
    torch.save({k: v for k, v in mit.items() if k != "norm4.bias"}, checkpoint)
    with pytest.raises(Exception) as error:
        parser.get_parsed_content("network_def", lazy=False)
    messages = [str(error.value), str(error.value.__cause__)]
    assert any("mit.pth" in m and "missing (1): norm4.bias" in m for m in messages), messages


def test_ssformer_unfitting_pretrained_checkpoint_stops_training_in_one_line(tmp_path: Path) -> None:
    bundle = copy_bundle("ssformer", tmp_path)
    checkpoint = tmp_path / "mit b5.pth"
    torch.save({"patch_embed1.proj.weight": torch.zeros(64, 3, 7, 7), "block3.39.attn.q.weight": torch.zeros(1)},
               checkpoint)
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(bundle / "configs" / "train.json"),
         "--network_def#pretrained_checkpoint", str(checkpoint), *TINY["ssformer"], *SIZE, *FAST],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert "PretrainedCheckpointError" in errors[0] and str(checkpoint) in errors[0]
    assert "unexpected (1): block3.39.attn.q.weight" in errors[0] and "missing (" in errors[0]
    assert not (bundle / "models" / "model.pt").exists()


def test_inference_datalist_reads_layout_images_never_masks(tmp_path: Path) -> None:
    """A Kvasir-SEG or ISIC folder given to inference: its images only (never the same-named masks or superpixels)."""
    task = trained_task(tmp_path / "no_model", "kvasir")
    kvasir = polyp_skin.generate_kvasir_demo(tmp_path / "kvasir", num_images=2)
    found = inference_datalist(str(kvasir), task, "kvasir")
    assert [e["case"] for e in found] == ["DEMO_000", "DEMO_001"] and all("label" not in e for e in found)
    for entry in found:  # the image's pixels (lossless copy), not its mask's
        with Image.open(entry["image"]) as image, Image.open(kvasir / "images" / f"{entry['case']}.jpg") as jpeg:
            np.testing.assert_array_equal(np.asarray(image), np.asarray(jpeg.convert("RGB")))
    isic = polyp_skin.generate_isic_demo(tmp_path / "isic", num_images=2)
    found = inference_datalist(str(isic), task, "isic")
    assert [e["case"] for e in found] == ["ISIC_DEMO000", "ISIC_DEMO001"]
    plain = tmp_path / "plain"
    (plain / "b").mkdir(parents=True)
    shutil.copy(kvasir / "images" / "DEMO_000.jpg", plain / "x.jpg")
    assert [e["case"] for e in inference_datalist(str(plain), task, "kvasir")] == ["x"]
    shutil.copy(kvasir / "images" / "DEMO_001.jpg", plain / "b" / "x.jpg")
    with pytest.raises(DatasetError, match="are both case 'x'"):
        inference_datalist(str(plain), task, "kvasir")


@pytest.mark.parametrize("name", POLYP_BUNDLES)
def test_metadata_and_files(name: str) -> None:
    configs = BUNDLES / name / "configs"
    meta = json.loads((configs / "metadata.json").read_text())
    image = meta["network_data_format"]["inputs"]["image"]
    assert image["num_channels"] == 3 and image["format"] == "RGB"
    assert image["channel_def"] == {"0": "R", "1": "G", "2": "B"}
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {"1": "polyp"}
    assert not (configs / "inference_volume.json").exists()  # RGB photographs have no volumes
    for config in ["train.json", "inference.json", "evaluate.json"]:
        values = json.loads((configs / config).read_text())
        assert values["layout"] == "kvasir" and values["image_size"] == IMAGE_SIZE[name]
    card = (BUNDLES / name / "docs" / "README.md").read_text()
    assert "No pretrained weights ship" in card and "@@" not in card
    assert '--layout isic --image_size "[256,192]"' in card  # [width, height]: ISIC 2017's 4:3 landscape images
