"""Writing a label map as a DICOM Segmentation (SEG) of the DICOM series it was made from (``--output-type dicom-seg``).

The SEG is written with highdicom (Herrmann et al., "Highdicom: a Python library for standardized encoding of image
annotations and machine learning model outputs in pathology and radiology", J Digit Imaging 2022), the library
TotalSegmentator and MONAI Deploy use: segmentation type ``BINARY``, one segment per label value of the model (named
after the task's labels, ``BundleSegmenter.label_values``; a value without a name is ``label <value>``), algorithm
identification naming the bundle and its version. It references the source series' instances, frame of reference,
patient and study, so PACS and viewers (3D Slicer's DICOM module with QuantitativeReporting, OHIF) show it on the images
it was made from.

Frames: the label map lies on the grid ITK read from the series (``(x, y, z)`` = columns, rows, slices, with the LPS
affine of :class:`~custom_nets.inference.io.Geometry`). Each source instance's pixel ``(row,
column)`` is located in that grid through its own ``ImagePositionPatient``, ``ImageOrientationPatient`` and
``PixelSpacing``, so frame ``i`` is the label map on source instance ``i`` whatever the axis order, slice order or
direction; a source slice off the grid is an error, never a shifted mask.

highdicom is imported here only, when a SEG is written: the packaged bundles that MONAI Label serves never import it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .discovery import Case
from .errors import CaseError
from custom_nets.files import write_file_atomic

from .io import Geometry, dicom_headers

__all__ = ["label_on_sources", "segment_values", "write_dicom_seg"]

_GRID_TOLERANCE = 0.01
"""How far (in voxels) a source pixel may lie from a voxel centre of the label map's grid."""


def label_on_sources(label: np.ndarray, geometry: Geometry, headers: Sequence[Any]) -> np.ndarray:
    """The label map on the pixels of each source instance: ``(instances, rows, columns)``.

    Args:
        label: ``(x, y, z)`` label map on ``geometry`` (the grid ITK read from the series).
        geometry: that grid (:attr:`~custom_nets.inference.io.Geometry.lps_affine`).
        headers: pydicom datasets of single-frame source instances (``ImagePositionPatient``,
            ``ImageOrientationPatient``, ``PixelSpacing``, ``Rows``, ``Columns``).

    Raises:
        CaseError: a source slice that does not lie on the label map's grid.
    """
    to_index = np.linalg.inv(geometry.lps_affine)
    frames = []
    for ds in headers:
        rows, columns = int(ds.Rows), int(ds.Columns)
        orientation = np.asarray([float(v) for v in ds.ImageOrientationPatient])
        row_spacing, column_spacing = (float(v) for v in ds.PixelSpacing)
        start = (to_index @ np.append([float(v) for v in ds.ImagePositionPatient], 1.0))[:3]
        next_column = to_index[:3, :3] @ (orientation[:3] * column_spacing)  # index step to the pixel on the right
        next_row = to_index[:3, :3] @ (orientation[3:] * row_spacing)  # index step to the pixel below
        steps = np.stack([start, next_column, next_row])
        whole = np.rint(steps)
        if np.abs(steps - whole).max() > _GRID_TOLERANCE:
            raise CaseError("the source slice does not lie on the label map's grid", ds.filename)
        r, c = np.mgrid[0:rows, 0:columns]
        index = whole[0][:, None, None] + whole[1][:, None, None] * c + whole[2][:, None, None] * r
        index = index.astype(np.int64)
        if index.min() < 0 or any(index[a].max() >= label.shape[a] for a in range(3)):
            raise CaseError("the source slice lies outside the label map's grid", ds.filename)
        frames.append(label[index[0], index[1], index[2]])
    return np.stack(frames)


def segment_values(label: np.ndarray, label_values: Mapping[int, str]) -> dict[int, str]:
    """``{label value: segment label}`` of the SEG's segments (numbered 1, 2, ... in this order): the model's label
    values, and any other nonzero value of ``label`` (``label <value>``)."""
    values = set(int(v) for v in label_values) | set(int(v) for v in np.unique(label) if v)
    return {v: str(label_values.get(v) or f"label {v}")[:64] for v in sorted(values) if v}


def algorithm_of(segmenter: Any) -> tuple[str, str]:
    """``(name, version)`` of the bundle behind ``segmenter`` (its metadata, else its folder name)."""
    parser = getattr(segmenter, "parser", None)

    def meta(key: str) -> str:
        try:
            return str(parser.get(f"_meta_#{key}") or "") if parser is not None else ""
        except Exception:  # noqa: BLE001 - a bundle without metadata
            return ""

    files = getattr(segmenter, "files", None)
    name = meta("name") or (files.root.name if files is not None else "custom_nets bundle")
    return name[:64], meta("version") or "unknown"


def write_dicom_seg(label: np.ndarray, geometry: Geometry, case: Case, path: str | os.PathLike,
                    segmenter: Any) -> None:
    """Write ``label`` (on the grid of ``case``'s first input, a DICOM series) as a DICOM SEG at ``path``, atomically,
    and read it back with highdicom to check every frame.

    Raises:
        CaseError: the case's input is no series of single-frame DICOM images, its headers lack what a SEG needs
            (frame of reference, patient, study), or the SEG does not read back as written.
    """
    try:
        import highdicom as hd
        from pydicom.sr.codedict import codes
    except ImportError as exc:
        raise CaseError(f"--output-type dicom-seg needs highdicom (pip install highdicom): {exc}") from None
    source = case.sources[0] if case.sources else None
    if source is None or source.kind != "dicom":
        raise CaseError("--output-type dicom-seg needs a DICOM series input")
    headers = dicom_headers(source)
    if len(headers) == 1:
        raise CaseError("--output-type dicom-seg is written for series of single-frame images, not a multi-frame file",
                        source.path)
    iop = np.asarray([float(v) for v in headers[0].ImageOrientationPatient])
    headers.sort(key=lambda ds: float(np.dot([float(v) for v in ds.ImagePositionPatient], np.cross(iop[:3], iop[3:]))))
    label = np.asarray(label)
    frames = label_on_sources(label, geometry, headers)  # frame i on source instance i, in slice order
    segments = segment_values(label, segmenter.label_values)
    if not segments:
        raise CaseError("the model has no label values to write as DICOM SEG segments")
    lookup = np.zeros(max(max(segments), int(label.max(initial=0))) + 1, dtype=np.uint16)
    lookup[list(segments)] = np.arange(1, len(segments) + 1)
    numbered = lookup[frames]  # segment numbers, 0 outside every segment
    name, version = algorithm_of(segmenter)
    algorithm = hd.AlgorithmIdentificationSequence(name=name, version=version,
                                                   family=codes.cid7162.ArtificialIntelligence)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=text,
            segmented_property_category=codes.SCT.Tissue,  # generic: the model's label names carry the meaning
            segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_uid=hd.UID(),
            tracking_id=f"{name} {text}"[:64],
        )
        for number, text in enumerate(segments.values(), start=1)
    ]
    try:
        seg = hd.seg.Segmentation(
            source_images=headers,
            pixel_array=numbered.astype(np.uint8 if len(segments) < 256 else np.uint16),
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=int(headers[0].get("SeriesNumber") or 0) + 1000,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="custom_nets",
            manufacturer_model_name=name,
            software_versions=version,
            device_serial_number="none",
            series_description=f"{name} segmentation"[:64],
        )
    except Exception as exc:  # noqa: BLE001 - highdicom checks the source headers (frame of reference, patient ...)
        raise CaseError(f"cannot make a DICOM SEG of the series ({type(exc).__name__}: {exc})", source.path) from None
    uids = [str(ds.SOPInstanceUID) for ds in headers]

    def verify(tmp: Path) -> None:
        try:
            back = hd.seg.segread(str(tmp))
            pixels = back.get_pixels_by_source_instance(source_sop_instance_uids=uids, combine_segments=True,
                                                        assert_missing_frames_are_empty=True)
        except Exception as exc:  # noqa: BLE001 - whatever highdicom finds wrong in the file
            raise CaseError(f"the written DICOM SEG does not read back ({type(exc).__name__}: {exc})") from None
        if len(back.SegmentSequence) != len(segments) or not np.array_equal(pixels, numbered):
            raise CaseError("the written DICOM SEG does not read back as the label map on the source slices")

    write_file_atomic(path, lambda tmp: seg.save_as(str(tmp)), verify)
