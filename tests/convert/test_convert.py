"""custom_nets.convert: public layouts -> the canonical nnU-Net v2 layout, detection, in-place descriptions."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.transforms import ConvertToMultiChannelBasedOnBratsClasses
from PIL import Image

from custom_nets import convert
from custom_nets.convert.__main__ import main as cli
from custom_nets.convert.core import CACHE_DIR, SPLITS_JSON
from custom_nets.convert import brats as convert_brats
from custom_nets.convert import lgg as convert_lgg
from custom_nets.convert import polyp_skin as convert_polyp
from custom_nets.convert import uwmadison as convert_uw
from custom_nets.data import brats, lgg, polyp_skin, uwmadison
from custom_nets.files import PARTIAL_PREFIX
from custom_nets.data.errors import DatasetError
from custom_nets.transforms.multilabel import multilabel_to_label_map

SMALL = {
    "brats": lambda out: brats.generate_brats_demo(out, num_cases=3, shape=(24, 24, 24)),
    "lgg": lambda out: lgg.generate_lgg_demo(out, num_patients=3, slices_per_patient=2, size=32),
    "kvasir": lambda out: polyp_skin.generate_kvasir_demo(out, num_images=3),
    "isic": lambda out: polyp_skin.generate_isic_demo(out, num_images=3),
    "uwmadison": lambda out: uwmadison.generate_uwmadison_demo(
        out, num_cases=3, days_per_case=2, slices_per_day=4, size=(32, 40)
    ),
}
CHANNELS = {"brats": 4, "lgg": 1, "kvasir": 1, "isic": 1, "uwmadison": 3}  # files per case


@pytest.fixture(scope="module")
def public(tmp_path_factory) -> dict[str, Path]:
    """A tiny public-layout folder of every layout, made by today's demo generators."""
    root = tmp_path_factory.mktemp("public")
    return {name: make(root / name) for name, make in SMALL.items()}


@pytest.fixture(scope="module")
def converted(public, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("converted")
    return {name: convert.convert(name, src, root / name) for name, src in public.items()}


def _read(path: Path) -> np.ndarray:
    if path.name.endswith(".nii.gz"):
        return np.asanyarray(nib.load(path).dataobj)
    with Image.open(path) as image:
        return np.asarray(image)


def _cases(folder: Path) -> list[str]:
    return sorted(p.name.split(".")[0] for p in (folder / "labelsTr").iterdir())


@pytest.mark.parametrize("name", list(SMALL))
def test_each_layout_converts_to_the_canonical_layout(name, public, converted):
    out = converted[name]
    info = json.loads((out / "dataset.json").read_text())
    layout = convert.get_layout(name)
    assert info["channel_names"] == dict(layout.converted["channel_names"])
    assert info["labels"] == dict(layout.converted["labels"])
    assert info["file_ending"] == layout.converted["file_ending"]
    cases = _cases(out)
    assert info["numTraining"] == len(cases) > 0
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == sorted(
        f"{case}_{c:04d}{info['file_ending']}" for case in cases for c in range(CHANNELS[name])
    )
    declared = set()
    for value in info["labels"].values():
        declared |= set(value) if isinstance(value, list) else {value}
    for case in cases:
        label = _read(out / "labelsTr" / f"{case}{info['file_ending']}")
        image = _read(out / "imagesTr" / f"{case}_0000{info['file_ending']}")
        assert label.shape == image.shape[: label.ndim]
        assert set(np.unique(label).tolist()) <= declared
    assert not [p for p in out.parent.iterdir() if p.name.startswith(PARTIAL_PREFIX)]


@pytest.mark.parametrize("name", list(SMALL))
def test_detect_and_describe_list_the_converted_cases(name, public, converted):
    assert convert.detect(public[name]) == name  # the demo's marker dataset.json is not a dataset.json
    assert convert.detect(converted[name]) is None  # a real dataset.json: read as it is
    described = convert.describe(public[name])
    assert sorted(e["case"] for e in described["training"]) == _cases(converted[name])
    assert described["numTraining"] == len(described["training"])
    for entry in described["training"]:
        for path in [entry["label"], *([entry["image"]] if isinstance(entry["image"], str) else entry["image"])]:
            assert os.path.isabs(path) and os.path.isfile(path)
    if name in ("lgg", "uwmadison"):
        assert all("group" in e for e in described["training"])


def test_brats_converted_labels_give_todays_tc_wt_et(public, converted):
    """isin(converted label, region values) == MONAI's ConvertToMultiChannelBasedOnBratsClasses on the original."""
    info = json.loads((converted["brats"] / "dataset.json").read_text())
    regions = [info["labels"][name] for name in ("tumor core", "whole tumor", "enhancing tumor")]
    described = convert.describe(public["brats"])
    in_place = [described["labels"][name] for name in ("tumor core", "whole tumor", "enhancing tumor")]
    for entry in convert_brats.find_brats_cases(public["brats"]):
        original = np.asanyarray(nib.load(entry["label"]).dataobj)
        expected = ConvertToMultiChannelBasedOnBratsClasses()(original)
        assert all(expected[i].any() for i in range(3))
        label = nib.load(converted["brats"] / "labelsTr" / f"{entry['case']}.nii.gz")
        assert label.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(label.affine, nib.load(entry["label"]).affine)
        data = np.asanyarray(label.dataobj)
        for i, values in enumerate(regions):
            np.testing.assert_array_equal(np.isin(data, values), expected[i])
            np.testing.assert_array_equal(np.isin(original, in_place[i]), expected[i])
        for c, path in enumerate(entry["image"]):  # channels are the original files (hard-linked or copied)
            copy = converted["brats"] / "imagesTr" / f"{entry['case']}_{c:04d}.nii.gz"
            assert copy.read_bytes() == Path(path).read_bytes() and not copy.is_symlink()


def test_brats_2023_names_and_values_convert_alike(public, converted, tmp_path):
    """A BraTS 2023-style folder (-t2f/-t1n/-t1c/-t2w/-seg, enhancing 3, .nii files) gives the same labels."""
    src = tmp_path / "brats2023"
    codes = {"flair": "t2f", "t1": "t1n", "t1ce": "t1c", "t2": "t2w", "seg": "seg"}
    for entry in convert_brats.find_brats_cases(public["brats"]):
        case = entry["case"].replace("_", "-")
        (src / case).mkdir(parents=True)
        for modality, path in zip((*brats.MODALITIES, "seg"), [*entry["image"], entry["label"]]):
            image = nib.load(path)
            data = np.asanyarray(image.dataobj)
            if modality == "seg":
                data = np.where(data == 4, 3, data).astype(np.uint8)
            path = src / case / f"{case}-{codes[modality]}.nii"
            nib.save(nib.Nifti1Image(data, image.affine, image.header), str(path))
    assert convert.detect(src) == "brats"
    out = convert.convert("brats", src, tmp_path / "out")
    for case in _cases(converted["brats"]):
        new = out / "labelsTr" / f"{case.replace('_', '-')}.nii.gz"
        np.testing.assert_array_equal(_read(new), _read(converted["brats"] / "labelsTr" / f"{case}.nii.gz"))
        flair = out / "imagesTr" / f"{case.replace('_', '-')}_0000.nii.gz"
        np.testing.assert_array_equal(_read(flair), _read(converted["brats"] / "imagesTr" / f"{case}_0000.nii.gz"))


def test_brats_bad_label_values_are_one_line_each_and_nothing_is_written(public, tmp_path):
    src = tmp_path / "bad"
    shutil.copytree(public["brats"], src)
    seg_path = next(src.glob("*/*_seg.nii.gz"))
    seg = nib.load(seg_path)
    data = np.asanyarray(seg.dataobj).copy()
    data[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(data, seg.affine, seg.header), str(seg_path))
    with pytest.raises(DatasetError, match=r"holds the values \[0, 1, 2, 4, 7\]") as err:
        convert.convert("brats", src, tmp_path / "out")
    assert str(seg_path) in str(err.value)
    assert not (tmp_path / "out").exists()


def _groups_never_split(folder: Path, group_of) -> None:
    splits = json.loads((folder / SPLITS_JSON).read_text())
    cases = _cases(folder)
    assert len(splits) == min(5, len({group_of(c) for c in cases}))
    validated = []
    for fold in splits:
        assert sorted(fold["train"] + fold["val"]) == cases
        assert not {group_of(c) for c in fold["train"]} & {group_of(c) for c in fold["val"]}
        validated += fold["val"]
    assert sorted(validated) == cases  # every case validated exactly once


def test_lgg_slices_are_lossless_rgb_with_01_masks_and_patient_folds(public, converted):
    out = converted["lgg"]
    for entry in convert_lgg.find_lgg_slices(public["lgg"]):
        case = f"{entry['patient']}_{entry['slice']}"
        np.testing.assert_array_equal(_read(out / "imagesTr" / f"{case}_0000.png"), _read(Path(entry["image"])))
        np.testing.assert_array_equal(
            _read(out / "labelsTr" / f"{case}.png"), (_read(Path(entry["label"])) > 127).astype(np.uint8)
        )
    _groups_never_split(out, lambda case: case.rsplit("_", 1)[0])
    assert "pre-contrast" in json.loads((out / "dataset.json").read_text())["description"]


@pytest.mark.parametrize("name", ["kvasir", "isic"])
def test_rgb_masks_are_thresholded_and_sizes_kept(name, public, converted):
    find = convert_polyp.find_kvasir_cases if name == "kvasir" else convert_polyp.find_isic_cases
    noisy = False
    for entry in find(public[name]):
        with Image.open(entry["image"]) as image:
            rgb = np.asarray(image.convert("RGB"))
        with Image.open(entry["label"]) as image:
            mask = np.asarray(image.convert("L"))
        noisy |= bool(((mask > 0) & (mask < 255)).any())
        np.testing.assert_array_equal(_read(converted[name] / "imagesTr" / f"{entry['case']}_0000.png"), rgb)
        np.testing.assert_array_equal(_read(converted[name] / "labelsTr" / f"{entry['case']}.png"), mask > 127)
    assert noisy == (name == "kvasir")  # Kvasir's JPEG masks are not 0/255: the threshold mattered


def test_uwmadison_25d_channels_later_wins_labels_and_case_folds(public, converted):
    out = converted["uwmadison"]
    items = convert_uw.find_uwmadison_slices(public["uwmadison"], cache_dir=public["uwmadison"].parent / "uw-cache")
    overlaps = 0
    for entry in convert_uw.neighbour_slices(items, (-2, 0, 2)):
        for c, path in enumerate(entry["image"]):
            assert (out / "imagesTr" / f"{entry['id']}_{c:04d}.png").read_bytes() == Path(path).read_bytes()
        masks = _read(Path(entry["label"])).transpose(2, 0, 1)  # (3, H, W) 0/1
        overlaps += int((masks.sum(0) > 1).sum())
        expected = multilabel_to_label_map(torch.from_numpy(masks.copy())).numpy()
        np.testing.assert_array_equal(_read(out / "labelsTr" / f"{entry['id']}.png"), expected)
    assert overlaps > 0  # the demo's organs overlap: the later-wins rule was exercised
    assert _read(out / "imagesTr" / f"{items[0]['id']}_0000.png").dtype == np.uint16
    _groups_never_split(out, lambda case: case.split("_day")[0])


@pytest.mark.parametrize("name", ["uwmadison", "kvasir"])
def test_masks_that_are_no_label_map_are_described_through_a_cached_conversion(name, public, tmp_path):
    """UW-Madison (run-length masks) and Kvasir-SEG (lossy JPEG masks) are converted once into src/.canonical."""
    src = tmp_path / name
    shutil.copytree(public[name], src, ignore=shutil.ignore_patterns(CACHE_DIR))
    first = convert.describe(src)
    (cache,) = (src / CACHE_DIR).iterdir()
    assert all(e["label"].startswith(str(cache.resolve())) for e in first["training"])
    stamp = (cache / "dataset.json").stat().st_mtime_ns
    assert convert.describe(src) == first and (cache / "dataset.json").stat().st_mtime_ns == stamp  # reused
    assert convert.detect(src) == name  # the hidden cache does not hide the layout
    if name == "kvasir":  # a changed mask gets a new conversion
        mask = next((src / "masks").iterdir())
        os.utime(mask, ns=(stamp + 10**9, stamp + 10**9))
        convert.describe(src)
        assert len(list((src / CACHE_DIR).iterdir())) == 2


@pytest.mark.parametrize("name", list(SMALL))
def test_the_data_layer_reads_public_folders_and_conversions(name, public, converted):
    """custom_nets.data.dataset reads both an unconverted public folder (through describe) and its conversion, and
    its integrity checks (label values declared, geometry) pass on both."""
    from custom_nets.data.dataset import check_dataset, read_dataset

    in_place, canonical = read_dataset(public[name]), read_dataset(converted[name])
    for dataset in (in_place, canonical):
        check_dataset(dataset)
    assert sorted(c["case"] for c in in_place.training) == sorted(c["case"] for c in canonical.training)
    assert in_place.channel_names == canonical.channel_names


def test_uwmadison_describe_without_a_writable_cache_names_the_command(public, tmp_path):
    src = tmp_path / "uw"
    shutil.copytree(public["uwmadison"], src)
    shutil.rmtree(src / CACHE_DIR, ignore_errors=True)
    (src / CACHE_DIR).write_text("not a folder")  # the cache cannot be created (as on a read-only mount)
    with pytest.raises(DatasetError, match="python -m custom_nets.convert uwmadison"):
        convert.describe(src)


def test_describe_and_detect_refuse_unknown_folders(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("x")
    assert convert.detect(tmp_path / "stuff") is None
    assert convert.detect(tmp_path / "missing") is None
    with pytest.raises(DatasetError, match="holds none of the public layouts"):
        convert.describe(tmp_path / "stuff")
    with pytest.raises(ValueError, match="unknown dataset layout"):
        convert.describe(tmp_path / "stuff", layout="nope")


def _failing(layout_name: str, fail_at: int):
    """The layout with a ``write_case`` that raises on its ``fail_at``-th case."""
    layout = convert.get_layout(layout_name)
    calls = []

    def write_case(entry, images_dir, labels_dir):
        calls.append(entry["case"])
        if len(calls) == fail_at:
            raise OSError("injected failure: disk full")
        return layout.write_case(entry, images_dir, labels_dir)

    return dataclasses.replace(layout, write_case=write_case), calls


def test_a_failed_conversion_leaves_no_destination(public, tmp_path, monkeypatch):
    broken, calls = _failing("lgg", fail_at=3)
    monkeypatch.setitem(convert.LAYOUTS, "lgg", broken)
    with pytest.raises(OSError, match="injected"):
        convert.convert("lgg", public["lgg"], tmp_path / "out")
    assert len(calls) == 3
    assert list(tmp_path.iterdir()) == []  # no DST, no temporary folder


def test_a_failed_overwrite_keeps_the_previous_destination(public, converted, tmp_path, monkeypatch):
    dst = tmp_path / "out"
    shutil.copytree(converted["kvasir"], dst)
    before = sorted(p.relative_to(dst) for p in dst.rglob("*"))
    broken, _ = _failing("kvasir", fail_at=2)
    monkeypatch.setitem(convert.LAYOUTS, "kvasir", broken)
    with pytest.raises(OSError, match="injected"):
        convert.convert("kvasir", public["kvasir"], dst, overwrite=True)
    assert sorted(p.relative_to(dst) for p in dst.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_overwrite_replaces_and_existing_destination_is_refused(public, tmp_path):
    dst = tmp_path / "out"
    dst.mkdir()
    (dst / "old.txt").write_text("old")
    with pytest.raises(DatasetError, match="exists and is not empty"):
        convert.convert("isic", public["isic"], dst)
    convert.convert("isic", public["isic"], dst, overwrite=True)
    assert not (dst / "old.txt").exists() and (dst / "dataset.json").is_file()
    with pytest.raises(DatasetError, match="inside the source folder"):
        convert.convert("isic", public["isic"], public["isic"] / "converted")


def test_cli_errors_are_one_line_with_exit_status_2(public, tmp_path, capsys):
    def run(*args: str) -> tuple[int, str]:
        try:
            code = cli(list(args))
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code
        return code, capsys.readouterr().err

    cases = {
        "bad layout": run("nifti", str(public["isic"]), str(tmp_path / "a")),
        "missing source": run("isic", str(tmp_path / "missing"), str(tmp_path / "b")),
        "wrong layout": run("brats", str(public["isic"]), str(tmp_path / "c")),
        "missing argument": run("isic"),
    }
    for what, (code, err) in cases.items():
        assert code == 2, what
        assert len(err.strip().splitlines()) == 1 and "error:" in err, (what, err)
    assert "missing" in cases["missing source"][1]
    assert "holds the ISIC 2017 layout, not BraTS" in cases["wrong layout"][1]
    assert not any((tmp_path / n).exists() for n in "abc")
    code, _ = run("auto", str(public["isic"]), str(tmp_path / "d"))
    assert code == 0 and (tmp_path / "d" / "dataset.json").is_file()


def test_python_dash_m_entry_point(public, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "custom_nets.convert", "kvasir", str(public["kvasir"]), str(tmp_path / "out")],
        capture_output=True, text=True, env=dict(os.environ, PYTHONWARNINGS="ignore"), timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "out")
    assert len(_cases(tmp_path / "out")) == 3
