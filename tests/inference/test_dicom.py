"""DICOM in, DICOM SEG out (``scripts/segment.py``, issue 17): series read through MONAI's ``ITKReader``, one case per
series, bad series failing alone, and ``--output-type dicom-seg`` written with highdicom and read back on the source
slices.

Uses the ``mono`` bundle of ``test_segment.py`` (a 1x1 convolution whose label map is 3 exactly where the input is above
its mean), so the expected label map is known voxel by voxel; series are tiny (32 x 28 x 20 slices).
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from test_segment import mono_bundle  # noqa: F401 - the fixture
from test_segment import blob, hidden_leftovers, read_summary, run, save_dicom_series, save_nifti

from custom_nets.data.dataset import demo_task
from custom_nets.inference import discover_cases
from custom_nets.inference.discovery import InputSpec

hd = pytest.importorskip("highdicom")

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _oblique_orientation() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row and column directions of an oblique plane (rotated about z, then x), rounded as DICOM stores them."""
    a, b = np.deg2rad(25.0), np.deg2rad(-35.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(b), -np.sin(b)], [0.0, np.sin(b), np.cos(b)]])
    rotation = np.round(rz @ rx, 6)
    return rotation[:, 0], rotation[:, 1], np.cross(rotation[:, 0], rotation[:, 1])


def _random_names(seed: int):
    rng = np.random.default_rng(seed)
    names = [f"{rng.integers(16**8):08x}" + ("" if k % 3 else ".dcm") for k in range(100)]
    return lambda k: names[k]


def _save_sr(path: Path) -> None:
    """A Basic Text SR (no pixel data) with its own series."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.88.11", generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = generate_uid(), generate_uid(), "SR"
    ds.save_as(path, enforce_file_format=True)


def test_oblique_shuffled_series_segments_like_its_nifti_and_round_trips_as_seg(mono_bundle: Path, tmp_path: Path
                                                                                ) -> None:
    import pydicom

    image, mask = blob()
    row, column, normal = _oblique_orientation()
    origin, spacing, step = np.array([-30.0, 12.0, 40.0]), (0.7, 0.9), 2.5
    inputs = tmp_path / "in"
    series = save_dicom_series(inputs / "ct", image, spacing=spacing, step=step, orientation=(*row, *column),
                               origin=tuple(origin), name=_random_names(0))
    # the same image as NIfTI: the voxels DICOM stores (int16 of 1000 x image) on the geometry its tags describe
    lps = np.eye(4)
    lps[:3, :3] = np.column_stack([row * spacing[0], column * spacing[1], normal * step])
    lps[:3, 3] = origin
    save_nifti(tmp_path / "nifti" / "ct_nifti.nii.gz", np.round(image * 1000).astype(np.int16), _LPS_TO_RAS @ lps)
    save_nifti(inputs / "volume.nii.gz", image)  # no DICOM: no SEG of it

    seg_out, nifti_out = tmp_path / "seg out", tmp_path / "nifti out"
    assert run(mono_bundle, inputs, seg_out, "--output-type", "dicom-seg") == 1  # volume.nii.gz fails alone
    assert run(mono_bundle, inputs, nifti_out) == 0
    assert run(mono_bundle, tmp_path / "nifti", nifti_out) == 0

    # DICOM and NIfTI of one image: the same label map on the same grid (the expected one)
    from_dicom, from_nifti = nib.load(nifti_out / "ct.nii.gz"), nib.load(nifti_out / "ct_nifti.nii.gz")
    expected = np.where(mask, 3, 0)
    np.testing.assert_array_equal(np.asarray(from_dicom.dataobj), expected)
    np.testing.assert_array_equal(np.asarray(from_nifti.dataobj), expected)
    np.testing.assert_allclose(from_dicom.affine, from_nifti.affine, atol=1e-3)

    summary = read_summary(seg_out)
    assert summary["ct"]["status"] == "ok" and summary["volume"]["status"] == "failed"
    assert "volume.nii.gz" in summary["volume"]["error"] and "needs a DICOM series" in summary["volume"]["error"]
    assert {p.name for p in seg_out.iterdir()} == {"ct.dcm", "summary.csv"} and not hidden_leftovers(seg_out)

    # the SEG: valid for highdicom and pydicom, referencing the source series, one segment per label of the task
    seg = hd.seg.segread(seg_out / "ct.dcm")
    raw = pydicom.dcmread(seg_out / "ct.dcm")
    assert raw.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and raw.pixel_array.ndim == 3
    sources = sorted((pydicom.dcmread(p, stop_before_pixels=True) for p in series.iterdir()),
                     key=lambda ds: int(ds.InstanceNumber))
    first = sources[0]
    assert seg.SegmentationType == "BINARY"
    assert (seg.PatientID, seg.StudyInstanceUID, seg.FrameOfReferenceUID) == (
        first.PatientID, first.StudyInstanceUID, first.FrameOfReferenceUID)
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == first.SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} == {
        ds.SOPInstanceUID for ds in sources}
    values = {int(v): name for v, name in demo_task("brats").label_values.items()}
    ordered = sorted(values)
    assert [s.SegmentLabel for s in seg.SegmentSequence] == [values[v] for v in ordered]
    meta = json.loads((mono_bundle / "configs" / "metadata.json").read_text())
    algorithm = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == (meta["name"], meta["version"])

    # mapped back onto the source slices (instance k holds slice k, pixel (row, column) is voxel (column, row, k))
    numbers = seg.get_pixels_by_source_instance(source_sop_instance_uids=[ds.SOPInstanceUID for ds in sources],
                                                combine_segments=True, assert_missing_frames_are_empty=True)
    back = np.asarray([0, *ordered])[numbers]
    np.testing.assert_array_equal(back, np.moveaxis(expected, 2, 0).transpose(0, 2, 1))


def test_bad_dicom_fails_alone_and_two_series_in_a_folder_are_two_cases(mono_bundle: Path, tmp_path: Path) -> None:
    from pydicom.uid import generate_uid

    image, mask = blob()
    inputs = tmp_path / "in"
    save_dicom_series(inputs / "good", image)
    one, two = generate_uid(), generate_uid()
    save_dicom_series(inputs / "pair", image, series=one, name=lambda k: f"x{k:03d}")  # interleaved file names
    save_dicom_series(inputs / "pair", image[::-1].copy(), series=two, origin=(0.0, 0.0, 0.0),
                      name=lambda k: f"x{k:03d}b")
    save_dicom_series(inputs / "missing slice", image, skip=4)
    save_dicom_series(inputs / "mixed", image, odd_spacing=3)
    import pydicom

    split = save_dicom_series(inputs / "split", image)  # one SeriesInstanceUID, two series numbers: GDCM splits it
    for path in sorted(split.iterdir())[:5]:
        ds = pydicom.dcmread(path)
        ds.SeriesNumber = 9
        ds.save_as(path)
    truncated = sorted(save_dicom_series(inputs / "truncated", image).iterdir())[3]
    truncated.write_bytes(truncated.read_bytes()[:-300])
    duplicate = save_dicom_series(inputs / "duplicate", image)
    ds = pydicom.dcmread(sorted(duplicate.iterdir())[0])
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(duplicate / "copy.dcm")
    _save_sr(inputs / "report" / "sr.dcm")
    seg_only = inputs / "seg only"
    save_dicom_series(seg_only, image[:, :, :2].copy())
    for path in seg_only.iterdir():  # image files relabelled as a Segmentation: pixels, but no image
        ds = pydicom.dcmread(path)
        ds.Modality, ds.SOPClassUID = "SEG", "1.2.840.10008.5.1.4.1.1.66.4"
        ds.save_as(path)

    cases = {c.name: c for c in discover_cases(inputs, InputSpec(3, 1))}
    assert {c: len(cases[c].sources[0].files) for c in cases} == {
        "good": 20, "pair_series1": 20, "pair_series2": 20, "missing slice": 19, "mixed": 20, "split": 20,
        "duplicate": 21, "truncated": 20, "report": 1, "seg only": 2}
    assert {f.name for f in cases["pair_series2"].sources[0].files} == {f"x{k:03d}b" for k in range(20)}

    output = tmp_path / "out"
    assert run(mono_bundle, inputs, output, "--output-type", "dicom-seg", "--workers", "2") == 1

    summary = read_summary(output)
    expected = {
        "missing slice": "non-uniform slice spacing",
        "mixed": "different pixel spacings",
        "split": "mixed series",
        "duplicate": "two slices at the same position",
        "truncated": "truncated DICOM file",
        "report": "not an image",
        "seg only": "not an image",
    }
    assert {case for case, row in summary.items() if row["status"] == "ok"} == {"good", "pair_series1",
                                                                                 "pair_series2"}
    for case, problem in expected.items():
        error = summary[case]["error"]
        assert summary[case]["status"] == "failed" and problem in error and case in error and "\n" not in error, error
    assert {p.name for p in output.iterdir()} == {"good.dcm", "pair_series1.dcm", "pair_series2.dcm", "summary.csv"}
    assert not hidden_leftovers(output)
    numbers = hd.seg.segread(output / "pair_series2.dcm").get_pixels_by_source_instance(
        source_sop_instance_uids=[s.SOPInstanceUID for s in _sorted_instances(cases["pair_series2"])],
        combine_segments=True, assert_missing_frames_are_empty=True)
    assert numbers.max() == 3 and (numbers == 3).sum() == mask.sum()  # segment 3: the third label (value 3)


def _sorted_instances(case) -> list:
    import pydicom

    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in case.sources[0].files]
    return sorted(headers, key=lambda ds: int(ds.InstanceNumber))


def test_output_type_nrrd_keeps_a_nifti_input_geometry(mono_bundle: Path, tmp_path: Path) -> None:
    import itk

    image, mask = blob()
    save_nifti(tmp_path / "in" / "oblique.nii.gz", image)
    output = tmp_path / "out"

    assert run(mono_bundle, tmp_path / "in", output, "--output-type", "nrrd") == 0

    src, out = itk.imread(str(tmp_path / "in" / "oblique.nii.gz")), itk.imread(str(output / "oblique.nrrd"))
    np.testing.assert_allclose(np.asarray(out.GetSpacing()), np.asarray(src.GetSpacing()), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out.GetOrigin()), np.asarray(src.GetOrigin()), atol=1e-5)
    np.testing.assert_allclose(itk.array_from_matrix(out.GetDirection()), itk.array_from_matrix(src.GetDirection()),
                               atol=1e-6)
    np.testing.assert_array_equal(itk.array_from_image(out).T, np.where(mask, 3, 0))
