"""Tests of the Kvasir-SEG and ISIC 2017 layouts: demo generators (custom_nets.data.polyp_skin), discovery and
errors (custom_nets.convert.polyp_skin), the demos as the bundles open them (splits) and the MONAI chain."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import (
    AsDiscreted,
    Compose,
    EnsureTyped,
    Invertd,
    LoadImaged,
    Resized,
    SaveImaged,
    ScaleIntensityRanged,
)
from PIL import Image

from custom_nets.convert import polyp_skin as cps
from custom_nets.data import demo
from custom_nets.data import polyp_skin as ps
from custom_nets.data.dataset import open_dataset
from custom_nets.data.errors import DatasetError
from custom_nets.transforms.grayscale import AppendGrayscaled

N_DEMO = 6


@pytest.fixture(scope="module")
def kvasir_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ps.generate_kvasir_demo(tmp_path_factory.mktemp("kvasir"), num_images=N_DEMO, seed=3)


@pytest.fixture(scope="module")
def isic_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ps.generate_isic_demo(tmp_path_factory.mktemp("isic"), num_images=N_DEMO, seed=3)


def _write(path: Path, array: np.ndarray, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)
    return path


def _read(path: str | Path, mode: str | None = None) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image if mode is None else image.convert(mode))


def _rgb(h: int = 20, w: int = 30) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _mask(h: int = 20, w: int = 30) -> np.ndarray:
    m = np.zeros((h, w), dtype=np.uint8)
    m[2:9, 4:20] = 255  # asymmetric: detects transposed or flipped loading
    return m


def _chain(size: tuple[int, int] | None) -> Compose:
    """The loading chain documented in custom_nets.data.polyp_skin."""
    resize = (
        [
            Resized(keys="image", spatial_size=size, mode="bilinear", anti_aliasing=True),
            Resized(keys="label", spatial_size=size, mode="nearest-exact"),
        ]
        if size is not None
        else []
    )
    return Compose(
        [
            LoadImaged(keys="image", reader="PILReader", reverse_indexing=False, converter=cps.pil_to_rgb,
                       ensure_channel_first=True, image_only=True),
            LoadImaged(keys="label", reader="PILReader", reverse_indexing=False, converter=cps.pil_to_luminance,
                       ensure_channel_first=True, image_only=True),
            ScaleIntensityRanged(keys="image", a_min=0, a_max=255, b_min=0, b_max=1, clip=True),
            AsDiscreted(keys="label", threshold=128),
            *resize,
            EnsureTyped(keys=["image", "label"], dtype=torch.float32),
        ]
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# demo data
# ----------------------------------------------------------------------------------------------------------------------


def test_kvasir_demo_layout_sizes_and_jpeg_masks(kvasir_demo: Path) -> None:
    cases = cps.find_kvasir_cases(kvasir_demo)
    assert [c["case"] for c in cases] == [f"DEMO_{i:03d}" for i in range(N_DEMO)]
    marker = json.loads((kvasir_demo / "dataset.json").read_text())
    assert marker["synthetic"] and marker["num_images"] == N_DEMO and marker["seed"] == 3
    sizes = set()
    for i, case in enumerate(cases):
        rgb = _read(case["image"])
        height, width, channels = rgb.shape
        assert channels == 3 and 180 <= width <= 260 and 180 <= height <= 260
        sizes.add((height, width))
        mask = _read(case["label"])
        assert mask.shape == (height, width)
        true_mask = ps._kvasir_demo_case(3, i)[1]
        assert not set(np.unique(mask).tolist()) <= {0, 255}  # JPEG noise: not strictly binary
        binary = mask > 127
        iou = (binary & true_mask).sum() / (binary | true_mask).sum()
        assert iou > 0.97 and 0.01 < true_mask.mean() < 0.5
        rgb = rgb.astype(np.float32)
        assert rgb[..., 0].mean() > rgb[..., 2].mean() + 40  # reddish mucosa
    assert len(sizes) > 1  # variable image sizes


def test_isic_demo_layout_and_binary_masks(isic_demo: Path) -> None:
    assert (isic_demo / "ISIC-2017_Training_Data").is_dir()
    assert (isic_demo / "ISIC-2017_Training_Part1_GroundTruth").is_dir()
    cases = cps.find_isic_cases(isic_demo)  # sub-folders found automatically
    assert [c["case"] for c in cases] == [f"ISIC_DEMO{i:03d}" for i in range(N_DEMO)]
    for case in cases:
        assert case["label"].endswith(f"{case['case']}_segmentation.png")
        mask = _read(case["label"])
        assert set(np.unique(mask).tolist()) == {0, 255}
        rgb = _read(case["image"]).astype(np.float32)
        lesion, skin = rgb[mask > 0].mean(), rgb[mask == 0].mean()
        assert lesion < skin - 30  # darker lesion on skin
        assert rgb.shape[1] > rgb.shape[0]  # landscape, about 3:4


def test_demo_is_deterministic_reused_and_guarded(tmp_path: Path) -> None:
    a = ps.generate_kvasir_demo(tmp_path / "a", num_images=3, seed=7)
    b = ps.generate_kvasir_demo(tmp_path / "b", num_images=3, seed=7)
    for sub in ("images", "masks"):
        for name in sorted(os.listdir(a / sub)):
            assert (a / sub / name).read_bytes() == (b / sub / name).read_bytes()
    other = ps.generate_kvasir_demo(tmp_path / "c", num_images=3, seed=8)
    assert (other / "images" / "DEMO_000.jpg").read_bytes() != (a / "images" / "DEMO_000.jpg").read_bytes()
    # reuse: nothing is rewritten; a missing file is completed
    mtimes = {p: p.stat().st_mtime_ns for p in (a / "images").iterdir()}
    (a / "masks" / "DEMO_001.jpg").unlink()
    ps.generate_kvasir_demo(a, num_images=3, seed=7)
    assert (a / "masks" / "DEMO_001.jpg").read_bytes() == (b / "masks" / "DEMO_001.jpg").read_bytes()
    assert (a / "images" / "DEMO_000.jpg").stat().st_mtime_ns == mtimes[a / "images" / "DEMO_000.jpg"]
    assert not [p for p in a.rglob(".partial-*")]  # no temporary files left
    with pytest.raises(DatasetError, match="generated with"):
        ps.generate_kvasir_demo(a, num_images=4, seed=7)
    ps.generate_kvasir_demo(a, num_images=4, seed=7, overwrite=True)
    assert len(cps.find_kvasir_cases(a)) == 4
    # a folder with other data and no marker is never written into
    _write(tmp_path / "real" / "images" / "x.jpg", _rgb())
    with pytest.raises(DatasetError, match="marker"):
        ps.generate_kvasir_demo(tmp_path / "real")
    with pytest.raises(ValueError):
        ps.generate_isic_demo(tmp_path / "d", num_images=0)


# ----------------------------------------------------------------------------------------------------------------------
# layouts and errors
# ----------------------------------------------------------------------------------------------------------------------


def test_kvasir_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist") as err:
        cps.find_kvasir_cases(tmp_path / "missing")
    assert err.value.path == str(tmp_path / "missing")
    (tmp_path / "k" / "images").mkdir(parents=True)
    (tmp_path / "k" / "masks").mkdir()
    with pytest.raises(DatasetError, match="contains no images"):
        cps.find_kvasir_cases(tmp_path / "k")
    _write(tmp_path / "k" / "images" / "a.jpg", _rgb())
    _write(tmp_path / "k" / "images" / "b.jpg", _rgb())
    _write(tmp_path / "k" / "masks" / "a.jpg", _mask())
    with pytest.raises(DatasetError, match="b.jpg has no mask"):
        cps.find_kvasir_cases(tmp_path / "k")
    assert [("label" in c) for c in cps.find_kvasir_cases(tmp_path / "k", require_label=False)] == [True, False]
    _write(tmp_path / "k" / "masks" / "b.jpg", _mask())
    (tmp_path / "k" / "images" / "c.jpg").write_bytes(b"")
    _write(tmp_path / "k" / "masks" / "c.jpg", _mask())
    with pytest.raises(DatasetError, match=r"c\.jpg is empty \(0 bytes\)"):
        cps.find_kvasir_cases(tmp_path / "k")
    (tmp_path / "k" / "images" / "c.jpg").unlink()
    _write(tmp_path / "k" / "images" / "a.png", _rgb())
    with pytest.raises(DatasetError, match="same case name 'a'"):
        cps.find_kvasir_cases(tmp_path / "k")
    (tmp_path / "k" / "images" / "a.png").unlink()
    cases = cps.find_kvasir_cases(tmp_path / "k")
    assert [c["case"] for c in cases] == ["a", "b"]
    assert all(os.path.isabs(c["image"]) and os.path.isabs(c["label"]) for c in cases)
    shutil.rmtree(tmp_path / "k" / "masks")
    with pytest.raises(DatasetError, match="mask folder .* does not exist"):
        cps.find_kvasir_cases(tmp_path / "k")
    assert len(cps.find_kvasir_cases(tmp_path / "k", require_label=False)) == 2


def test_isic_one_folder_separate_folders_and_errors(tmp_path: Path) -> None:
    one = tmp_path / "one"
    for i in range(3):
        _write(one / f"ISIC_000000{i}.jpg", _rgb())
        _write(one / f"ISIC_000000{i}_segmentation.png", _mask())
        _write(one / f"ISIC_000000{i}_superpixels.png", _rgb())  # challenge files that are neither image nor mask
    cases = cps.find_isic_cases(one)
    assert [c["case"] for c in cases] == ["ISIC_0000000", "ISIC_0000001", "ISIC_0000002"]
    assert all(c["image"].endswith(".jpg") for c in cases)

    images, masks = tmp_path / "imgs", tmp_path / "elsewhere" / "gt"
    for i in range(2):
        _write(images / f"ISIC_100000{i}.jpg", _rgb())
        _write(masks / f"ISIC_100000{i}_segmentation.png", _mask())
    assert len(cps.find_isic_cases(images, mask_dir=masks)) == 2
    with pytest.raises(DatasetError, match="ISIC_1000000.jpg has no mask"):
        cps.find_isic_cases(images)  # masks elsewhere and not passed
    with pytest.raises(DatasetError, match="does not exist"):
        cps.find_isic_cases(images, mask_dir=tmp_path / "nope")

    (masks / "ISIC_1000001_segmentation.png").write_bytes(b"")
    with pytest.raises(DatasetError, match="ISIC_1000001_segmentation.png is empty"):
        cps.find_isic_cases(images, mask_dir=masks)
    with pytest.raises(DatasetError, match="no ISIC_<id> images"):
        cps.find_isic_cases(tmp_path / "elsewhere")
    only_images = tmp_path / "noseg"
    _write(only_images / "data" / "ISIC_0000009.jpg", _rgb())
    with pytest.raises(DatasetError, match="no ISIC_<id>_segmentation.png masks"):
        cps.find_isic_cases(only_images)
    assert cps.find_isic_cases(only_images, require_label=False)[0].keys() == {"case", "image"}


def test_demos_open_generated_once_split_by_case_and_never_replace_a_real_folder(tmp_path: Path) -> None:
    kvasir_dir, isic_dir = tmp_path / "kvasir_demo", tmp_path / "isic_demo"
    kvasir = open_dataset("demo", demo="kvasir", demo_dir=kvasir_dir, spatial_dims=2)
    all_cases = {c["case"] for c in kvasir.training}  # generated on first use, default parameters
    assert len(all_cases) == 16 and (kvasir_dir / "dataset.json").is_file()
    train, val = kvasir.split(val_fraction=0.25, seed=1)
    assert len(val) == 4 and {c["case"] for c in train} | {c["case"] for c in val} == all_cases
    assert not {c["case"] for c in train} & {c["case"] for c in val}
    assert open_dataset("demo", demo="kvasir", demo_dir=kvasir_dir).split(val_fraction=0.25, seed=1)[1] == val
    assert kvasir.split(val_fraction=0.25, seed=2)[1] != val
    isic = open_dataset("DEMO", demo="isic", demo_dir=isic_dir)
    folds = [isic.split(num_folds=5, fold=f, seed=0)[1] for f in range(5)]
    validated = sorted(c["case"] for fold in folds for c in fold)
    assert validated == sorted(c["case"] for c in isic.training)  # each case once
    with pytest.raises(ValueError, match="demo_dir"):
        open_dataset("demo", demo="kvasir", demo_dir=None).training
    with pytest.raises(DatasetError, match="does not exist"):
        open_dataset(str(tmp_path / "typo"), demo="kvasir", demo_dir=tmp_path / "other")  # no fallback to the demo
    assert not (tmp_path / "other").exists()
    assert demo.read_demo_marker(kvasir_dir)["task"] == "kvasir"


# ----------------------------------------------------------------------------------------------------------------------
# the MONAI loading chain
# ----------------------------------------------------------------------------------------------------------------------


def test_chain_shapes_values_and_orientation(tmp_path: Path) -> None:
    h, w = 20, 30
    image = _write(tmp_path / "img.png", np.dstack([_rgb(h, w), np.full((h, w), 255, np.uint8)]))  # RGBA
    noisy = _mask(h, w)
    noisy[noisy == 255] = 200  # a JPEG-like mask that is not 0/255
    noisy[0, 0] = 127  # just below the threshold
    mask = _write(tmp_path / "mask.png", np.dstack([noisy] * 3))  # an RGB mask, as in Kvasir-SEG
    out = _chain(None)({"image": str(image), "label": str(mask)})
    assert out["image"].shape == (3, h, w) and out["label"].shape == (1, h, w)  # (C, H, W), not MONAI's (C, W, H)
    assert out["image"].dtype == torch.float32 and out["label"].dtype == torch.float32
    assert 0.0 <= float(out["image"].min()) and float(out["image"].max()) <= 1.0
    torch.testing.assert_close(out["image"].as_tensor(), torch.from_numpy(_rgb(h, w)).permute(2, 0, 1).float() / 255)
    np.testing.assert_array_equal(out["label"][0].numpy(), (noisy > 127).astype(np.float32))
    # MONAI's default PILReader swaps the axes: that is what reverse_indexing=False avoids
    default_loader = LoadImaged(keys="label", reader="PILReader", image_only=True, ensure_channel_first=True)
    default = default_loader({"label": str(mask)})
    assert default["label"].shape[1:] == (w, h)

    for size in (cps.KVASIR_SIZE, cps.ISIC_SIZE):
        resized = _chain(size)({"image": str(image), "label": str(mask)})
        assert resized["image"].shape == (3, *size) and resized["label"].shape == (1, *size)
        assert set(torch.unique(resized["label"]).tolist()) == {0.0, 1.0}
        with_gray = AppendGrayscaled(keys="label")(resized)
        assert with_gray["label"].shape == (2, *size)


def test_mask_saved_back_at_original_size_matches(kvasir_demo: Path, tmp_path: Path) -> None:
    # a non-square case catches transposition
    case = next(c for c in cps.find_kvasir_cases(kvasir_demo) if len(set(_read(c["label"]).shape)) == 2)
    original = _read(case["label"], "L") > 127

    def saver(folder: Path) -> SaveImaged:
        return SaveImaged(
            keys="pred", output_dir=str(folder), output_ext=".png", output_dtype=np.uint8, scale=255, resample=False,
            separate_folder=False, writer="PILWriter", print_log=False,
        ).set_options(write_kwargs={"reverse_indexing": False})  # fmt: skip

    data = _chain(None)(dict(case))
    data["pred"] = data["label"]
    saver(tmp_path / "plain")(data)
    (written,) = list((tmp_path / "plain").iterdir())
    np.testing.assert_array_equal(_read(written) > 127, original)

    # through the resize to the network size and Invertd back to the original size
    chain = _chain(cps.KVASIR_SIZE)
    data = chain(dict(case))
    assert data["label"].shape == (1, *cps.KVASIR_SIZE)
    data["pred"] = data["label"].clone()
    data = Invertd(keys="pred", transform=chain, orig_keys="image", nearest_interp=False)(data)
    data["pred"] = (data["pred"] > 0.5).float()
    assert data["pred"].shape == (1, *original.shape)
    saver(tmp_path / "inverted")(data)
    (written,) = list((tmp_path / "inverted").iterdir())
    back = _read(written) > 127
    assert back.shape == original.shape
    assert (back & original).sum() / (back | original).sum() > 0.95
