"""The BraTS demo generator (custom_nets.data.brats), BraTS folder reading (custom_nets.convert.brats) and the
BraTS demo and folders as the bundles open them (custom_nets.data.dataset.open_dataset)."""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO

from custom_nets import convert
from custom_nets.convert.brats import find_brats_cases
from custom_nets.data import brats, demo
from custom_nets.data.brats import MODALITIES, generate_brats_demo
from custom_nets.data.dataset import open_dataset
from custom_nets.data.errors import DatasetError

SMALL = (40, 40, 32)


# ----------------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------------


def load_case(case_dir: Path) -> tuple[dict[str, np.ndarray], np.ndarray, list[np.ndarray]]:
    """(images by modality, seg, affines of all five files) of a demo case folder, with on-disk dtypes."""
    case = case_dir.name
    images, affines = {}, []
    for m in MODALITIES:
        img = nib.load(str(case_dir / f"{case}_{m}.nii.gz"))
        images[m] = np.asanyarray(img.dataobj)
        affines.append(img.affine)
    seg_img = nib.load(str(case_dir / f"{case}_seg.nii.gz"))
    affines.append(seg_img.affine)
    return images, np.asanyarray(seg_img.dataobj), affines


def dilate(mask: np.ndarray) -> np.ndarray:
    """One 6-connected binary dilation step."""
    out = mask.copy()
    for axis in range(3):
        a, b = [slice(None)] * 3, [slice(None)] * 3
        a[axis], b[axis] = slice(1, None), slice(None, -1)
        out[tuple(a)] |= mask[tuple(b)]
        out[tuple(b)] |= mask[tuple(a)]
    return out


def write_nifti(path: Path, shape=(4, 4, 4), dtype=np.float32) -> None:
    nib.save(nib.Nifti1Image(np.ones(shape, dtype=dtype), np.eye(4)), str(path))


def make_case(root: Path, case: str, names=("flair", "t1", "t1ce", "t2", "seg"), sep="_", ext=".nii.gz") -> Path:
    """A BraTS-layout case folder of tiny NIfTI files named ``<case><sep><name><ext>``."""
    folder = root / case
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        write_nifti(folder / f"{case}{sep}{name}{ext}")
    return folder


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory) -> Path:
    """The default demo data set (8 cases, 96 x 96 x 64), generated once for the module."""
    return generate_brats_demo(tmp_path_factory.mktemp("brats") / "demo_data")


@pytest.fixture(scope="module")
def demo_cases(demo_dir) -> list[tuple[dict[str, np.ndarray], np.ndarray, list[np.ndarray]]]:
    return [load_case(p) for p in sorted(demo_dir.glob("DEMO_*"))]


# ----------------------------------------------------------------------------------------------------------------------
# generator
# ----------------------------------------------------------------------------------------------------------------------


def test_generation_is_deterministic(tmp_path):
    a = generate_brats_demo(tmp_path / "a", num_cases=2, shape=SMALL, seed=3)
    b = generate_brats_demo(tmp_path / "b", num_cases=2, shape=SMALL, seed=3)
    c = generate_brats_demo(tmp_path / "c", num_cases=2, shape=SMALL, seed=4)
    for case in ("DEMO_000", "DEMO_001"):
        images_a, seg_a, _ = load_case(a / case)
        images_b, seg_b, _ = load_case(b / case)
        images_c, seg_c, _ = load_case(c / case)
        assert seg_a.tobytes() == seg_b.tobytes()
        assert all(images_a[m].tobytes() == images_b[m].tobytes() for m in MODALITIES)
        assert seg_a.tobytes() != seg_c.tobytes()
        assert all(images_a[m].tobytes() != images_c[m].tobytes() for m in MODALITIES)


def test_case_depends_on_seed_and_index_only(tmp_path):
    """Case 1 is the same whether 2 or 3 cases are generated."""
    two = generate_brats_demo(tmp_path / "two", num_cases=2, shape=SMALL, seed=5)
    three = generate_brats_demo(tmp_path / "three", num_cases=3, shape=SMALL, seed=5)
    assert load_case(two / "DEMO_001")[1].tobytes() == load_case(three / "DEMO_001")[1].tobytes()


def test_layout_shapes_dtypes_affines(demo_dir, demo_cases):
    folders = sorted(p.name for p in demo_dir.iterdir() if p.is_dir())
    assert folders == [f"DEMO_{i:03d}" for i in range(8)]  # no temporary folders left behind
    marker = json.loads((demo_dir / "dataset.json").read_text())
    assert marker["synthetic"] is True and marker["num_cases"] == 8 and marker["shape"] == [96, 96, 64]
    assert "SYNTHETIC" in (demo_dir / "README.txt").read_text()
    for folder in folders:
        assert sorted(p.name for p in (demo_dir / folder).iterdir()) == sorted(
            f"{folder}_{m}.nii.gz" for m in (*MODALITIES, "seg")
        )
    for images, seg, affines in demo_cases:
        assert seg.shape == (96, 96, 64) and seg.dtype == np.uint8
        for m in MODALITIES:
            assert images[m].shape == (96, 96, 64) and images[m].dtype == np.float32
        for affine in affines[1:]:
            np.testing.assert_array_equal(affine, affines[0])
        np.testing.assert_allclose(affines[0][:3, :3], np.diag([-1.0, -1.0, 1.0]))
        assert np.abs(affines[0][:3, 3]).min() > 1.0  # a nonzero origin
        assert nib.aff2axcodes(affines[0]) == ("L", "P", "S")
    header = nib.load(str(demo_dir / "DEMO_000" / "DEMO_000_flair.nii.gz")).header
    assert header.get_qform(coded=True)[1] == 1 and header.get_sform(coded=True)[1] == 1
    assert header.get_zooms() == (1.0, 1.0, 1.0)


def test_nested_tumour_regions(demo_cases):
    for images, seg, _ in demo_cases:
        assert set(np.unique(seg).tolist()) == {0, 1, 2, 4}
        necrosis, enhancing = seg == 1, seg == 4
        core = necrosis | enhancing  # TC
        whole = seg > 0  # WT
        assert not (dilate(necrosis) & ~core).any(), "necrosis touches oedema or background: rim not closed"
        assert not (dilate(core) & ~whole).any(), "the tumour core touches normal brain: oedema not surrounding it"
        assert (enhancing & core).sum() == enhancing.sum() and (core & whole).sum() == core.sum()
        assert whole.sum() > 1000 and necrosis.sum() > 10
        assert (images["t1"][whole] > 0).all(), "tumour outside the brain"


def test_region_contrasts(demo_cases):
    for images, seg, _ in demo_cases:
        brain = images["flair"] > 0
        normal = brain & (seg == 0)
        flair, t1, t1ce, t2 = (images[m].astype(np.float64) for m in MODALITIES)
        assert flair[seg == 2].mean() > 1.4 * flair[normal].mean()  # oedema bright on FLAIR
        assert t2[seg == 2].mean() > t2[normal].mean()  # and on T2
        assert t1ce[seg == 4].mean() > 1.3 * t1ce[seg == 1].mean()  # enhancing rim vs necrosis on T1ce
        assert t1ce[seg == 4].mean() > t1ce[normal].mean()
        assert t1[seg == 1].mean() < t1[normal].mean()  # necrosis dark on T1
        assert 300.0 < np.percentile(t1[brain], 50) < 1000.0 and t1.max() < 1500.0


def test_exactly_zero_outside_the_brain(demo_cases):
    for images, seg, _ in demo_cases:
        brain = images["flair"] != 0
        for m in MODALITIES:
            np.testing.assert_array_equal(images[m] != 0, brain)  # same support in every modality
            assert images[m][brain].min() >= 1.0  # nothing inside the brain is 0 (or negative)
        assert 0.1 < brain.mean() < 0.7
        for axis in range(3):  # a zero border all around
            assert not np.take(brain, 0, axis).any() and not np.take(brain, -1, axis).any()
        assert not (seg[~brain] > 0).any()


def test_reuse_and_overwrite(tmp_path, monkeypatch):
    out = generate_brats_demo(tmp_path / "d", num_cases=2, shape=SMALL)
    before = load_case(out / "DEMO_000")[1].tobytes()

    def fail(*args, **kwargs):
        raise AssertionError("a complete data set must be reused, not regenerated")

    with monkeypatch.context() as m:
        m.setattr(brats, "_write_demo_case", fail)
        assert generate_brats_demo(out, num_cases=2, shape=SMALL) == out
    with pytest.raises(DatasetError, match="overwrite"):  # other parameters, same folder
        generate_brats_demo(out, num_cases=2, shape=SMALL, seed=1)
    generate_brats_demo(out, num_cases=1, shape=SMALL, seed=1, overwrite=True)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["DEMO_000"]
    assert json.loads((out / "dataset.json").read_text())["seed"] == 1
    assert load_case(out / "DEMO_000")[1].tobytes() != before


def test_interrupted_generation_leaves_no_partial_case(tmp_path, monkeypatch):
    calls = {"n": 0}
    save = brats._save_nifti

    def save_then_crash(array, affine, path):
        calls["n"] += 1
        if calls["n"] == 8:  # in the middle of the second case
            raise KeyboardInterrupt
        save(array, affine, path)

    monkeypatch.setattr(brats, "_save_nifti", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        generate_brats_demo(tmp_path / "d", num_cases=3, shape=SMALL)
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["DEMO_000", "README.txt", "dataset.json"]
    monkeypatch.setattr(brats, "_save_nifti", save)
    generate_brats_demo(tmp_path / "d", num_cases=3, shape=SMALL)  # completes what is missing
    assert len(find_brats_cases(tmp_path / "d")) == 3
    reference = generate_brats_demo(tmp_path / "ref", num_cases=3, shape=SMALL)
    for case in ("DEMO_000", "DEMO_001", "DEMO_002"):
        assert load_case(tmp_path / "d" / case)[1].tobytes() == load_case(reference / case)[1].tobytes()


def test_generator_refuses_unknown_folders_and_bad_arguments(tmp_path):
    foreign = tmp_path / "foreign"
    (foreign / "DEMO_000").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no dataset.json"):
        generate_brats_demo(foreign, num_cases=1, shape=SMALL)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(DatasetError, match="not a folder"):
        generate_brats_demo(tmp_path / "afile", num_cases=1, shape=SMALL)
    with pytest.raises(ValueError):
        generate_brats_demo(tmp_path / "x", num_cases=0)
    with pytest.raises(ValueError):
        generate_brats_demo(tmp_path / "x", shape=(16, 16, 16))


def test_make_demo_data_script(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("make_demo_data", REPO / "scripts" / "make_demo_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "cli"
    assert module.main(["--out", str(out), "--num-cases", "2", "--shape", "32", "32", "24", "--seed", "7"]) == 0
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed and "2 synthetic" in printed
    assert load_case(out / "DEMO_001")[1].shape == (32, 32, 24)
    assert module.main(["--out", str(out), "--num-cases", "2", "--shape", "32", "32", "24", "--seed", "8"]) == 2
    assert module.main(["--out", str(out), "--num-cases", "2", "--shape", "32", "32", "24", "--overwrite"]) == 0


# ----------------------------------------------------------------------------------------------------------------------
# reading BraTS folders
# ----------------------------------------------------------------------------------------------------------------------


def test_find_brats_cases_on_demo(demo_dir):
    cases = find_brats_cases(demo_dir)
    assert [c["case"] for c in cases] == [f"DEMO_{i:03d}" for i in range(8)]
    for entry in cases:
        assert set(entry) == {"case", "image", "label"}
        assert [Path(p).name for p in entry["image"]] == [f"{entry['case']}_{m}.nii.gz" for m in MODALITIES]
        assert Path(entry["label"]).name == f"{entry['case']}_seg.nii.gz"
        assert all(os.path.isabs(p) and os.path.isfile(p) for p in [*entry["image"], entry["label"]])


def test_missing_or_empty_dataset_folder(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(DatasetError, match="does not exist") as err:
        find_brats_cases(missing)
    assert str(missing) in str(err.value) and "<case>_{flair,t1,t1ce,t2,seg}.nii.gz" in str(err.value)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DatasetError, match="not a folder") as err:
        find_brats_cases(tmp_path / "file.txt")
    assert str(tmp_path / "file.txt") in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no case folders") as err:
        find_brats_cases(empty)
    assert str(empty) in str(err.value)


def test_missing_modality_names_case_and_file(tmp_path):
    make_case(tmp_path, "BraTS20_001")
    folder = make_case(tmp_path, "BraTS20_002", names=("flair", "t1", "t2", "seg"))
    with pytest.raises(DatasetError) as err:
        find_brats_cases(tmp_path)
    message = str(err.value)
    assert str(folder) in message and "t1ce" in message and "BraTS20_002_t1ce.nii.gz" in message
    assert "BraTS20_002-t1c.nii.gz" in message  # the BraTS 2023 name was looked for too
    assert "BraTS20_001" not in message.replace(str(tmp_path), "")  # the complete case is not blamed


def test_missing_label(tmp_path):
    folder = make_case(tmp_path, "case_a", names=MODALITIES)
    make_case(tmp_path, "case_b")
    with pytest.raises(DatasetError) as err:
        find_brats_cases(tmp_path)
    assert str(folder) in str(err.value) and "seg" in str(err.value)
    cases = find_brats_cases(tmp_path, require_label=False)
    assert "label" not in cases[0] and cases[1]["label"].endswith("case_b_seg.nii.gz")


def test_empty_and_corrupt_files(tmp_path):
    folder = make_case(tmp_path, "c1")
    (folder / "c1_t2.nii.gz").write_bytes(b"")
    with pytest.raises(DatasetError, match="empty") as err:
        find_brats_cases(tmp_path)
    assert str(folder / "c1_t2.nii.gz") in str(err.value)
    (folder / "c1_t2.nii.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="not gzip") as err:
        find_brats_cases(tmp_path)
    assert str(folder / "c1_t2.nii.gz") in str(err.value)


def test_ambiguous_modality(tmp_path):
    folder = make_case(tmp_path, "c1")
    write_nifti(folder / "c1_flair.nii")
    with pytest.raises(DatasetError, match="more than one flair") as err:
        find_brats_cases(tmp_path)
    assert str(folder) in str(err.value)


def test_brats2023_and_uncompressed_names(tmp_path):
    make_case(tmp_path, "BraTS-GLI-00001-000", names=("t2f", "t1n", "t1c", "t2w", "seg"), sep="-")
    make_case(tmp_path, "BraTS2021_00002", ext=".nii")
    cases = find_brats_cases(tmp_path)
    assert [c["case"] for c in cases] == ["BraTS-GLI-00001-000", "BraTS2021_00002"]
    suffixes = [Path(p).name.split("-")[-1] for p in cases[0]["image"]]
    assert suffixes == ["t2f.nii.gz", "t1n.nii.gz", "t1c.nii.gz", "t2w.nii.gz"]  # flair, t1, t1ce, t2
    assert cases[0]["label"].endswith("-seg.nii.gz")
    assert [Path(p).name for p in cases[1]["image"]] == [f"BraTS2021_00002_{m}.nii" for m in MODALITIES]


def test_hidden_and_non_image_folders_are_skipped(tmp_path, caplog):
    make_case(tmp_path, "c1")
    (tmp_path / ".cache").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("x")
    (tmp_path / "name_mapping.csv").write_text("a,b")
    write_nifti(tmp_path / "c1" / "._c1_flair.nii.gz")  # macOS resource-fork file: hidden, ignored
    with caplog.at_level(logging.WARNING, logger="custom_nets.convert.brats"):
        cases = find_brats_cases(tmp_path)
    assert [c["case"] for c in cases] == ["c1"]
    assert "notes" in caplog.text
    only_junk = tmp_path / "junk"
    (only_junk / "notes").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no case folders"):
        find_brats_cases(only_junk)


def test_single_case_folder_given_as_dataset(tmp_path):
    folder = make_case(tmp_path, "c1")
    with pytest.raises(DatasetError, match="directly") as err:
        find_brats_cases(folder)
    assert str(folder) in str(err.value)


# ----------------------------------------------------------------------------------------------------------------------
# the BraTS demo and folders as the bundles read them (custom_nets.data.dataset; splits: custom_nets.data.common)
# ----------------------------------------------------------------------------------------------------------------------


def names(cases: list[dict]) -> list[str]:
    return [c["case"] for c in cases]


def test_demo_dataset_generates_once_reuses_and_splits(tmp_path, monkeypatch):
    demo_dir = tmp_path / "demo_data"
    everything = open_dataset("demo", demo="brats", demo_dir=demo_dir, spatial_dims=3).training
    assert names(everything) == [f"DEMO_{i:03d}" for i in range(8)]
    assert (demo_dir / "dataset.json").is_file()
    generate = demo._GENERATORS["brats"]

    @functools.wraps(generate)  # make_demo reads the parameters' defaults from the generator's signature
    def fail(*args, **kwargs):
        raise AssertionError("the demo data must be reused")

    monkeypatch.setitem(demo._GENERATORS, "brats", fail)
    for spelling in ("DEMO", None, ""):
        again = open_dataset(spelling, demo="brats", demo_dir=demo_dir)
        train, val = again.split(val_fraction=0.25, seed=1)
        assert len(train) == 6 and len(val) == 2 and sorted(names(train) + names(val)) == names(everything)
        assert again.split(val_fraction=0.25, seed=1) == (train, val)


def test_a_real_folder_never_falls_back_to_the_demo(tmp_path):
    demo_dir = tmp_path / "demo_data"
    with pytest.raises(DatasetError) as err:
        open_dataset("/nonexistent/brats", demo="brats", demo_dir=demo_dir)
    assert "/nonexistent/brats" in str(err.value)
    broken = tmp_path / "broken"
    make_case(broken, "c1", names=("flair", "t1", "t2", "seg"))
    with pytest.raises(DatasetError, match="t1ce"):
        open_dataset(str(broken), demo="brats", demo_dir=demo_dir)
    assert not demo_dir.exists()


def test_unlabelled_cases_are_refused_for_training_and_converted_to_images_ts(tmp_path):
    for i in range(4):
        make_case(tmp_path / "data", f"c{i}")
    make_case(tmp_path / "data", "unlabelled", names=MODALITIES)
    with pytest.raises(DatasetError, match="unlabelled"):
        find_brats_cases(tmp_path / "data")
    infer = find_brats_cases(tmp_path / "data", require_label=False)
    assert names(infer) == ["c0", "c1", "c2", "c3", "unlabelled"] and "label" not in infer[-1]
    out = convert.convert("brats", tmp_path / "data", tmp_path / "canonical")
    assert sorted(p.name for p in (out / "labelsTr").iterdir()) == [f"c{i}.nii.gz" for i in range(4)]
    assert sorted(p.name for p in (out / "imagesTs").iterdir()) == [f"unlabelled_{c:04d}.nii.gz" for c in range(4)]
