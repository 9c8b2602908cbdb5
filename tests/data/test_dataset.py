"""The one dataset layout (nnU-Net v2 / Decathlon ``dataset.json``): reading, integrity checks, splits, tasks.

Every bad input of the integrity check gives one line naming the file and the problem.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from custom_nets.data import DatasetError, Task, check_task, inference_datalist, prepare_task, read_dataset, trained_task
from custom_nets.data.dataset import TASK_FILE, check_dataset, ras_spacing
from custom_nets.data.synthetic import make_synthetic_dataset, oblique_affine


@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("d") / "vol", num_channels=2, num_labels=3, num_cases=4,
                                  shape=(20, 18, 10), spacing=(1.0, 1.5, 3.0))


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def _one_problem(dataset: Path, spatial_dims: int = 3, *needles: str) -> str:
    with pytest.raises(DatasetError) as err:
        check_dataset(read_dataset(dataset), spatial_dims=spatial_dims)
    lines = [line for line in str(err.value).splitlines() if line.strip().startswith("- ")]
    assert len(lines) == 1, str(err.value)
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------------------


def test_v2_volumes_task_and_cases(volumes: Path) -> None:
    dataset = read_dataset(volumes)
    check_dataset(dataset, spatial_dims=3)
    task = dataset.task
    assert task.channel_names == ("MR0", "MR1") and task.in_channels == 2
    assert task.label_names == ("structure 1", "structure 2", "structure 3") and task.out_channels == 3
    assert task.regions == ((1,), (2,), (3,)) and task.output_values == (1, 2, 3) and not task.has_regions
    # voxel axes 0/1 are swapped by the oblique affine: spacing in RAS order is (1.5, 1.0, 3.0)
    assert task.spatial_dims == 3 and task.spacing == pytest.approx((1.5, 1.0, 3.0))
    assert [c["case"] for c in dataset.training] == [f"case_{i:03d}" for i in range(4)]
    first = dataset.training[0]
    assert first["image"] == [str(volumes / "imagesTr" / f"case_000_000{c}.nii.gz") for c in range(2)]
    assert first["label"] == str(volumes / "labelsTr" / "case_000.nii.gz") and first["group"] == "case_000"
    assert [c["case"] for c in dataset.test] == ["case_004"]


def test_ras_spacing_follows_the_axes_not_the_storage_order() -> None:
    assert ras_spacing(oblique_affine((1.0, 2.0, 3.0), angle_deg=0.0)) == pytest.approx((2.0, 1.0, 3.0))
    assert ras_spacing(np.diag([-0.5, 0.7, 2.0, 1.0])) == pytest.approx((0.5, 0.7, 2.0))


def test_decathlon_v1_with_4d_nifti_and_value_to_name_labels(tmp_path: Path) -> None:
    root = tmp_path / "Task01"
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "imagesTs").mkdir()
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    for name in ("a", "b"):
        nib.save(nib.Nifti1Image(np.random.rand(8, 8, 6, 3).astype(np.float32), affine), str(root / "imagesTr" / f"{name}.nii.gz"))
        nib.save(nib.Nifti1Image(np.random.randint(0, 3, (8, 8, 6)).astype(np.uint8), affine), str(root / "labelsTr" / f"{name}.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 6, 3), np.float32), affine), str(root / "imagesTs" / "c.nii.gz"))
    meta = {"name": "Decathlon", "modality": {"0": "FLAIR", "1": "T1w", "2": "T2w"},
            "labels": {"0": "background", "1": "edema", "2": "tumour"},
            "training": [{"image": f"./imagesTr/{n}.nii.gz", "label": f"./labelsTr/{n}.nii.gz"} for n in ("a", "b")],
            "test": ["./imagesTs/c.nii.gz"]}
    (root / "dataset.json").write_text(json.dumps(meta))
    dataset = read_dataset(root)
    check_dataset(dataset, spatial_dims=3)
    assert dataset.task.channel_names == ("FLAIR", "T1w", "T2w") and dataset.task.label_names == ("edema", "tumour")
    assert dataset.training[0]["image"] == str(root / "imagesTr" / "a.nii.gz")  # one 4D file, not a list
    assert dataset.task.spacing == pytest.approx((2.0, 2.0, 2.0))
    assert [c["case"] for c in dataset.test] == ["c"]


def test_rgb_png_is_one_file_of_three_channels(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "rgb", spatial_dims=2, rgb=True, num_labels=1, shape=(32, 24))
    dataset = read_dataset(root)
    check_dataset(dataset, spatial_dims=2)
    assert dataset.task.channel_names == ("R", "G", "B") and dataset.task.spatial_dims == 2
    assert dataset.task.spacing is None and dataset.task.pixdim == [0.0, 0.0]
    assert dataset.training[0]["image"] == str(root / "imagesTr" / "case_000_0000.png")


def test_v2_region_labels_and_derived_output_values(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "r", num_labels=3, num_cases=2, shape=(12, 12, 8))
    meta = json.loads((root / "dataset.json").read_text())
    meta["labels"] = {"background": 0, "whole": [1, 2, 3], "core": [2, 3], "enhancing": 3}
    (root / "dataset.json").write_text(json.dumps(meta))
    task = read_dataset(root).task
    assert task.has_regions and task.output_values == (1, 2, 3)  # each region's own value
    meta["labels"] = {"background": 0, "a": [1, 2], "b": [1, 3]}  # no own value: needs regions_class_order
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="regions_class_order"):
        read_dataset(root)


# ----------------------------------------------------------------------------------------------------------------------
# Integrity: one line per problem, naming the file
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("field,needle", [("labels", "'labels' is missing"), ("channel_names", "'channel_names'"),
                                          ("file_ending", "'file_ending' is missing")])
def test_missing_dataset_json_field(volumes: Path, tmp_path: Path, field: str, needle: str) -> None:
    root = _copy(volumes, tmp_path)
    meta = json.loads((root / "dataset.json").read_text())
    del meta[field]
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError) as err:
        read_dataset(root)
    assert needle in str(err.value) and "dataset.json" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("missing,needles", [
    ("imagesTr/case_001_0001.nii.gz", ("case case_001", "case_001_0001.nii.gz")),  # a case without a channel
    ("labelsTr/case_002.nii.gz", ("case case_002 has no label file", "labelsTr/case_002.nii.gz")),  # nor a label
])
def test_case_without_a_file(volumes: Path, tmp_path: Path, missing: str, needles: tuple[str, ...]) -> None:
    root = _copy(volumes, tmp_path)
    (root / missing).unlink()
    with pytest.raises(DatasetError) as err:
        read_dataset(root)
    assert all(needle in str(err.value) for needle in needles), str(err.value)


def test_undeclared_label_value(volumes: Path, tmp_path: Path) -> None:
    root = _copy(volumes, tmp_path)
    path = root / "labelsTr" / "case_003.nii.gz"
    img = nib.load(path)
    data = np.asarray(img.dataobj).copy()
    data[0, 0, 0] = 7
    nib.save(nib.Nifti1Image(data, img.affine), str(path))
    _one_problem(root, 3, "case_003.nii.gz", "value(s) [7] not declared")


def test_image_and_label_shape_mismatch(volumes: Path, tmp_path: Path) -> None:
    root = _copy(volumes, tmp_path)
    path = root / "labelsTr" / "case_000.nii.gz"
    img = nib.load(path)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:-2], img.affine), str(path))
    _one_problem(root, 3, "case_000_0000.nii.gz", "case_000.nii.gz", "differ in shape or geometry")


def test_image_and_label_geometry_mismatch(volumes: Path, tmp_path: Path) -> None:
    root = _copy(volumes, tmp_path)
    path = root / "imagesTr" / "case_001_0001.nii.gz"
    img = nib.load(path)
    shifted = img.affine.copy()
    shifted[:3, 3] += 40.0  # a misregistered channel: 40 mm off
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), shifted), str(path))
    _one_problem(root, 3, "case_001_0001.nii.gz", "differ in shape or geometry")


def test_2d_data_given_to_a_3d_bundle(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "flat", spatial_dims=2, num_channels=1, shape=(16, 16))
    check_dataset(read_dataset(root), spatial_dims=2)
    _one_problem(root, 3, "holds 2D images", "use a 2D bundle")


def test_unreadable_file(volumes: Path, tmp_path: Path) -> None:
    root = _copy(volumes, tmp_path)
    (root / "imagesTr" / "case_002_0000.nii.gz").write_bytes(b"not a nifti")
    _one_problem(root, 3, "case_002_0000.nii.gz", "cannot be read")


def test_channel_count_differs_from_channel_names(volumes: Path, tmp_path: Path) -> None:
    root = _copy(volumes, tmp_path)
    path = root / "imagesTr" / "case_000_0000.nii.gz"
    img = nib.load(path)
    nib.save(nib.Nifti1Image(np.stack([np.asarray(img.dataobj)] * 2, -1), img.affine), str(path))
    _one_problem(root, 3, "case_000_0000.nii.gz", "has 3 channel(s); dataset.json declares 2")


def test_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no dataset.json and is not a known public layout"):
        read_dataset(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        read_dataset(tmp_path / "missing")


# ----------------------------------------------------------------------------------------------------------------------
# Splits, tasks, inference lists
# ----------------------------------------------------------------------------------------------------------------------


def test_splits_final_grouped_split_and_all(volumes: Path, tmp_path: Path) -> None:
    root = _copy(volumes, tmp_path)
    dataset = read_dataset(root)
    train, val = dataset.split(val_fraction=0.25, seed=0)
    assert len(val) == 1 and len(train) == 3 and not {c["case"] for c in train} & {c["case"] for c in val}
    assert dataset.split(fold="all") == (dataset.training, dataset.training)
    (root / "splits_final.json").write_text(json.dumps([{"train": ["case_000", "case_001"], "val": ["case_002", "case_003"]}]))
    train, val = read_dataset(root).split(fold=0)
    assert [c["case"] for c in val] == ["case_002", "case_003"]
    with pytest.raises(DatasetError, match="fold 3 does not exist"):
        read_dataset(root).split(fold=3)


def test_groups_from_a_training_list_keep_a_patient_on_one_side(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "g", spatial_dims=2, num_channels=1, num_cases=6, shape=(16, 16), num_test=0)
    meta = json.loads((root / "dataset.json").read_text())
    meta["training"] = [{"image": f"imagesTr/case_{i:03d}_0000.png", "label": f"labelsTr/case_{i:03d}.png",
                         "group": f"patient{i // 2}", "slice": i % 2} for i in range(6)]
    (root / "dataset.json").write_text(json.dumps(meta))
    dataset = read_dataset(root)
    assert dataset.training[3]["group"] == "patient1" and dataset.training[3]["slice"] == 1  # extra keys pass through
    for fold in range(3):
        train, val = dataset.split(num_folds=3, fold=fold)
        assert {c["group"] for c in train}.isdisjoint({c["group"] for c in val}) and len(val) == 2


def test_task_json_round_trip_and_refused_resume(volumes: Path, tmp_path: Path) -> None:
    task = read_dataset(volumes).task
    ckpt = tmp_path / "models"
    prepare_task(task, ckpt, resume=True)
    assert trained_task(ckpt, "brats") == task
    (ckpt / "checkpoint_last.pt").write_bytes(b"x")
    other = Task("other", ("CT",), task.label_names, task.regions, task.output_values, 3, None)
    with pytest.raises(DatasetError, match=r"input channels \['CT'\] instead of \['MR0', 'MR1'\].*--resume false"):
        prepare_task(other, ckpt, resume=True)
    prepare_task(other, ckpt, resume="false")  # a fresh run may replace it
    assert json.loads((ckpt / TASK_FILE).read_text())["channel_names"] == ["CT"]


def test_trained_task_falls_back_to_the_demo_task(tmp_path: Path) -> None:
    task = trained_task(tmp_path, "brats")
    assert task.in_channels == 4 and task.label_names == ("tumor core", "whole tumor", "enhancing tumor")
    assert task.has_regions and task.output_values == (1, 2, 3) and task.label_values["3"] == "enhancing tumor"


def test_check_task_refuses_other_labels(volumes: Path) -> None:
    dataset = read_dataset(volumes)
    other = Task("x", dataset.task.channel_names, ("a",), ((1,),), (1,), 3, None)
    with pytest.raises(DatasetError, match="the model was trained on 'x'.*labels"):
        check_task(other, dataset)


def test_inference_datalist_plain_folders(volumes: Path, tmp_path: Path) -> None:
    task = read_dataset(volumes).task
    # a dataset: its imagesTs
    assert [c["case"] for c in inference_datalist(volumes, task, "brats")] == ["case_004"]
    # a plain folder in nnU-Net naming: channel files grouped
    plain = tmp_path / "plain"
    plain.mkdir()
    for f in sorted((volumes / "imagesTr").glob("case_00[01]_*")):
        shutil.copy(f, plain / f.name)
    cases = inference_datalist(plain, task, "brats")
    assert [c["case"] for c in cases] == ["case_000", "case_001"] and len(cases[0]["image"]) == 2
    # one file per case, with names that merely end in digits, for a one-channel model
    single = Task("one", ("MR",), task.label_names, task.regions, task.output_values, 3, None)
    ones = tmp_path / "ones"
    ones.mkdir()
    for i in (1, 2):
        shutil.copy(volumes / "imagesTr" / "case_000_0000.nii.gz", ones / f"scan_000{i}.nii.gz")
    assert [c["case"] for c in inference_datalist(ones, single, "brats")] == ["scan_0001", "scan_0002"]
    # the wrong number of channels: one line naming the file and what the model expects
    with pytest.raises(DatasetError, match=r"scan_0001.nii.gz has 1 channel\(s\); the model expects 2 \(MR0, MR1\)"):
        inference_datalist(ones, task, "brats")


def test_png_labels_read_as_integers(tmp_path: Path) -> None:
    root = make_synthetic_dataset(tmp_path / "p", spatial_dims=2, num_channels=2, num_labels=2, shape=(16, 20))
    label = np.asarray(Image.open(root / "labelsTr" / "case_000.png"))
    assert set(np.unique(label).tolist()) <= {0, 1, 2}
    check_dataset(read_dataset(root), spatial_dims=2)


def test_3d_volumes_given_to_a_2d_bundle(volumes: Path) -> None:
    _one_problem(volumes, 2, "holds 3D volumes", "inference_volume.json")


def test_2d_nifti_is_refused_with_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "flat.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((8, 8), np.float32), np.eye(4)), str(path))
    from custom_nets.data.dataset import read_header

    with pytest.raises(DatasetError, match="flat.nii.gz is a 2D NIfTI image; save 2D images as PNG"):
        read_header(str(path))


def test_plain_folders_include_sub_folders_but_not_masks_or_duplicates(volumes: Path, tmp_path: Path) -> None:
    task = Task("one", ("MR",), ("a",), ((1,),), (1,), 3, None)
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    source = volumes / "imagesTr" / "case_000_0000.nii.gz"
    for name in ("sub/deep.nii.gz", "top.nii.gz", "top_seg.nii.gz", ".hidden/x.nii.gz"):
        shutil.copy(source, folder / name)
    assert [c["case"] for c in inference_datalist(folder, task, "brats")] == ["deep", "top"]
    shutil.copy(source, folder / "deep.nii.gz")
    with pytest.raises(DatasetError, match="are both case 'deep'"):
        inference_datalist(folder, task, "brats")


@pytest.mark.parametrize("vector", [False, True], ids=["scalar", "3 components"])
def test_nrrd_header_has_the_geometry_loadimaged_gives(tmp_path: Path, vector: bool) -> None:
    """The integrity check and the task's spacing read an NRRD's grid as training's LoadImaged does (RAS affine,
    ``(x, y, z)`` shape, vector components as channels)."""
    import itk
    from monai.transforms import LoadImage

    from custom_nets.data.dataset import read_header

    rng = np.random.default_rng(0)
    array = rng.random((7, 6, 5, 3) if vector else (7, 6, 5)).astype(np.float32)  # ITK's numpy order: z, y, x
    image = itk.image_from_array(array, is_vector=vector)
    image.SetSpacing([0.8, 0.9, 2.5])
    image.SetOrigin([10.0, -5.0, 3.0])
    image.SetDirection(itk.matrix_from_array(np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])))
    path = tmp_path / "case.nrrd"
    itk.imwrite(image, str(path))
    header = read_header(str(path))
    loaded = LoadImage(image_only=True, ensure_channel_first=True)(str(path))
    assert header.shape == tuple(loaded.shape[1:]) == (5, 6, 7)
    assert header.channels == loaded.shape[0] == (3 if vector else 1)
    np.testing.assert_allclose(header.affine, loaded.affine.numpy(), atol=1e-6)
    assert ras_spacing(header.affine) == (2.5, 0.8, 0.9)
