"""Tests of the UW-Madison GI tract data helpers: RLE, file names, the demo generator (custom_nets.data.uwmadison),
slice discovery and mask caching, case-level splits, 2.5D neighbour stacks, the competition-layout datalist
(custom_nets.convert.uwmadison), the MONAI loading chain, and dataset errors."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from custom_nets.convert.uwmadison import (
    find_uwmadison_slices,
    neighbour_slices,
    parse_slice_filename,
    rle_decode,
    split_by_case,
    uwmadison_datalist,
)
from custom_nets.data.errors import DatasetError
from custom_nets.data.uwmadison import CLASSES, generate_uwmadison_demo, masks_to_rle_rows, rle_encode

DEMO = {"num_cases": 4, "days_per_case": 2, "slices_per_day": 6, "size": ((64, 64), (48, 80)), "seed": 3}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_uwmadison_demo(tmp_path_factory.mktemp("uw") / "demo", **DEMO)


@pytest.fixture()
def demo_copy(demo: Path, tmp_path: Path) -> Path:
    """A fresh copy of the demo (images + CSV, no mask cache) to break."""
    out = tmp_path / "copy"
    shutil.copytree(demo, out, ignore=shutil.ignore_patterns(".uwmadison_masks"))
    return out


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _write_rows(
    path: Path, rows: list[dict[str, str]], columns: tuple[str, ...] = ("id", "class", "segmentation")
) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


# ----------------------------------------------------------------------------------------------------------------------
# Run-length encoding and file names
# ----------------------------------------------------------------------------------------------------------------------


def test_rle_round_trip_random_masks() -> None:
    rng = np.random.default_rng(0)
    for shape, density in [((7, 11), 0.5), ((64, 48), 0.1), ((1, 30), 0.7), ((30, 1), 0.3), ((50, 50), 0.98)]:
        mask = (rng.random(shape) < density).astype(np.uint8)
        rle = rle_encode(mask)
        np.testing.assert_array_equal(rle_decode(rle, shape), mask)
        assert rle_encode(rle_decode(rle, shape)) == rle


def test_rle_edge_cases_and_pixel_order() -> None:
    assert rle_encode(np.zeros((4, 5))) == ""
    assert rle_decode("", (4, 5)).sum() == 0 and rle_decode(None, (4, 5)).dtype == np.uint8
    assert rle_encode(np.ones((4, 5))) == "1 20"
    single = np.zeros((4, 5), dtype=np.uint8)
    single[3, 4] = 1
    assert rle_encode(single) == "20 1"
    single[:] = 0
    single[0, 0] = 1
    assert rle_encode(single) == "1 1"
    # row-major (C order) over (height, width): pixel 3 is row 0, column 2; a run crosses the row boundary
    across = rle_decode("3 5", (2, 4))
    np.testing.assert_array_equal(across, [[0, 0, 1, 1], [1, 1, 1, 0]])
    assert rle_encode(across) == "3 5"
    np.testing.assert_array_equal(rle_decode("1 2 2 2", (1, 4)), [[1, 1, 1, 0]])  # overlapping runs: union


@pytest.mark.parametrize(
    "rle, message",
    [("1 2 3", "odd number"), ("1 x", "non-integer"), ("0 3", "below 1"), ("2 0", "below 1"), ("18 4", "past the end")],
)
def test_rle_decode_rejects_malformed_strings(rle: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        rle_decode(rle, (4, 5))


def test_masks_to_rle_rows() -> None:
    mask = np.zeros((3, 2, 4), dtype=np.uint8)
    mask[0, 1, :2] = 1
    mask[2] = 1
    rows = masks_to_rle_rows("case1_day2_slice_0003", mask)
    assert rows == [
        ("case1_day2_slice_0003", "large_bowel", "5 2"),
        ("case1_day2_slice_0003", "small_bowel", ""),
        ("case1_day2_slice_0003", "stomach", "1 8"),
    ]
    assert masks_to_rle_rows("x", np.swapaxes(mask, 1, 2), spatial_order="wh") == [("x", c, r) for _, c, r in rows]


def test_parse_slice_filename() -> None:
    info = parse_slice_filename("/data/train/case2/case2_day1/scans/slice_0042_360_310_1.63_1.50.png")
    assert info == {"slice": 42, "width": 360, "height": 310, "spacing_x": 1.63, "spacing_y": 1.5}
    for bad in ("slice_0001_266_266_1.50.png", "slice_0001_266_266_1.50_1.50.jpg", "scan_0001_266_266_1.5_1.5.png"):
        with pytest.raises(ValueError, match="slice_<k>"):
            parse_slice_filename(bad)


# ----------------------------------------------------------------------------------------------------------------------
# Demo data, discovery and the loading chain
# ----------------------------------------------------------------------------------------------------------------------


def test_demo_is_deterministic_and_reused(demo: Path, tmp_path: Path) -> None:
    csv_path = demo / "train.csv"
    stamp = csv_path.stat().st_mtime_ns
    assert generate_uwmadison_demo(demo, **DEMO) == demo and csv_path.stat().st_mtime_ns == stamp  # reused
    other = generate_uwmadison_demo(tmp_path / "again", **DEMO)
    assert (other / "train.csv").read_bytes() == csv_path.read_bytes()
    png = sorted((demo / "train").rglob("*.png"))[5]
    assert (other / png.relative_to(demo)).read_bytes() == png.read_bytes()
    with pytest.raises(DatasetError, match="generated with"):
        generate_uwmadison_demo(demo, **{**DEMO, "seed": 4})
    image = Image.open(png)
    assert image.mode.startswith("I;16") and np.array(image).dtype == np.uint16


def test_find_slices_and_cached_masks(demo: Path) -> None:
    items = find_uwmadison_slices(demo)
    n = DEMO["num_cases"] * DEMO["days_per_case"] * DEMO["slices_per_day"]
    assert len(items) == n and len({i["id"] for i in items}) == n
    first = items[0]
    assert first["id"] == "case101_day0_slice_0001" and first["case"] == "case101" and first["day"] == 0
    assert first["slice"] == 1 and first["spacing"] == (1.5, 1.5) and os.path.isabs(first["image"])
    nonsquare = next(i for i in items if i["case"] == "case102")
    assert (nonsquare["height"], nonsquare["width"]) == (48, 80)

    rows = {(r["id"], r["class"]): r["segmentation"] for r in _csv_rows(demo / "train.csv")}
    present = np.zeros((n, 3), dtype=bool)
    overlap = 0
    for k, item in enumerate(items):
        mask = np.array(Image.open(item["label"]))
        assert mask.shape == (item["height"], item["width"], 3) and mask.max() <= 1
        for c, cls in enumerate(CLASSES):
            np.testing.assert_array_equal(mask[..., c], rle_decode(rows[(item["id"], cls)], mask.shape[:2]))
        present[k] = mask.reshape(-1, 3).any(0)
        overlap += int((mask.sum(-1) > 1).sum())
    assert overlap > 0  # the organs overlap (multi-label)
    combos = {tuple(p) for p in present}
    assert (False, False, False) in combos and (True, True, True) in combos and len(combos) >= 4
    stamp = Path(first["label"]).stat().st_mtime_ns
    assert find_uwmadison_slices(demo)[0]["label"] == first["label"]  # decoded once, then reused
    assert Path(first["label"]).stat().st_mtime_ns == stamp
    unlabelled = find_uwmadison_slices(demo, require_labels=False)
    assert len(unlabelled) == n and "label" not in unlabelled[0]


def test_monai_chain_aligns_image_and_mask_and_stacks_neighbours(demo: Path) -> None:
    """The loading chain documented in custom_nets.convert.uwmadison."""
    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, ScaleIntensityRangePercentilesd

    items = neighbour_slices(find_uwmadison_slices(demo), offsets=(-2, 0, 2))
    item = next(i for i in items if i["case"] == "case102" and i["slice"] == 3)
    chain = Compose([
        LoadImaged(keys=["image", "label"], reader="PILReader", image_only=True),
        EnsureChannelFirstd(keys=["image", "label"]),
        ScaleIntensityRangePercentilesd(keys="image", lower=0.0, upper=99.8, b_min=0.0, b_max=1.0, clip=True,
                                        channel_wise=False),
    ])
    data = chain(item)
    image, label = data["image"], data["label"]
    assert image.shape == (3, 80, 48) and label.shape == (3, 80, 48)  # (channels, width, height): PILReader order
    assert float(image.min()) >= 0.0 and float(image.max()) == pytest.approx(1.0)
    raw = np.array(Image.open(item["center_image"])).astype(np.float32).T  # (W, H) like the loaded tensor
    stomach = label[2].numpy() > 0
    assert stomach.any() and raw[stomach].mean() > 1.5 * raw[(label.sum(0).numpy() == 0) & (raw > 100)].mean()


def test_neighbour_slices_clamp_within_case_and_day(demo: Path) -> None:
    items = find_uwmadison_slices(demo)
    stacked = neighbour_slices(items, offsets=(-2, -1, 0, 1, 2))
    by_id = {i["id"]: i for i in items}
    day = [s for s in stacked if s["case"] == "case101" and s["day"] == 7]
    names = [[Path(p).name[:10] for p in s["image"]] for s in day]
    assert names[0] == ["slice_0001", "slice_0001", "slice_0001", "slice_0002", "slice_0003"]
    assert names[-1] == ["slice_0004", "slice_0005", "slice_0006", "slice_0006", "slice_0006"]
    for s in stacked:
        assert all(f"/{s['case']}_day{s['day']}/" in p for p in s["image"])
        assert s["label"] == by_id[s["id"]]["label"] and s["center_image"] == by_id[s["id"]]["image"]
    twice = neighbour_slices(stacked, offsets=(0,))
    assert twice[0]["image"] == [items[0]["image"]]


def test_split_by_case(demo: Path) -> None:
    items = find_uwmadison_slices(demo)
    train, val = split_by_case(items, val_fraction=0.25, seed=1)
    train_cases, val_cases = {i["case"] for i in train}, {i["case"] for i in val}
    assert len(val_cases) == 1 and not train_cases & val_cases and len(train) + len(val) == len(items)
    seen = []
    for fold in range(2):
        _, val = split_by_case(items, num_folds=2, fold=fold, seed=0)
        seen += sorted({i["case"] for i in val})
    assert sorted(seen) == sorted({i["case"] for i in items})
    assert split_by_case(list(reversed(items)), seed=1)[1][0]["case"] == split_by_case(items, seed=1)[1][0]["case"]


def test_datalist_demo_roles_and_no_fallback(demo: Path, tmp_path: Path) -> None:
    demo_dir = tmp_path / "bundle_demo"
    train = uwmadison_datalist("demo", demo_dir, role="train", offsets=(-1, 0, 1), val_fraction=0.25)
    val = uwmadison_datalist("DEMO", demo_dir, role="val", val_fraction=0.25)
    assert len(train[0]["image"]) == 3 and isinstance(val[0]["image"], str)
    assert not {i["case"] for i in train} & {i["case"] for i in val}
    everything = uwmadison_datalist(None, demo_dir, role="all")  # "demo", "" and None: the demo, generated once
    assert {i["id"] for i in train} | {i["id"] for i in val} == {i["id"] for i in everything}
    assert uwmadison_datalist("", demo_dir, role="val", val_fraction=0.25) == val
    folds = [uwmadison_datalist("demo", demo_dir, role="val", num_folds=2, fold=k) for k in range(2)]
    assert sorted(c for f in folds for c in {i["case"] for i in f}) == sorted({i["case"] for i in everything})
    assert all("label" not in i for i in uwmadison_datalist(demo, None, role="infer"))
    with pytest.raises(DatasetError, match="does not exist"):
        uwmadison_datalist(tmp_path / "missing", tmp_path / "unused_demo")
    assert not (tmp_path / "unused_demo").exists()  # a real folder never falls back to the demo
    for no_dir in (None, " "):
        with pytest.raises(ValueError, match="demo_dir"):
            uwmadison_datalist("demo", no_dir)
    with pytest.raises(ValueError, match="role must be one of train, val, all, infer, got 'test'"):
        uwmadison_datalist(demo, None, role="test")


# ----------------------------------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------------------------------


def test_missing_folder_and_csv(tmp_path: Path, demo_copy: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        find_uwmadison_slices(tmp_path / "nothing")
    (demo_copy / "train.csv").unlink()
    with pytest.raises(DatasetError, match=r"train\.csv does not exist"):
        find_uwmadison_slices(demo_copy)
    assert find_uwmadison_slices(demo_copy, require_labels=False)


def test_csv_missing_column(demo_copy: Path) -> None:
    rows = _csv_rows(demo_copy / "train.csv")
    _write_rows(demo_copy / "train.csv", rows, columns=("id", "class"))
    with pytest.raises(DatasetError, match="lacks the column.*segmentation") as info:
        find_uwmadison_slices(demo_copy)
    assert info.value.path == str(demo_copy / "train.csv")


@pytest.mark.parametrize("rle, message", [("5 3 9", "odd number"), ("4000 200", "past the end")])
def test_malformed_rle_names_the_csv_line(demo_copy: Path, rle: str, message: str) -> None:
    rows = _csv_rows(demo_copy / "train.csv")
    rows[7]["segmentation"] = rle
    _write_rows(demo_copy / "train.csv", rows)
    with pytest.raises(DatasetError, match=rf"train\.csv line 9 \({rows[7]['id']}, {rows[7]['class']}\).*{message}"):
        find_uwmadison_slices(demo_copy, cache_dir=demo_copy / "cache")


def test_csv_id_without_image(demo_copy: Path) -> None:
    rows = _csv_rows(demo_copy / "train.csv")
    rows.append({"id": "case999_day1_slice_0001", "class": "stomach", "segmentation": ""})
    _write_rows(demo_copy / "train.csv", rows)
    with pytest.raises(DatasetError, match=r"case999_day1_slice_0001 \(line \d+\)"):
        find_uwmadison_slices(demo_copy)


def test_zero_byte_and_misnamed_png(demo_copy: Path) -> None:
    png = sorted((demo_copy / "train").rglob("*.png"))[3]
    png.write_bytes(b"")
    with pytest.raises(DatasetError, match=rf"{png.name} is empty \(0 bytes\)"):
        find_uwmadison_slices(demo_copy)
    png.unlink()
    (png.parent / "slice_0003.png").write_bytes(b"x")
    with pytest.raises(DatasetError, match=r"slice_0003\.png.*slice_<k>"):
        find_uwmadison_slices(demo_copy)


def test_size_in_name_must_match_the_image(demo_copy: Path) -> None:
    png = sorted((demo_copy / "train" / "case101").rglob("*.png"))[0]
    png.rename(png.with_name(png.name.replace("_64_64_", "_64_65_")))
    with pytest.raises(DatasetError, match="64 x 64 pixels .* its name says 64 x 65"):
        find_uwmadison_slices(demo_copy)


def test_demo_refuses_a_real_dataset_folder(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    (tmp_path / "train.csv").write_text("id,class,segmentation\n")
    with pytest.raises(DatasetError, match="no dataset.json"):
        generate_uwmadison_demo(tmp_path)
