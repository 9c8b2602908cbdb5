"""Tests of the LGG slice data helpers (demo generator and class weights: custom_nets.data.lgg; discovery:
custom_nets.convert.lgg; patient-level splits) and the recommended MONAI chain. The segmentation-loss factory:
tests/losses/test_segmentation.py."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from custom_nets.convert.lgg import find_lgg_slices
from custom_nets.data.common import split_groups
from custom_nets.data.dataset import open_dataset
from custom_nets.data.errors import DatasetError
from custom_nets.data.lgg import foreground_fraction, generate_lgg_demo, positive_class_weight
from custom_nets.losses.segmentation import segmentation_loss

SMALL_DEMO = {"num_patients": 3, "slices_per_patient": 6, "size": 64}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default demo dataset (6 patients x 12 slices of 128 x 128), generated once for the module."""
    out = tmp_path_factory.mktemp("lgg") / "demo"
    start = time.perf_counter()
    generate_lgg_demo(out)
    elapsed = time.perf_counter() - start
    assert elapsed < 3.0, f"generating the default demo took {elapsed:.1f} s"
    return out


def _read(path: str | Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def _write_slice(folder: Path, patient: str, n: int, mask: np.ndarray | None = None, size: tuple = (8, 8)) -> None:
    """A tiny hand-made LGG slice: an RGB image and, if ``mask`` is given (or by default), its 0/255 mask."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), 7 * n % 256, np.uint8)).save(folder / f"{patient}_{n}.tif")
    if mask is None:
        mask = np.zeros(size, np.uint8)
    Image.fromarray(mask.astype(np.uint8)).save(folder / f"{patient}_{n}_mask.tif")


# ----------------------------------------------------------------------------------------------------------------------
# Demo generator
# ----------------------------------------------------------------------------------------------------------------------


def test_demo_layout_and_content(demo: Path) -> None:
    patients = sorted(p.name for p in demo.iterdir() if p.is_dir())
    assert patients == [f"DEMO_LGG_{i:03d}" for i in range(6)]
    assert (demo / "dataset.json").is_file() and (demo / "README.txt").is_file()
    for patient in patients:
        names = sorted(p.name for p in (demo / patient).iterdir())
        expected = sorted(f"{patient}_{n}{suffix}.tif" for n in range(1, 13) for suffix in ("", "_mask"))
        assert names == expected
        with_tumour = 0
        for n in range(1, 13):
            with Image.open(demo / patient / f"{patient}_{n}.tif") as im:
                assert im.format == "TIFF" and im.mode == "RGB" and im.size == (128, 128)
                image = np.asarray(im)
            with Image.open(demo / patient / f"{patient}_{n}_mask.tif") as m:
                assert m.format == "TIFF" and m.mode == "L" and m.size == (128, 128)
                mask = np.asarray(m)
            assert image.dtype == np.uint8 and image.shape == (128, 128, 3)
            assert set(np.unique(mask).tolist()) <= {0, 255}
            brain = image.max(axis=-1) > 0
            assert 0.1 < brain.mean() < 0.7 and image[0, 0].tolist() == [0, 0, 0]  # a head on a black background
            assert not bool((mask > 0)[~brain].any())  # the lesion lies inside the brain
            if mask.any():
                with_tumour += 1
                lesion = mask > 0
                healthy = brain & ~lesion
                contrast = [float(image[..., c][lesion].mean() - image[..., c][healthy].mean()) for c in range(3)]
                assert contrast[1] > 60 and contrast[1] > abs(contrast[0]) and contrast[1] > abs(contrast[2])
        assert 4 <= with_tumour <= 8  # about half of the 12 slices


def test_demo_is_deterministic_and_reused(tmp_path: Path) -> None:
    a = generate_lgg_demo(tmp_path / "a", **SMALL_DEMO, seed=3)
    b = generate_lgg_demo(tmp_path / "b", **SMALL_DEMO, seed=3)
    c = generate_lgg_demo(tmp_path / "c", **SMALL_DEMO, seed=4)
    files = sorted(p.relative_to(a) for p in a.rglob("*.tif"))
    assert len(files) == 3 * 6 * 2
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.tif"))
    for rel in files:
        np.testing.assert_array_equal(_read(a / rel), _read(b / rel))
    assert any(not np.array_equal(_read(a / rel), _read(c / rel)) for rel in files)

    # a complete folder is reused as it is; a missing file is regenerated identically
    image = a / "DEMO_LGG_001" / "DEMO_LGG_001_3.tif"
    stamp = image.stat().st_mtime_ns
    before = _read(image)
    assert generate_lgg_demo(a, **SMALL_DEMO, seed=3) == a
    assert image.stat().st_mtime_ns == stamp
    (a / "DEMO_LGG_001" / "DEMO_LGG_001_2_mask.tif").unlink()
    generate_lgg_demo(a, **SMALL_DEMO, seed=3)
    assert (a / "DEMO_LGG_001" / "DEMO_LGG_001_2_mask.tif").is_file()
    np.testing.assert_array_equal(_read(image), before)
    assert not [p for p in a.iterdir() if p.name.startswith(".")]  # no temporary folders left behind

    # other parameters: an error naming the folder, unless overwrite
    with pytest.raises(DatasetError, match=str(a)):
        generate_lgg_demo(a, **SMALL_DEMO, seed=5)
    generate_lgg_demo(a, **SMALL_DEMO, seed=4, overwrite=True)
    for rel in files:
        np.testing.assert_array_equal(_read(a / rel), _read(c / rel))


def test_demo_argument_and_folder_checks(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="size"):
        generate_lgg_demo(tmp_path / "x", size=8)
    with pytest.raises(ValueError, match="num_patients"):
        generate_lgg_demo(tmp_path / "x", num_patients=0)
    a_file = tmp_path / "file"
    a_file.write_text("not a folder")
    with pytest.raises(DatasetError, match=str(a_file)):
        generate_lgg_demo(a_file)
    unmarked = tmp_path / "unmarked"
    (unmarked / "DEMO_LGG_000").mkdir(parents=True)
    with pytest.raises(DatasetError, match="marker"):
        generate_lgg_demo(unmarked)


# ----------------------------------------------------------------------------------------------------------------------
# Finding slices
# ----------------------------------------------------------------------------------------------------------------------


def test_find_slices_on_demo(demo: Path) -> None:
    items = find_lgg_slices(demo)
    assert len(items) == 6 * 12
    assert set(items[0]) == {"patient", "slice", "image", "label"}
    assert [(i["patient"], i["slice"]) for i in items] == sorted((i["patient"], i["slice"]) for i in items)
    for item in items:
        assert os.path.isabs(item["image"]) and item["image"].endswith(f"{item['patient']}_{item['slice']}.tif")
        assert item["label"] == item["image"][: -len(".tif")] + "_mask.tif"
    infer = find_lgg_slices(demo, require_mask=False)
    assert [i["image"] for i in infer] == [i["image"] for i in items]
    assert all("label" not in i for i in infer)


def test_find_slices_numeric_order_and_real_names(tmp_path: Path) -> None:
    root = tmp_path / "kaggle_3m"
    for patient in ("TCGA_HT_7616_19940813", "TCGA_CS_4941_19960909"):
        for n in (10, 2, 1, 21, 3):
            _write_slice(root / patient, patient, n)
    (root / "data.csv").write_text("Patient,RNASeqCluster\n")
    (root / "README.md").write_text("readme\n")
    items = find_lgg_slices(root)
    assert [i["patient"] for i in items] == ["TCGA_CS_4941_19960909"] * 5 + ["TCGA_HT_7616_19940813"] * 5
    assert [i["slice"] for i in items[:5]] == [1, 2, 3, 10, 21]
    assert all(isinstance(i["slice"], int) for i in items)
    # pointing at the folder above: the message says where the patients are
    with pytest.raises(DatasetError, match="kaggle_3m"):
        find_lgg_slices(tmp_path)


def test_find_slices_errors_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(DatasetError, match=str(missing)) as info:
        find_lgg_slices(missing)
    assert info.value.path == str(missing)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match=f"{empty}.*no patient folders"):
        find_lgg_slices(empty)

    root = tmp_path / "no_mask"
    _write_slice(root / "P_A", "P_A", 1)
    _write_slice(root / "P_A", "P_A", 2)
    (root / "P_A" / "P_A_2_mask.tif").unlink()
    with pytest.raises(DatasetError, match="P_A_2.tif has no mask") as info:
        find_lgg_slices(root)
    assert str(root / "P_A" / "P_A_2.tif") in str(info.value)
    assert len(find_lgg_slices(root, require_mask=False)) == 2  # fine for inference

    root = tmp_path / "no_image"
    _write_slice(root / "P_B", "P_B", 1)
    _write_slice(root / "P_B", "P_B", 4)
    (root / "P_B" / "P_B_4.tif").unlink()
    for require_mask in (True, False):
        with pytest.raises(DatasetError, match="has no image") as info:
            find_lgg_slices(root, require_mask=require_mask)
        assert str(root / "P_B" / "P_B_4_mask.tif") in str(info.value)

    for which in ("P_C_1.tif", "P_C_1_mask.tif"):
        root = tmp_path / f"zero_{which}"
        _write_slice(root / "P_C", "P_C", 1)
        (root / "P_C" / which).write_bytes(b"")
        with pytest.raises(DatasetError, match="empty") as info:
            find_lgg_slices(root)
        assert str(root / "P_C" / which) in str(info.value)

    root = tmp_path / "not_tiff"
    _write_slice(root / "P_D", "P_D", 1)
    (root / "P_D" / "P_D_1.tif").write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match="not a TIFF") as info:
        find_lgg_slices(root)
    assert str(root / "P_D" / "P_D_1.tif") in str(info.value)

    root = tmp_path / "bad_name"
    _write_slice(root / "P_E", "P_E", 1)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "P_E" / "overview.tif")
    with pytest.raises(DatasetError, match="overview.tif"):
        find_lgg_slices(root)


# ----------------------------------------------------------------------------------------------------------------------
# Patient-level splits and datalists
# ----------------------------------------------------------------------------------------------------------------------


def _patients(items: list[dict]) -> set[str]:
    return {i["patient"] for i in items}


def split_by_patient(items: list[dict], val_fraction: float = 0.2, seed: int = 0, num_folds: int | None = None,
                     fold: int = 0) -> tuple[list[dict], list[dict]]:
    """The patient-level split of the data layer (custom_nets.data.common.split_groups) on discovered slices."""
    return split_groups(items, lambda i: i["patient"], val_fraction, seed, num_folds, fold, unit="patient",
                        item_unit="slice")


def test_split_by_patient(demo: Path) -> None:
    items = find_lgg_slices(demo)
    train, val = split_by_patient(items, val_fraction=0.34, seed=1)
    assert not _patients(train) & _patients(val)
    assert len(_patients(val)) == 2 and len(train) + len(val) == len(items)
    assert sorted(i["image"] for i in train + val) == sorted(i["image"] for i in items)
    for subset in (train, val):  # whole patients, in the original order
        for patient in _patients(subset):
            assert [i["slice"] for i in subset if i["patient"] == patient] == list(range(1, 13))
    assert split_by_patient(list(reversed(items)), val_fraction=0.34, seed=1)[1][0]["patient"] in _patients(val)
    assert split_by_patient(items, val_fraction=0.34, seed=1) == (train, val)  # deterministic

    seen: list[str] = []
    for fold in range(3):
        f_train, f_val = split_by_patient(items, num_folds=3, fold=fold, seed=7)
        assert not _patients(f_train) & _patients(f_val)
        assert len(f_train) + len(f_val) == len(items)
        seen += sorted(_patients(f_val))
    assert sorted(seen) == sorted(_patients(items))  # every patient validated exactly once

    with pytest.raises(DatasetError, match="at least 2 patients"):
        split_by_patient([i for i in items if i["patient"] == "DEMO_LGG_000"])
    with pytest.raises(ValueError):
        split_by_patient(items, num_folds=7)
    with pytest.raises(ValueError):
        split_by_patient(items, num_folds=3, fold=3)
    with pytest.raises(ValueError):
        split_by_patient(items, val_fraction=1.0)


def _groups(items: list[dict]) -> set[str]:
    return {i["group"] for i in items}


def test_lgg_datasets_split_by_patient(demo: Path, tmp_path: Path) -> None:
    """A kaggle_3m folder and the demo, as the bundles open them (custom_nets.data.dataset.open_dataset)."""
    public = open_dataset(str(demo), demo="lgg", spatial_dims=2)
    train, val = public.split(seed=0)
    assert not _groups(train) & _groups(val) and len(train) + len(val) == len(public.training) == 72
    assert _groups(public.training) == _patients(find_lgg_slices(demo))
    # "demo": generated on first use into demo_dir, then reused
    demo_dir = tmp_path / "demo_data"
    data = open_dataset("demo", demo="lgg", demo_dir=demo_dir)
    assert len(data.training) == 72 and (demo_dir / "dataset.json").is_file()
    train, val = data.split(seed=0)
    assert not _groups(train) & _groups(val) and len(train) + len(val) == 72
    assert open_dataset("DEMO", demo="lgg", demo_dir=demo_dir).split(seed=0)[1] == val
    assert open_dataset("", demo="lgg", demo_dir=demo_dir).split(seed=0)[1] == val
    # a real path that does not exist is an error, never a silent fallback to the demo
    with pytest.raises(DatasetError, match=str(tmp_path / "nowhere")):
        open_dataset(str(tmp_path / "nowhere"), demo="lgg", demo_dir=demo_dir)
    with pytest.raises(ValueError, match="demo_dir"):
        open_dataset("demo", demo="lgg", demo_dir=None).training


# ----------------------------------------------------------------------------------------------------------------------
# Class weights
# ----------------------------------------------------------------------------------------------------------------------


def test_foreground_fraction_and_weight(tmp_path: Path) -> None:
    a = np.zeros((10, 10), np.uint8)
    a[2:4, 3:6] = 255  # 6 tumour pixels
    a[7, 7] = 100  # not tumour in a 0/255 mask (<= 127)
    b = np.zeros((10, 10), np.uint8)  # an empty mask still counts its pixels
    c = np.zeros((5, 4), np.uint8)
    c[0, :] = 1  # a 0/1 mask: 4 tumour pixels
    for name, mask in (("a", a), ("b", b), ("c", c)):
        Image.fromarray(mask).save(tmp_path / f"{name}.tif")
    items = [{"label": str(tmp_path / f"{n}.tif")} for n in "abc"]
    f = foreground_fraction(items)
    assert f == pytest.approx(10 / 220)
    assert positive_class_weight(items) == pytest.approx(210 / 10)
    assert foreground_fraction([{"seg": str(tmp_path / "a.tif")}], label_key="seg") == pytest.approx(0.06)

    with pytest.raises(DatasetError, match="tumour") as info:
        positive_class_weight([{"label": str(tmp_path / "b.tif")}])
    assert str(tmp_path / "b.tif") in str(info.value)
    with pytest.raises(ValueError):
        foreground_fraction([])
    with pytest.raises(DatasetError, match=str(tmp_path / "missing.tif")):
        foreground_fraction([{"label": str(tmp_path / "missing.tif")}])


def test_weight_on_demo(demo: Path) -> None:
    train, _ = split_by_patient(find_lgg_slices(demo))
    f = foreground_fraction(train)
    assert 0.002 < f < 0.05  # tumour pixels are rare, as in the real data (about 1 %)
    assert positive_class_weight(train) == pytest.approx((1 - f) / f)


# ----------------------------------------------------------------------------------------------------------------------
# The MONAI transform chain documented in custom_nets.data.lgg
# ----------------------------------------------------------------------------------------------------------------------


def _chain(keys: list[str]):
    from monai.transforms import AsDiscreted, Compose, EnsureChannelFirstd, LoadImaged, ScaleIntensityRanged

    transforms = [
        LoadImaged(keys=keys, reader="PILReader", image_only=True),
        EnsureChannelFirstd(keys=keys),
        ScaleIntensityRanged(keys="image", a_min=0, a_max=255, b_min=0.0, b_max=1.0, clip=True),
    ]
    if "label" in keys:
        transforms.append(AsDiscreted(keys="label", threshold=0.5))
    return Compose(transforms)


def test_transform_chain_on_demo_slice(demo: Path) -> None:
    items = find_lgg_slices(demo)
    item = next(i for i in items if _read(i["label"]).any())
    out = _chain(["image", "label"])(item)
    image, label = out["image"], out["label"]
    assert tuple(image.shape) == (3, 128, 128) and image.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0 and float(image.max()) > 0.5
    assert tuple(label.shape) == (1, 128, 128)
    assert set(torch.unique(label).tolist()) == {0.0, 1.0}
    # PILReader's axis convention: (C, W, H), the transpose of the PIL/numpy (H, W, C) array, for both keys
    np.testing.assert_allclose(image.numpy(), _read(item["image"]).transpose(2, 1, 0) / 255.0, atol=1e-6)
    np.testing.assert_array_equal(label.numpy()[0], (_read(item["label"]) > 127).T.astype(np.float32))
    # inference: image only
    infer = _chain(["image"])(find_lgg_slices(demo, require_mask=False)[0])
    assert tuple(infer["image"].shape) == (3, 128, 128)


def test_mask_round_trip_keeps_orientation(tmp_path: Path) -> None:
    """A non-square mask loaded by the chain and saved by SaveImaged(PILWriter) comes back exactly as it was."""
    from monai.transforms import SaveImaged

    mask = np.zeros((12, 20), np.uint8)  # H = 12, W = 20
    mask[2:5, 3:15] = 255
    mask[8, 1] = 255
    _write_slice(tmp_path / "P", "P", 1, mask=mask, size=(12, 20))
    item = find_lgg_slices(tmp_path)[0]
    data = _chain(["image", "label"])(item)
    assert tuple(data["image"].shape) == (3, 20, 12) and tuple(data["label"].shape) == (1, 20, 12)
    data["pred"] = data["label"]  # stands for a thresholded prediction
    saver = SaveImaged(
        keys="pred", output_dir=str(tmp_path / "out"), output_postfix="pred", output_ext=".tif", writer="PILWriter",
        output_dtype=np.uint8, scale=255, resample=False, separate_folder=False, print_log=False,
    )  # fmt: skip
    saver(data)
    written = tmp_path / "out" / "P_1_mask_pred.tif"
    assert written.is_file()
    np.testing.assert_array_equal(_read(written), mask)


def test_chain_model_and_loss_end_to_end(demo: Path) -> None:
    """Two demo slices through the chain, a small AttentionResUNet and the weighted BCE: one finite backward pass."""
    from monai.data import Dataset, DataLoader

    from custom_nets.nets.attention_resunet import AttentionResUNet

    items = find_lgg_slices(demo)
    train = [i for i in items if _read(i["label"]).any()][:2]
    batch = next(iter(DataLoader(Dataset(train, _chain(["image", "label"])), batch_size=2)))
    torch.manual_seed(0)
    net = AttentionResUNet(channels=(4, 8, 16))
    loss = segmentation_loss("wce", pos_weight=positive_class_weight(train))(net(batch["image"]), batch["label"])
    loss.backward()
    assert torch.isfinite(loss)
