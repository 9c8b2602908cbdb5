"""Batch inference (``scripts/segment.py``, ``custom_nets.inference``): formats, geometry, grouping, errors, resume.

Two throw-away bundles are made from ``bundles/arunet3d`` in temporary folders (with spaces in their paths):

- ``brats``: the real AR-UNet pipeline with tiny widths (``--override network_def#channels=[4,8,16,32]``) and a
  random-weights checkpoint, for the 4-modality BraTS layouts.
- ``mono``: one input channel, and ``network_def`` replaced by a 1x1 convolution whose weights make every region
  channel ``10 * normalised intensity``, and a ``models/task.json`` of one channel with the BraTS regions (as training
  writes it): the label map is 3 (ET) exactly where the input is above its mean. That makes
  the expected output known, so geometry and orientation round trips (and TTA) are checked voxel by voxel.

Volumes are small (about 32x32x24), so the whole file runs in well under a minute on 2 CPU cores.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import BUNDLES, REPO, copy_bundle, save_random_weights

from custom_nets.data.dataset import Task, demo_task, prepare_task
from custom_nets.inference import discover_cases, read_case, sanitize_case_name, write_label_map
from custom_nets.inference.cli import main
from custom_nets.inference.discovery import InputSpec
from custom_nets.inference.errors import CaseError
from custom_nets.files import PARTIAL_PREFIX, write_file_atomic
from custom_nets.inference.io import Reader2DOptions, count_labels

TINY = ["--override", "network_def#channels=[4,8,16,32]", "--override", "roi_size=[32,32,32]", "--no-progress"]
MONO = ["--override", "roi_size=[32,32,32]", "--no-progress"]
SHAPE = (32, 28, 20)


# ----------------------------------------------------------------------------------------------------------------------
# Bundles and data
# ----------------------------------------------------------------------------------------------------------------------


def _copy_bundle(target: Path) -> Path:
    shutil.copytree(BUNDLES / "arunet3d", target, ignore=shutil.ignore_patterns("models", "runs", "eval", "demo_data"))
    (target / "models").mkdir()
    return target


@pytest.fixture(scope="module")
def brats_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from monai.bundle import ConfigParser

    bundle = _copy_bundle(tmp_path_factory.mktemp("bundles") / "brats bündle")
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    parser["network_def#channels"] = [4, 8, 16, 32]
    torch.manual_seed(0)
    torch.save(parser.get_parsed_content("network_def").state_dict(), bundle / "models" / "model.pt")
    return bundle


@pytest.fixture(scope="module")
def mono_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle = _copy_bundle(tmp_path_factory.mktemp("bundles") / "mono bundle")
    config_file = bundle / "configs" / "inference.json"
    config = json.loads(config_file.read_text())
    config["network_def"] = {"_target_": "torch.nn.Conv3d", "in_channels": 1, "out_channels": 3, "kernel_size": 1}
    config_file.write_text(json.dumps(config, indent=4))
    meta_file = bundle / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["network_data_format"]["inputs"]["image"].update(num_channels=1, channel_def={"0": "image"})
    meta.pop("input_channel_suffixes")
    meta_file.write_text(json.dumps(meta, indent=4))
    brats = demo_task("brats")  # the BraTS regions (TC, WT, ET -> 1, 2, 3) on one channel, at the input's own spacing
    prepare_task(Task("mono", ("image",), brats.label_names, brats.regions, brats.output_values, 3), bundle / "models")
    conv = torch.nn.Conv3d(1, 3, 1)
    with torch.no_grad():
        conv.weight.fill_(10.0)
        conv.bias.zero_()
    torch.save(conv.state_dict(), bundle / "models" / "model.pt")
    return bundle


def blob(shape=SHAPE, low=0.1, high=1.0) -> tuple[np.ndarray, np.ndarray]:
    """An image with an off-centre box (so flips and axis swaps show) and the mask where the mono bundle labels 3."""
    image = np.full(shape, low, dtype=np.float32)
    mask = np.zeros(shape, dtype=bool)
    mask[3:12, shape[1] // 2: shape[1] - 3, 2:9] = True
    image[mask] = high
    return image, mask


OBLIQUE_AFFINE = np.array([[0.0, -1.1, 0.0, 5.0], [-0.9, 0.0, 0.0, 6.5], [0.0, 0.0, 1.3, -7.0], [0.0, 0.0, 0.0, 1.0]])


def save_nifti(path: Path, data: np.ndarray, affine: np.ndarray = OBLIQUE_AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return path


def itk_image(data_xyz: np.ndarray, spacing=(0.8, 1.2, 2.0), origin=(10.0, -20.0, 5.0), direction=None):
    import itk

    image = itk.image_from_array(np.ascontiguousarray(data_xyz.T))
    image.SetSpacing(list(spacing))
    image.SetOrigin(list(origin))
    d = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]]) if direction is None else direction
    image.SetDirection(itk.matrix_from_array(d))
    return image


def save_itk(path: Path, data_xyz: np.ndarray, **geometry) -> Path:
    import itk

    path.parent.mkdir(parents=True, exist_ok=True)
    itk.imwrite(itk_image(data_xyz, **geometry), str(path))
    return path


def save_dicom_series(folder: Path, data_xyz: np.ndarray, spacing=(0.7, 0.9), step=2.5,
                      orientation=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0), origin=(-30.0, 12.0, 40.0),
                      skip: int | None = None, odd_size: int | None = None, odd_orientation: int | None = None,
                      odd_spacing: int | None = None, name=None, series: str | None = None) -> Path:
    """Write ``data_xyz`` (columns, rows, slices) as a DICOM series of int16 slices with full geometry tags, patient,
    study and frame of reference; ``name(k)`` names the file of slice ``k`` (default: shuffled ``IMnnnn.dcm``)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series, study, frame = series or generate_uid(), generate_uid(), generate_uid()
    row_dir, col_dir = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    normal = np.cross(row_dir, col_dir)
    for k in range(data_xyz.shape[2]):
        if k == skip:
            continue
        pixels = np.round(data_xyz[:, :, k].T * 1000).astype(np.int16)  # (rows, columns)
        if k == odd_size:
            pixels = pixels[:-2]
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.Modality, ds.PatientName, ds.PatientID = "CT", "Test^Patient", "0001"
        ds.PatientBirthDate, ds.PatientSex, ds.StudyDate, ds.StudyTime = "19700101", "O", "20240101", "120000"
        ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName, ds.SeriesNumber = "1", "A1", "", 3
        ds.FrameOfReferenceUID = frame
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [round(float(v), 5) for v in np.asarray(origin) + k * step * normal]
        iop = list(orientation) if k != odd_orientation else [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.ImageOrientationPatient = iop
        ds.PixelSpacing = [spacing[1], spacing[0]] if k != odd_spacing else [0.5, 0.5]  # between rows, columns
        ds.SliceThickness = step
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = pixels.tobytes()
        # shuffled file names: the reader must order slices by position, not by name
        ds.save_as(folder / (name(k) if name else f"IM{(k * 7919) % 1000:04d}.dcm"), enforce_file_format=True)
    return folder


def read_summary(output: Path) -> dict[str, dict[str, str]]:
    with open(output / "summary.csv", newline="", encoding="utf-8") as f:
        return {row["case"]: row for row in csv.DictReader(f)}


def hidden_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.startswith(PARTIAL_PREFIX)]


def run(bundle: Path, input_dir: Path, output: Path, *extra: str, overrides=MONO, trust: bool = True) -> int:
    """The command line on a test bundle (a copy outside bundles/, so ``--trust``, unless ``trust=False``)."""
    return main(["--bundle", str(bundle), "-i", str(input_dir), "-o", str(output), *overrides, *extra,
                 *(["--trust"] if trust else [])])


# ----------------------------------------------------------------------------------------------------------------------
# Formats and geometry
# ----------------------------------------------------------------------------------------------------------------------


def test_every_3d_format_keeps_the_input_geometry(mono_bundle: Path, tmp_path: Path) -> None:
    import itk

    image, mask = blob()
    inputs = tmp_path / "in puts"
    save_nifti(inputs / "oblique.nii.gz", image)
    save_nifti(inputs / "plain.nii", image, np.diag([1.5, 1.5, 3.0, 1.0]))
    save_itk(inputs / "nested" / "volume.nrrd", image)
    save_itk(inputs / "meta image.mha", image, spacing=(1.0, 0.5, 0.7), origin=(-3.0, 4.0, 1.0),
             direction=np.eye(3))
    save_itk(inputs / "header.mhd", image)
    save_dicom_series(inputs / "dicom série", image)
    output = tmp_path / "out"

    assert run(mono_bundle, inputs, output) == 0

    expected = {"oblique.nii.gz", "plain.nii.gz", "volume.nrrd", "meta image.mha", "header.mha", "dicom série.nii.gz",
                "summary.csv"}
    assert {p.name for p in output.iterdir()} == expected
    for name, source in [("oblique", "oblique.nii.gz"), ("plain", "plain.nii")]:
        out, src = nib.load(output / f"{name}.nii.gz"), nib.load(inputs / source)
        assert out.shape == src.shape and np.allclose(out.affine, src.affine, atol=1e-5)
        assert out.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(np.asarray(out.dataobj), np.where(mask, 3, 0))
    for name, source in [("volume.nrrd", "nested/volume.nrrd"), ("meta image.mha", "meta image.mha"),
                         ("header.mha", "header.mhd")]:
        src, out = itk.imread(str(inputs / source)), itk.imread(str(output / name))
        assert tuple(out.GetLargestPossibleRegion().GetSize()) == tuple(src.GetLargestPossibleRegion().GetSize())
        np.testing.assert_allclose(np.asarray(out.GetSpacing()), np.asarray(src.GetSpacing()), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(out.GetOrigin()), np.asarray(src.GetOrigin()), atol=1e-5)
        np.testing.assert_allclose(itk.array_from_matrix(out.GetDirection()),
                                   itk.array_from_matrix(src.GetDirection()), atol=1e-6)
        np.testing.assert_array_equal(itk.array_from_image(out).T, np.where(mask, 3, 0), err_msg=name)
    # DICOM: the geometry the tags describe (x along the rows' direction, y along the columns', z along the normal)
    out = itk.imread(str(output / "dicom série.nii.gz"))
    np.testing.assert_allclose(np.asarray(out.GetSpacing()), [0.7, 0.9, 2.5], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(out.GetOrigin()), [-30.0, 12.0, 40.0], atol=1e-4)
    np.testing.assert_allclose(itk.array_from_matrix(out.GetDirection()),
                               [[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]], atol=1e-5)
    np.testing.assert_array_equal(itk.array_from_image(out).T, np.where(mask, 3, 0))

    summary = read_summary(output)
    assert set(summary) == {"oblique", "plain", "volume", "meta image", "header", "dicom série"}
    assert all(row["status"] == "ok" and row["error"] == "" for row in summary.values())
    assert list(next(iter(summary.values())))[:4] == ["case", "status", "seconds", "error"]
    voxel_ml = abs(np.linalg.det(OBLIQUE_AFFINE[:3, :3])) / 1000
    assert float(summary["oblique"]["label_3_ml"]) == pytest.approx(mask.sum() * voxel_ml, abs=1e-3)
    assert float(summary["dicom série"]["label_3_ml"]) == pytest.approx(mask.sum() * 0.7 * 0.9 * 2.5 / 1000, abs=1e-3)
    assert float(summary["oblique"]["label_1_ml"]) == 0.0
    assert not hidden_leftovers(output)


def test_tta_preview_and_zip_bundle(mono_bundle: Path, tmp_path: Path) -> None:
    image, mask = blob()
    inputs = tmp_path / "in"
    save_nifti(inputs / "case.nii.gz", image)
    archive = tmp_path / "mono.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in mono_bundle.rglob("*"):
            z.write(path, Path("mono") / path.relative_to(mono_bundle))
    output = tmp_path / "out"

    assert run(archive, inputs, output, "--tta", "--preview", "--verbose", "--workers", "0") == 0

    np.testing.assert_array_equal(np.asarray(nib.load(output / "case.nii.gz").dataobj), np.where(mask, 3, 0))
    from PIL import Image

    with Image.open(output / "preview" / "case.png") as preview:
        assert preview.mode == "RGB" and min(preview.size) >= 64


# ----------------------------------------------------------------------------------------------------------------------
# Multi-modal grouping
# ----------------------------------------------------------------------------------------------------------------------


def _brats_case(folder: Path, case: str, names=("flair", "t1", "t1ce", "t2"), sep="_", seed=0) -> None:
    rng = np.random.default_rng(seed)
    for name in names:
        save_nifti(folder / f"{case}{sep}{name}.nii.gz", rng.random(SHAPE, dtype=np.float32))


def test_brats_grouping_by_folder_and_by_suffix(brats_bundle: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "BraTS in"
    _brats_case(inputs / "Pat 001 é", "Pat 001 é")  # folder layout, spaces and unicode
    save_nifti(inputs / "Pat 001 é" / "Pat 001 é_seg.nii.gz", np.zeros(SHAPE, np.uint8))  # ground truth: ignored
    _brats_case(inputs / "flat", "P2", names=("t2f", "t1n", "t1c", "t2w"), sep="-")  # BraTS 2023 names, flat
    _brats_case(inputs / "flat", "P3", names=("flair", "t1", "t2"))  # T1ce missing
    save_nifti(inputs / "flat" / "lonely.nii.gz", np.ones(SHAPE, np.float32))  # matches no modality
    rng = np.random.default_rng(1)
    save_nifti(inputs / "one file" / "four.nii.gz", rng.random((*SHAPE, 4), dtype=np.float32))  # channels last
    import itk

    vector = itk.image_from_array(np.ascontiguousarray(rng.random((*SHAPE, 4), dtype=np.float32).transpose(2, 1, 0, 3)),
                                  is_vector=True)
    itk.imwrite(vector, str(inputs / "one file" / "vector.nrrd"))  # 4-component pixels
    output = tmp_path / "öut put"

    assert run(brats_bundle, inputs, output, overrides=TINY) == 1

    summary = read_summary(output)
    assert {k: v["status"] for k, v in summary.items()} == {"Pat 001 é": "ok", "P2": "ok", "P3": "failed",
                                                            "lonely": "failed", "four": "ok", "vector": "ok"}
    assert "missing modality T1ce" in summary["P3"]["error"] and "_t1ce or _t1c" in summary["P3"]["error"]
    assert "lonely.nii.gz" in summary["lonely"]["error"] and "channel" in summary["lonely"]["error"]
    assert {p.name for p in output.iterdir()} == {"Pat 001 é.nii.gz", "P2.nii.gz", "four.nii.gz", "vector.nrrd",
                                                  "summary.csv"}
    assert nib.load(output / "four.nii.gz").shape == SHAPE
    assert tuple(itk.imread(str(output / "vector.nrrd")).GetLargestPossibleRegion().GetSize()) == SHAPE
    out = nib.load(output / "Pat 001 é.nii.gz")
    assert out.shape == SHAPE and set(np.unique(np.asarray(out.dataobj))) <= {0, 1, 2, 3}
    assert list(summary["P2"])[4:] == ["label_1_ml", "label_2_ml", "label_3_ml",
                                       "read_s", "pre_s", "network_s", "post_s", "write_s",
                                       "note", "model_sha256", "bundle_version", "settings"]
    assert float(summary["P2"]["network_s"]) > 0 and summary["P3"]["network_s"] == ""


def test_discovery_rules(tmp_path: Path) -> None:
    spec = InputSpec(3, 4, ("FLAIR", "T1", "T1ce", "T2"), (("flair", "t2f"), ("t1", "t1n"), ("t1ce", "t1c"), ("t2", "t2w")))
    root = tmp_path / "in"
    for name in ["A_flair.nii.gz", "A_t1.nii.gz", "A_T1CE.nii.gz", "A_t2.nii.gz",  # letter case does not matter
                 "B_flair.nii.gz", "B_t1.nii.gz", "B_t1ce.nii.gz", "B_t1c.nii.gz", "B_t2.nii.gz",  # T1ce twice
                 "case7/flair.nii", "case7/t1.nii", "case7/t1ce.nii", "case7/t2.nii",  # modality-only names
                 "A_seg.nii.gz", ".hidden_flair.nii.gz", "notes.txt", "out/old.nii.gz", "sub/A_flair.nii.gz"]:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")
    cases = {c.name: c for c in discover_cases(root, spec, exclude=[root / "out"])}
    assert set(cases) == {"A", "B", "case7", "sub_A"}
    assert [s.path.name for s in cases["A"].sources] == ["A_flair.nii.gz", "A_t1.nii.gz", "A_T1CE.nii.gz", "A_t2.nii.gz"]
    assert cases["A"].error is None and cases["case7"].error is None and cases["case7"].output_ext == ".nii.gz"
    assert "2 files for modality T1ce" in cases["B"].error
    assert "missing modality T1 " in cases["sub_A"].error and "missing modality T2 " in cases["sub_A"].error

    single = discover_cases(root, InputSpec(3, 1))
    assert "A_seg" not in {c.name for c in single} and "old" in {c.name for c in single}


def test_sanitize_case_name() -> None:
    assert sanitize_case_name("../../etc/passwd") == "____etc_passwd"
    assert sanitize_case_name(".hidden") == "hidden"
    assert sanitize_case_name("a/b\\c") == "a_b_c"
    assert sanitize_case_name("Pat 001 é") == "Pat 001 é"
    assert sanitize_case_name("..") == "_" and sanitize_case_name("") == "case"
    assert "\n" not in sanitize_case_name("bad\nname") and len(sanitize_case_name("ü" * 400).encode()) <= 150


# ----------------------------------------------------------------------------------------------------------------------
# Bad inputs
# ----------------------------------------------------------------------------------------------------------------------


def test_label_maps_round_trip_on_any_grid(tmp_path: Path) -> None:
    """Label maps through MONAI's writers and back through its readers (``read_label_counts``): values, grid and a
    size-1 axis kept, for a grid whose first two axes share a world axis (a sagittal DICOM series) too."""
    from custom_nets.inference.io import Geometry, read_label_counts

    sagittal = np.array([[0.0, 0.0, 2.5, 30.0], [-0.7, 0.0, 0.0, -12.0], [0.0, -0.9, 0.0, 40.0], [0.0, 0.0, 0.0, 1.0]])
    rng = np.random.default_rng(0)
    for shape in ((6, 5, 4), (6, 5, 1)):
        for affine in (OBLIQUE_AFFINE, sagittal):
            label = rng.integers(0, 4, shape).astype(np.uint8)
            geometry = Geometry(spatial_shape=shape, affine=affine, writer="itk")
            for ext in (".nii.gz", ".nrrd", ".mha"):
                path = tmp_path / f"label{len(shape)}{shape[-1]}{ext}"
                write_label_map(label, geometry, path)
                counts, voxel = read_label_counts(path)
                assert counts == count_labels(label), (shape, ext)
                assert voxel == pytest.approx(abs(np.linalg.det(affine[:3, :3])), rel=1e-5), (shape, ext)
                if ext == ".nii.gz":
                    written = nib.load(path)
                    assert written.shape == shape and np.allclose(written.affine, affine, atol=1e-5)
                    np.testing.assert_array_equal(np.asarray(written.dataobj), label)
    wide = np.zeros((6, 5, 4), np.uint16)
    wide[1, 2, 3] = 1000  # above 255: written as uint16, not clipped
    write_label_map(wide, Geometry((6, 5, 4), OBLIQUE_AFFINE, "nifti"), tmp_path / "wide.nii.gz")
    assert nib.load(tmp_path / "wide.nii.gz").get_data_dtype() == np.uint16
    assert read_label_counts(tmp_path / "wide.nii.gz")[0] == {1000: 1}


def test_scaled_nifti_is_read_as_its_float32_values(tmp_path: Path) -> None:
    """A CT stored as int16 with scl_slope/scl_inter reads as the scaled values, float32, on the file's grid (and a
    single 4D channel as one channel)."""
    stored = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE) % 500
    image = nib.Nifti1Image(stored, OBLIQUE_AFFINE)
    image.header.set_slope_inter(2.0, -1024.0)
    nib.save(image, tmp_path / "ct.nii.gz")
    nib.save(nib.Nifti1Image(stored[..., None].astype(np.float32), OBLIQUE_AFFINE), tmp_path / "one.nii.gz")
    cases = {c.name: c for c in discover_cases(tmp_path, InputSpec(3, 1))}
    loaded = read_case(cases["ct"], InputSpec(3, 1))
    assert loaded.image.dtype == np.float32 and loaded.image.shape == (1, *SHAPE)
    np.testing.assert_array_equal(loaded.image[0], stored.astype(np.float32) * 2 - 1024)
    np.testing.assert_allclose(loaded.geometry.affine, OBLIQUE_AFFINE, atol=1e-6)
    np.testing.assert_array_equal(read_case(cases["one"], InputSpec(3, 1)).image[0], stored)


def test_bad_inputs_fail_alone(mono_bundle: Path, tmp_path: Path) -> None:
    image, mask = blob()
    inputs = tmp_path / "in"
    save_nifti(inputs / "good.nii.gz", image)
    (inputs / "empty.nii.gz").write_bytes(b"")
    data = save_nifti(inputs / "truncated.nii.gz", image).read_bytes()
    (inputs / "truncated.nii.gz").write_bytes(data[: len(data) // 2])
    (inputs / "text.nii.gz").write_text("this is not an image\n")
    (inputs / "textfile.mha").write_text("hello\n")
    save_nifti(inputs / "flat2d.nii.gz", np.ones((32, 28), np.float32))
    save_nifti(inputs / "twochannels.nii.gz", np.ones((*SHAPE, 2), np.float32))
    with_nan = image.copy()
    with_nan[5, 5, 5] = np.nan
    save_nifti(inputs / "nan.nii.gz", with_nan)
    header = save_itk(inputs / "huge.nrrd", image).read_bytes()
    start = header.index(b"sizes:")
    (inputs / "huge.nrrd").write_bytes(header[:start] + b"sizes: 20000 20000 20000" + header[header.index(b"\n", start):])
    save_dicom_series(inputs / "missing slice", image, skip=4)
    save_dicom_series(inputs / "odd size", image, odd_size=3)
    save_dicom_series(inputs / "odd orientation", image, odd_orientation=2)
    output = tmp_path / "out"

    assert run(mono_bundle, inputs, output, "--workers", "2") == 1

    summary = read_summary(output)
    expected = {
        "empty": ("empty.nii.gz", "empty file"),
        "truncated": ("truncated.nii.gz", "truncated"),
        "text": ("text.nii.gz", "not a readable NIfTI"),
        "textfile": ("textfile.mha", "not a readable image"),
        "flat2d": ("flat2d.nii.gz", "wrong number of dimensions"),
        "twochannels": ("twochannels.nii.gz", "wrong channel count"),
        "nan": ("nan.nii.gz", "NaN"),
        "huge": ("huge.nrrd", "implausible size"),
        "missing slice": ("missing slice", "non-uniform slice spacing"),
        "odd size": ("odd size", "different sizes"),
        "odd orientation": ("odd orientation", "different orientations"),
    }
    assert summary["good"]["status"] == "ok"
    for case, (file_name, problem) in expected.items():
        assert summary[case]["status"] == "failed", case
        assert file_name in summary[case]["error"] and problem in summary[case]["error"], summary[case]["error"]
        assert "\n" not in summary[case]["error"]
        assert summary[case]["label_3_ml"] == ""
    assert {p.name for p in output.iterdir()} == {"good.nii.gz", "summary.csv"}


def test_unit_read_errors_name_the_file(tmp_path: Path) -> None:
    image, _ = blob()
    path = save_nifti(tmp_path / "x_flair.nii.gz", image)
    case = discover_cases(tmp_path, InputSpec(3, 1))[0]
    assert read_case(case, InputSpec(3, 1)).image.shape == (1, *SHAPE)
    with pytest.raises(CaseError, match="wrong channel count.*needs 2"):
        read_case(case, InputSpec(3, 2))
    assert str(path) in str(pytest.raises(CaseError, read_case, case, InputSpec(3, 2)).value)


# ----------------------------------------------------------------------------------------------------------------------
# Resume, overwrite, atomic writes, exit codes
# ----------------------------------------------------------------------------------------------------------------------


def test_resume_skips_finished_cases_and_overwrite_redoes_them(mono_bundle: Path, tmp_path: Path) -> None:
    image, mask = blob()
    inputs = tmp_path / "in"
    for name in ("a", "b", "c"):
        save_nifti(inputs / f"{name}.nii.gz", image)
    output = tmp_path / "out"
    assert run(mono_bundle, inputs, output) == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in output.glob("*.nii.gz")}

    (output / "b.nii.gz").unlink()  # as if the first run had been interrupted before b
    assert run(mono_bundle, inputs, output) == 0
    summary = read_summary(output)
    assert {k: v["status"] for k, v in summary.items()} == {"a": "skipped", "b": "ok", "c": "skipped"}
    assert float(summary["a"]["label_3_ml"]) == pytest.approx(float(summary["b"]["label_3_ml"]))  # read back
    assert (output / "a.nii.gz").stat().st_mtime_ns == stamps["a.nii.gz"]

    assert run(mono_bundle, inputs, output, "--overwrite") == 0
    assert {v["status"] for v in read_summary(output).values()} == {"ok"}
    assert (output / "a.nii.gz").stat().st_mtime_ns != stamps["a.nii.gz"]

    (output / "summary.csv").unlink()  # volumes of skipped cases then come from the label maps themselves
    assert run(mono_bundle, inputs, output) == 0
    summary = read_summary(output)
    assert {v["status"] for v in summary.values()} == {"skipped"}
    voxel_ml = abs(np.linalg.det(OBLIQUE_AFFINE[:3, :3])) / 1000
    assert float(summary["c"]["label_3_ml"]) == pytest.approx(mask.sum() * voxel_ml, abs=1e-3)


def test_failed_write_leaves_no_partial_file(mono_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    image, _ = blob()
    inputs = tmp_path / "in"
    save_nifti(inputs / "a.nii.gz", image)
    save_nifti(inputs / "b.nii.gz", image)
    output = tmp_path / "out"
    real_save = nib.save

    def failing_save(img, filename):
        if ".partial-b-" in str(filename):
            Path(filename).write_bytes(b"\x1f\x8b partial")  # half-written file under the temporary name
            raise OSError(28, "No space left on device")
        real_save(img, filename)

    monkeypatch.setattr(nib, "save", failing_save)
    assert run(mono_bundle, inputs, output) == 1
    summary = read_summary(output)
    assert summary["a"]["status"] == "ok" and summary["b"]["status"] == "failed"
    assert "No space left on device" in summary["b"]["error"] and "b.nii.gz" in summary["b"]["error"]
    assert not (output / "b.nii.gz").exists() and not hidden_leftovers(output)

    def interrupted_save(img, filename):
        Path(filename).write_bytes(b"\x1f\x8b partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(nib, "save", interrupted_save)
    assert run(mono_bundle, inputs, output) == 130  # Ctrl-C while writing b
    assert not (output / "b.nii.gz").exists() and not hidden_leftovers(output)
    assert read_summary(output)["a"]["status"] == "skipped"

    def half_then_interrupt(tmp: Path) -> None:
        tmp.write_text("half")
        raise KeyboardInterrupt

    target = tmp_path / "direct.csv"
    with pytest.raises(KeyboardInterrupt):
        write_file_atomic(target, half_then_interrupt)
    assert not target.exists() and not hidden_leftovers(tmp_path)


def test_usage_errors_exit_2(mono_bundle: Path, tmp_path: Path, capsys) -> None:
    inputs = tmp_path / "in"
    save_nifti(inputs / "a.nii.gz", blob()[0])
    assert run(mono_bundle, tmp_path / "missing", tmp_path / "out") == 2
    assert "does not exist" in capsys.readouterr().err
    assert run(tmp_path / "no bundle", inputs, tmp_path / "out") == 2
    assert run(mono_bundle, inputs, inputs) == 2
    assert run(mono_bundle, inputs, tmp_path / "o", "--checkpoint",
               str(tmp_path / "none.pt")) == 2
    assert "train it first" in capsys.readouterr().err
    assert run(mono_bundle, inputs, tmp_path / "o", "--override", "novalue") == 2
    with pytest.raises(SystemExit) as exc:
        main(["--bundle", str(mono_bundle)])
    assert exc.value.code == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(mono_bundle, empty, tmp_path / "o") == 2
    assert not (tmp_path / "o").exists()


def test_checkpoint_mismatch_is_reported_before_any_case(brats_bundle: Path, tmp_path: Path, capsys) -> None:
    inputs = tmp_path / "in"
    _brats_case(inputs / "X", "X")
    output = tmp_path / "out"
    wrong = ["--override", "network_def#channels=[8,16,32,64]", "--override", "roi_size=[32,32,32]", "--no-progress"]
    assert run(brats_bundle, inputs, output, overrides=wrong) == 2
    err = capsys.readouterr().err
    assert "does not match" in err and "shape mismatch" in err and "checkpoint" in err
    assert not output.exists()

    state = torch.load(brats_bundle / "models" / "model.pt", weights_only=True)
    extra = tmp_path / "extra.pt"
    torch.save({"model": {**state, "head.extra.weight": torch.zeros(1)}}, extra)
    assert run(brats_bundle, inputs, output, "--checkpoint", str(extra), overrides=TINY) == 2
    assert "unexpected key(s): head.extra.weight" in capsys.readouterr().err
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"model": state}, wrapped)  # {"model": state_dict} as written by the training handlers
    assert run(brats_bundle, inputs, output, "--checkpoint", str(wrapped), overrides=TINY) == 0


def test_script_runs_as_a_subprocess(mono_bundle: Path, tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    save_nifti(inputs / "a.nii.gz", blob()[0])
    (inputs / "bad.nii.gz").write_bytes(b"")
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    command = [sys.executable, str(REPO / "scripts" / "segment.py"), "--bundle", str(mono_bundle), "-i", str(inputs),
               "-o", str(tmp_path / "out"), *MONO, "--trust"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    assert "FAILED bad" in result.stderr and "empty file" in result.stderr
    assert (tmp_path / "out" / "a.nii.gz").exists()


# ----------------------------------------------------------------------------------------------------------------------
# A model trained on a user's own data (models/task.json)
# ----------------------------------------------------------------------------------------------------------------------

OWN_TINY = {"network_def#channels": [4, 8, 16, 32], "inference_roi_size": [32, 32, 32]}


def own_data_bundle(tmp_path: Path) -> tuple[Path, Path]:
    """A 2-channel, 2-label synthetic dataset unlike the BraTS default (oblique, anisotropic) and an AR-UNet bundle
    whose ``models/`` holds random weights and the task.json training writes for it: ``(bundle, dataset)``."""
    from custom_nets.data import read_dataset
    from custom_nets.data.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "own data", num_channels=2, num_labels=2, num_cases=2, num_test=2,
                                  shape=(28, 24, 12), spacing=(1.0, 1.2, 2.5))
    bundle = copy_bundle("arunet3d", tmp_path)
    prepare_task(read_dataset(data).task, bundle / "models")
    save_random_weights(bundle, OWN_TINY, weight_scale=4.0)
    return bundle, data


def test_own_data_model_segments_nnunet_named_images_like_its_inference_json(tmp_path: Path) -> None:
    """segment.py reads the model's task (no overrides beyond network widths): 2 channels grouped from nnU-Net names,
    the task's label values only, the input's geometry; the same label maps as the bundle's own inference.json
    (issue 17: both paths agree); a dataset folder as ``-i`` segments its imagesTs."""
    from conftest import run_bundle

    bundle, data = own_data_bundle(tmp_path)
    inputs = tmp_path / "nnunet named"
    shutil.copytree(data / "imagesTs", inputs)
    names = sorted({p.name.rsplit("_", 1)[0] for p in inputs.iterdir()})
    assert len(names) == 2 and len(list(inputs.iterdir())) == 4  # <case>_0000 and <case>_0001 each
    overrides = [item for key, value in OWN_TINY.items() for item in ("--override", f"{key}={json.dumps(value)}")]
    output = tmp_path / "segment out"

    assert run(bundle, inputs, output, "--no-progress", overrides=overrides) == 0

    summary = read_summary(output)
    assert set(summary) == set(names) and all(row["status"] == "ok" for row in summary.values())
    assert [c for c in next(iter(summary.values())) if c.startswith("label_")] == ["label_1_ml", "label_2_ml"]
    bundle_out = tmp_path / "bundle out"
    run_bundle(["run", "--config_file", str(bundle / "configs" / "inference.json"), "--dataset_dir", str(inputs),
                "--output_dir", str(bundle_out),
                *[item for key, value in OWN_TINY.items() for item in (f"--{key}", json.dumps(value))]], cwd=tmp_path)
    found_values = set()
    for name in names:
        source = nib.load(inputs / f"{name}_0000.nii.gz")
        ours, theirs = nib.load(output / f"{name}.nii.gz"), nib.load(bundle_out / f"{name}_seg.nii.gz")
        assert ours.shape == source.shape and np.allclose(ours.affine, source.affine, atol=1e-5)
        labels = np.asarray(ours.dataobj)
        assert set(np.unique(labels).tolist()) <= {0, 1, 2}
        np.testing.assert_array_equal(labels, np.asarray(theirs.dataobj), err_msg=name)
        found_values |= set(np.unique(labels).tolist())
    assert found_values > {0}  # the random network labels something, so the comparison means something

    dataset_output = tmp_path / "dataset out"
    assert run(bundle, data, dataset_output, "--no-progress", overrides=overrides) == 0
    assert set(read_summary(dataset_output)) == set(names)
    for name in names:
        np.testing.assert_array_equal(np.asarray(nib.load(dataset_output / f"{name}.nii.gz").dataobj),
                                      np.asarray(nib.load(output / f"{name}.nii.gz").dataobj))


def test_nnunet_naming_groups_only_complete_channel_sets(tmp_path: Path) -> None:
    """``<case>_0000`` ... files are one case when every group in the folder holds exactly the model's channels;
    else each file is a case (the data layer's rule); BraTS suffix grouping still applies beside it."""
    two = InputSpec(3, 2, ("MR0", "MR1"))
    for name in ["grouped/a_0000.nii.gz", "grouped/a_0001.nii.gz", "grouped/b_0000.nii.gz", "grouped/b_0001.nii.gz",
                 "incomplete/c_0000.nii.gz", "incomplete/c_0001.nii.gz", "incomplete/d_0000.nii.gz"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    cases = {c.name: c for c in discover_cases(tmp_path, two)}
    assert set(cases) == {"a", "b", "c_0000", "c_0001", "d_0000"}
    assert [s.path.name for s in cases["a"].sources] == ["a_0000.nii.gz", "a_0001.nii.gz"]
    brats = InputSpec(3, 4, ("FLAIR", "T1", "T1ce", "T2"), (("flair",), ("t1",), ("t1ce",), ("t2",)))
    for c in range(4):
        (tmp_path / "brats" / f"e_{c:04d}.nii.gz").parent.mkdir(exist_ok=True)
        (tmp_path / "brats" / f"e_{c:04d}.nii.gz").write_bytes(b"x")
    cases = {c.name: c for c in discover_cases(tmp_path / "brats", brats)}
    assert set(cases) == {"e"} and len(cases["e"].sources) == 4 and cases["e"].error is None


# ----------------------------------------------------------------------------------------------------------------------
# 2D
# ----------------------------------------------------------------------------------------------------------------------


def test_2d_reading_and_writing(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)  # 20 rows, 30 columns
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb[..., 0]).save(tmp_path / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full((20, 30), 255, np.uint8)])).save(tmp_path / "rgba.png")
    Image.fromarray(rgb).save(tmp_path / "photo.jpg")
    frames = [Image.fromarray(rgb[..., 0]), Image.fromarray(rgb[..., 1])]
    frames[0].save(tmp_path / "stack.tif", save_all=True, append_images=frames[1:])
    data = (tmp_path / "rgb.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])

    spec = InputSpec(2, 3, ("R", "G", "B"))
    cases = {c.name: c for c in discover_cases(tmp_path, spec)}
    assert set(cases) == {"rgb", "gray", "rgba", "photo", "stack", "cut"} and cases["photo"].output_ext == ".png"

    loaded = read_case(cases["rgb"], spec)  # MONAI PILReader default: (C, W, H)
    assert loaded.image.shape == (3, 30, 20) and loaded.geometry.transposed
    np.testing.assert_array_equal(loaded.image[:, 4, 7], rgb[7, 4].astype(np.float32))
    as_rows = read_case(cases["rgb"], spec, Reader2DOptions(transpose=False))
    assert as_rows.image.shape == (3, 20, 30)
    assert read_case(cases["rgba"], spec).image.shape == (3, 30, 20)  # alpha dropped
    with pytest.raises(CaseError, match="wrong channel count"):
        read_case(cases["gray"], spec)
    converted = read_case(cases["gray"], spec, Reader2DOptions(converter=lambda im: im.convert("RGB")))
    assert converted.image.shape == (3, 30, 20)
    assert read_case(cases["gray"], InputSpec(2, 1)).image.shape == (1, 30, 20)
    with pytest.raises(CaseError, match="wrong number of dimensions"):
        read_case(cases["stack"], InputSpec(2, 1))
    with pytest.raises(CaseError, match="cut.png.*truncated"):
        read_case(cases["cut"], spec)

    for options in (Reader2DOptions(), Reader2DOptions(transpose=False)):
        loaded = read_case(cases["rgb"], spec, options)
        label = np.zeros(loaded.geometry.spatial_shape, dtype=np.uint8)
        label[(slice(2, 5), slice(10, 12))[:: 1 if not options.transpose else -1]] = 1
        out = tmp_path / "out" / f"rgb-{options.transpose}.png"
        out.parent.mkdir(exist_ok=True)
        write_label_map(label, loaded.geometry, out)
        with Image.open(out) as written:
            assert written.size == (30, 20)
            picture = np.asarray(written)
        np.testing.assert_array_equal(picture, label.T if options.transpose else label)
        assert count_labels(picture) == {1: 6}


def _bundles(spatial_dims: int) -> list[Path]:
    found = []
    for meta_file in sorted(BUNDLES.glob("*/configs/metadata.json")):
        image = json.loads(meta_file.read_text()).get("network_data_format", {}).get("inputs", {}).get("image", {})
        if len(image.get("spatial_shape", [])) == spatial_dims:
            found.append(meta_file.parent.parent)
    return found


@pytest.mark.parametrize("bundle_dir", _bundles(3), ids=lambda p: p.name)
def test_3d_bundle_end_to_end(bundle_dir: Path, tmp_path: Path) -> None:
    """Every 3D bundle as it is (default widths, random weights) on one small BraTS case."""
    bundle = copy_bundle(bundle_dir.name, tmp_path)
    save_random_weights(bundle)
    inputs = tmp_path / "in"
    _brats_case(inputs / "case one", "case one")
    output = tmp_path / "out"
    assert main(["--bundle", str(bundle), "-i", str(inputs), "-o", str(output), "--trust", "--override", "roi_size=[32,32,32]",
                 "--no-progress"]) == 0
    out = nib.load(output / "case one.nii.gz")
    assert out.shape == SHAPE and np.allclose(out.affine, OBLIQUE_AFFINE, atol=1e-5)
    assert read_summary(output)["case one"]["status"] == "ok"


@pytest.mark.parametrize("bundle_dir", _bundles(2) or [None], ids=lambda p: p.name if p else "none")
def test_2d_bundle_end_to_end(bundle_dir: Path | None, tmp_path: Path) -> None:
    if bundle_dir is None:
        pytest.skip("no 2D bundle in bundles/ yet (metadata with a 2-element spatial_shape)")
    from PIL import Image

    bundle = copy_bundle(bundle_dir.name, tmp_path)
    save_random_weights(bundle)
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    channels = int(meta["network_data_format"]["inputs"]["image"]["num_channels"])
    rng = np.random.default_rng(0)
    inputs = tmp_path / "in"
    inputs.mkdir()
    pixels = rng.integers(0, 255, (48, 64, 3) if channels == 3 else (48, 64), dtype=np.uint8)  # 48 rows, 64 columns
    Image.fromarray(pixels).save(inputs / "an image.png")
    output = tmp_path / "out"
    assert main(["--bundle", str(bundle), "-i", str(inputs), "-o", str(output), "--no-progress", "--trust"]) == 0
    with Image.open(output / "an image.png") as written:
        assert written.size == (64, 48) and written.mode == "L"
        assert set(np.unique(np.asarray(written)).tolist()) <= {0, *map(int, meta.get("label_values", {"1": ""}))}
    summary = read_summary(output)
    assert summary["an image"]["status"] == "ok" and "label_1_pixels" in summary["an image"]


# ----------------------------------------------------------------------------------------------------------------------
# Backends, background writing, timing columns, memory
# ----------------------------------------------------------------------------------------------------------------------


def _onnxruntime_installed() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("backend", ["torchscript", "onnxruntime"])
def test_exported_backends_give_the_eager_label_maps(mono_bundle: Path, tmp_path: Path, backend: str) -> None:
    if backend == "onnxruntime" and not _onnxruntime_installed():
        pytest.skip("onnxruntime is not installed (pip install -r requirements-export.txt)")
    inputs = tmp_path / "in"
    image, mask = blob()
    save_nifti(inputs / "a.nii.gz", image)
    save_nifti(inputs / "b.nii.gz", blob((40, 28, 20))[0])  # another size: other window counts
    assert run(mono_bundle, inputs, tmp_path / "eager", "--sw-batch-size", "3") == 0
    assert run(mono_bundle, inputs, tmp_path / backend, "--sw-batch-size", "3", "--backend", backend) == 0
    for name in ("a", "b"):
        expected = np.asarray(nib.load(tmp_path / "eager" / f"{name}.nii.gz").dataobj)
        np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / backend / f"{name}.nii.gz").dataobj), expected)
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / backend / "a.nii.gz").dataobj) == 3, mask)
    row = read_summary(tmp_path / backend)["a"]
    assert all(float(row[f"{k}_s"]) >= 0 for k in ("read", "pre", "network", "post", "write"))  # filled in


def test_missing_onnxruntime_exits_2(mono_bundle: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    inputs = tmp_path / "in"
    save_nifti(inputs / "a.nii.gz", blob()[0])
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    assert run(mono_bundle, inputs, tmp_path / "out", "--backend", "onnxruntime") == 2
    assert "pip install -r requirements-export.txt" in capsys.readouterr().err
    assert not (tmp_path / "out" / "a.nii.gz").exists()


def test_label_maps_are_written_in_the_background(mono_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    """Case k is finished and written by the writer thread while the network runs on case k+1 in the main thread;
    Ctrl-C there still completes and records the write in flight."""
    import threading

    from custom_nets.inference import model, runner

    inputs = tmp_path / "in"
    for name in ("a", "b", "c"):
        save_nifti(inputs / f"{name}.nii.gz", blob()[0])
    events: list[tuple[str, str]] = []
    real_write, real_infer = runner.write_label_map, model.BundleSegmenter.infer

    def write(label, geometry, path):
        events.append(("write", threading.current_thread().name))
        real_write(label, geometry, path)

    def infer(self, *args, **kwargs):
        events.append(("infer", threading.current_thread().name))
        if interrupt_at is not None and sum(e[0] == "infer" for e in events) == interrupt_at:
            raise KeyboardInterrupt
        return real_infer(self, *args, **kwargs)

    monkeypatch.setattr(runner, "write_label_map", write)
    monkeypatch.setattr(model.BundleSegmenter, "infer", infer)
    interrupt_at = None
    assert run(mono_bundle, inputs, tmp_path / "out", "--no-progress") == 0
    assert [e[0] for e in events].count("write") == 3
    assert {t for kind, t in events if kind == "write"} == {"segment-write_0"}
    assert {t for kind, t in events if kind == "infer"} == {threading.current_thread().name}
    assert {v["status"] for v in read_summary(tmp_path / "out").values()} == {"ok"}

    events.clear()
    assert run(mono_bundle, inputs, tmp_path / "serial", "--workers", "0") == 0  # no background threads
    assert {t for kind, t in events if kind == "write"} == {threading.current_thread().name}

    events.clear()
    interrupt_at = 2  # Ctrl-C while the network runs on b: a (being written in the background) is finished and recorded
    assert run(mono_bundle, inputs, tmp_path / "stopped") == 130
    assert (tmp_path / "stopped" / "a.nii.gz").exists() and not (tmp_path / "stopped" / "b.nii.gz").exists()
    assert set(read_summary(tmp_path / "stopped")) == {"a"}
    assert read_summary(tmp_path / "stopped")["a"]["status"] == "ok" and not hidden_leftovers(tmp_path / "stopped")


@pytest.mark.slow
def test_memory_stays_flat_over_50_cases(mono_bundle: Path, tmp_path: Path, monkeypatch) -> None:
    """Resident memory after each of 50 cases: no growth from case 10 on beyond allocator noise (Linux only)."""
    from custom_nets.inference import runner

    if runner.current_rss_mb() is None:
        pytest.skip("resident memory is read from /proc (Linux)")
    inputs = tmp_path / "in"
    rng = np.random.default_rng(0)
    for i in range(50):
        save_nifti(inputs / f"case{i:02d}.nii.gz", (rng.random((48, 40, 32)) + blob((48, 40, 32))[0]).astype(np.float32))
    rss: list[float] = []
    real_write = runner._write

    def write(*args, **kwargs):
        result = real_write(*args, **kwargs)
        rss.append(runner.current_rss_mb())
        return result

    monkeypatch.setattr(runner, "_write", write)
    assert run(mono_bundle, inputs, tmp_path / "out", "--preview") == 0
    assert len(rss) == 50
    growth = max(rss[10:]) - rss[10]
    assert growth < 40, f"resident memory grew by {growth:.0f} MiB from case 10 to 50: {[round(r) for r in rss]}"


def test_a_transform_error_is_reported_by_its_own_message() -> None:
    """MONAI wraps a transform's error in ``RuntimeError: applying transform <...>``: the case's error line gives the
    transform's own message (e.g. TaskInputd's channel check), naming the file."""
    from custom_nets.inference.discovery import Case, Source
    from custom_nets.inference.runner import _error_text

    case = Case("c", (Source(Path("/in/c.nii.gz"), "nifti"),), ".nii.gz")
    try:
        try:
            raise ValueError("/in/c.nii.gz: 1 channel, but the model takes 2 (MR0, MR1) in one image")
        except ValueError as inner:
            raise RuntimeError("applying transform <custom_nets.transforms.inputs.TaskInputd object>") from inner
    except RuntimeError as error:
        text = _error_text(case, error)
    assert text == "/in/c.nii.gz: ValueError: /in/c.nii.gz: 1 channel, but the model takes 2 (MR0, MR1) in one image"
