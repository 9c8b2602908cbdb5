"""Reading input images and writing label maps for batch inference, with MONAI's readers and writers.

Reading calls the reader a bundle's ``LoadImaged`` uses for the file type and gives a channel-first float32 array in
the layout that reader gives (so the bundle's other preprocessing transforms see what they saw in training) plus the
input's geometry:

- NIfTI: MONAI's ``NibabelReader`` (nibabel, with MONAI's header correction): nibabel's array order and affine. 4D
  files hold the channels in the fourth dimension (a fifth dimension counts when the fourth has size 1).
- NRRD, MetaImage (``.mha``/``.mhd``): MONAI's ``ITKReader``: ``(x, y, z)`` order and the LPS geometry converted to a
  RAS affine. Vector pixels, or a fourth dimension, are channels.
- DICOM series: MONAI's ``ITKReader`` (GDCM sorts the slices by position), after header checks with pydicom
  (:func:`dicom_headers`); ``(x, y, z)`` is (columns, rows, slices).
- PNG, JPEG, TIFF, BMP: MONAI's ``PILReader``: ``(C, W, H)`` with its default ``reverse_indexing=True``, or
  ``(C, H, W)`` when the bundle's reader says ``reverse_indexing=False``; the reader's ``converter`` is applied.

Hand-written are only the checks MONAI's readers do not make, each a :class:`~custom_nets.inference.errors.CaseError`
naming the file: empty or truncated files, files that are not images, headers promising absurd sizes (checked on the
header before any pixel is allocated), wrong numbers of dimensions or channels, unsupported voxel types, NaN or
infinite values, DICOM series with missing or inconsistent slices, or that are no image (SR, SEG).

Label maps are written with MONAI's writers on the input's grid (``.nii.gz``: ``NibabelWriter`` with the input's
affine, as the bundles' ``SaveImaged`` writes; ``.nrrd``/``.mha``: ``ITKWriter``, the same geometry as LPS spacing,
origin and direction; 2D: ``PILWriter``, the input's width and height, label values unscaled) to a temporary name in
the output folder, read back with MONAI's reader and compared, then renamed
(:func:`custom_nets.files.write_file_atomic`), so an interrupted run never leaves a partial file under a final name.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from custom_nets.file_types import NIFTI_ENDINGS
from custom_nets.files import partial_path, write_file_atomic

from .discovery import Case, InputSpec, Source
from .errors import CaseError, one_line

__all__ = [
    "Geometry",
    "LoadedCase",
    "Reader2DOptions",
    "MAX_DIM_2D",
    "MAX_DIM_3D",
    "MAX_VOXELS",
    "check_size",
    "check_output_folder",
    "count_labels",
    "dicom_headers",
    "needs_itk",
    "read_case",
    "read_label_counts",
    "read_source",
    "torch_load_reason",
    "to_meta_tensor",
    "warm_up_itk",
    "write_label_map",
]

logger = logging.getLogger(__name__)

MAX_VOXELS = 2**31
"""Largest number of voxels (times channels) accepted per image, checked on the header before reading."""
MAX_DIM_3D = 10000
"""Largest size of any dimension of a 3D image."""
MAX_DIM_2D = 50000
"""Largest width or height of a 2D image."""

MIN_FREE_BYTES = 16 * 2**20
"""Free space an output folder needs at least before a batch starts (and after a failed write, to go on)."""

MISREGISTRATION_TOLERANCE = 0.1
"""Channels of one case whose grids place a corner voxel further apart than this fraction of the smallest voxel side
are misregistered: the case fails, or with ``allow_resample`` the channel is resampled onto the first one's grid."""

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_GEOMETRY_ATOL = 1e-3


@dataclass
class Geometry:
    """Where the voxels of an input are, and how to write a label map on the same grid.

    Attributes:
        spatial_shape: spatial shape of the array handed to the bundle.
        affine: voxel-to-world (RAS, mm) affine of that array, ``(4, 4)``, as MONAI's readers give it (the identity
            for 2D pictures).
        writer: the input's kind: ``"nifti"``, ``"itk"`` (NRRD, MetaImage, DICOM) or ``"png"`` (2D pictures, written
            with MONAI's ``PILWriter``; 3D label maps get the writer of their extension).
        transposed: 2D inputs: the array is ``(W, H)``, the transpose of the picture.
    """

    spatial_shape: tuple[int, ...]
    affine: np.ndarray
    writer: str
    transposed: bool = False

    @property
    def spatial_dims(self) -> int:
        return len(self.spatial_shape)

    @property
    def voxel_volume_mm3(self) -> float:
        """Volume of one voxel in mm^3 (3D); 1 for 2D images (one pixel)."""
        if self.spatial_dims != 3:
            return 1.0
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    @property
    def lps_affine(self) -> np.ndarray:
        """The voxel-to-world affine in DICOM's and ITK's LPS convention (3D)."""
        return _LPS_TO_RAS @ self.affine


@dataclass
class LoadedCase:
    """The image of one case: ``image`` is ``(C, *spatial)`` float32; ``filename`` names its first input."""

    image: np.ndarray
    geometry: Geometry
    filename: str
    notes: list[str] = field(default_factory=list)  # what was done to the input (a resampled channel), for the summary


@dataclass(frozen=True)
class Reader2DOptions:
    """How the bundle's ``LoadImaged`` reads 2D images: pillow ``converter`` and whether the axes are swapped."""

    converter: Callable | None = None
    transpose: bool = True


# ----------------------------------------------------------------------------------------------------------------------
# Checks shared by the readers
# ----------------------------------------------------------------------------------------------------------------------


def _check_file(path: Path) -> int:
    """Size in bytes; CaseError for a missing or empty file."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CaseError(f"cannot access the file ({exc.strerror or exc})", path) from None
    if size == 0:
        raise CaseError("empty file (0 bytes)", path)
    return size


def check_size(spatial: Sequence[int], channels: int, path: Path | str, max_dim: int | None = None) -> None:
    """CaseError when a header promises an absurd or empty image (checked before reading any pixel); ``max_dim``:
    the largest side, by default :data:`MAX_DIM_3D` for 3 spatial axes, else :data:`MAX_DIM_2D`. Also used by the
    bundles' datalist (``custom_nets.data.inference_datalist``): one set of limits."""
    max_dim = max_dim or (MAX_DIM_3D if len(spatial) == 3 else MAX_DIM_2D)
    dims = [int(d) for d in spatial]
    if any(d < 1 for d in dims) or channels < 1:
        raise CaseError(f"the header gives an empty image of size {tuple(dims)} with {channels} channel(s)", path)
    if max(dims) > max_dim:
        raise CaseError(f"the header gives an implausible size {tuple(dims)} (a dimension above {max_dim})", path)
    total = int(np.prod(dims, dtype=np.int64)) * channels
    if total > MAX_VOXELS:
        raise CaseError(f"the header gives an implausible size {tuple(dims)} x {channels} channel(s) "
                        f"({total} voxels, more than 2**31)", path)


def _check_finite(data: np.ndarray, path: Path | str) -> None:
    finite = np.isfinite(data)
    if not finite.all():
        bad = int(finite.size - np.count_nonzero(finite))
        raise CaseError(f"contains {bad} NaN or infinite value(s)", path)


def _wrong_dims(path: Path, ndim: int, spatial_dims: int) -> CaseError:
    need = "3D volumes (optionally with channels in a 4th dimension)" if spatial_dims == 3 else "2D images"
    return CaseError(f"wrong number of dimensions: the image is {ndim}D, the bundle needs {need}", path)


# ----------------------------------------------------------------------------------------------------------------------
# NIfTI
# ----------------------------------------------------------------------------------------------------------------------


def _read_nifti(path: Path) -> tuple[np.ndarray, Geometry]:
    import nibabel as nib
    from monai.data import NibabelReader

    size = _check_file(path)
    try:
        img = NibabelReader().read(str(path))  # the header (corrected as LoadImaged does); voxels mapped lazily
    except Exception as exc:  # noqa: BLE001 - nibabel raises many types for non-NIfTI content
        raise CaseError(f"not a readable NIfTI image ({type(exc).__name__}: {exc})", path) from None
    # checked on the header, before any voxel is read: MONAI's reader takes any file nibabel opens, of any size
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise CaseError(f"not a NIfTI image (read as {type(img).__name__})", path)
    shape = tuple(int(d) for d in img.shape)
    if len(shape) == 3:
        channels = 1
    elif len(shape) == 4 or (len(shape) == 5 and shape[3] == 1):
        channels = shape[-1]
    else:
        raise _wrong_dims(path, len(shape), 3)
    check_size(shape[:3], channels, path, MAX_DIM_3D)
    dtype = img.get_data_dtype()
    if dtype.fields is not None or not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise CaseError(f"unsupported voxel type {dtype} (RGB or complex NIfTI); expected integer or float voxels", path)
    if not str(path).lower().endswith(".gz"):
        expected = int(img.header.get_data_offset()) + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if size < expected:
            raise CaseError(f"truncated file: {size} bytes, the header promises {expected}", path)
    try:
        # scaled in float32 by nibabel: NibabelReader.get_data scales to float64 (twice the memory of a large CT)
        data = np.asarray(img.dataobj, dtype=np.float32).reshape(*shape[:3], channels)
    except Exception as exc:  # noqa: BLE001 - EOFError, zlib.error, OSError, ValueError ...
        raise CaseError(f"cannot read the image data, the file is truncated or corrupt ({type(exc).__name__}: {exc})",
                        path) from None
    data = np.moveaxis(data, 3, 0)
    affine = np.asarray(img.affine, dtype=np.float64)  # the affine NibabelReader gives
    if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise CaseError(f"invalid affine in the header (singular or not finite): {affine.tolist()}", path)
    return data, Geometry(shape[:3], affine, "nifti")


# ----------------------------------------------------------------------------------------------------------------------
# ITK: NRRD, MetaImage, DICOM
# ----------------------------------------------------------------------------------------------------------------------


_ITK_NAMES = ("ImageIOFactory", "CommonEnums", "Image", "VectorImage", "ImageFileReader", "ImageFileWriter",
              "ImageSeriesReader", "GDCMImageIO", "GDCMSeriesFileNames", "F", "UC", "imread", "imwrite", "size",
              "array_view_from_image", "GetImageFromArray", "GetMatrixFromArray", "array_from_matrix")
"""The ITK names MONAI's ``ITKReader``/``ITKWriter`` and this module use."""


def warm_up_itk() -> None:
    """Load the ITK modules used here, in the calling thread.

    ITK's Python package loads its modules lazily on first attribute access; doing that once in the main thread
    means background reading threads never load modules concurrently.
    """
    import itk

    for name in _ITK_NAMES:
        getattr(itk, name)


def needs_itk(sources: Sequence[Source]) -> bool:
    """Whether reading or writing these inputs uses ITK (NRRD, MetaImage, DICOM)."""
    return any(s.kind in ("itk", "dicom") for s in sources)


def _itk_error(exc: Exception) -> str:
    """The useful part of an ITK exception message (its first descriptive line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith("/") and "itk::" not in line.lower()]
    text = "; ".join(useful[:2]) if useful else (lines[0] if lines else type(exc).__name__)
    return text.replace("Reason: No such file or directory", "").strip(" ;")


def _itk_header(path: Path) -> tuple[int, list[int], int]:
    """``(ndim, sizes in ITK order, components)`` from the header only (MONAI's ``ITKReader`` reads the pixels
    before any size is known)."""
    import itk

    _check_file(path)
    try:
        io = itk.ImageIOFactory.CreateImageIO(str(path), itk.CommonEnums.IOFileMode_ReadMode)
    except Exception as exc:  # noqa: BLE001
        raise CaseError(f"not a readable image ({_itk_error(exc)})", path) from None
    if io is None:
        raise CaseError("not a readable image: no ITK reader recognises its header", path)
    try:
        io.SetFileName(str(path))
        io.ReadImageInformation()
    except Exception as exc:  # noqa: BLE001
        raise CaseError(f"cannot read the image header ({_itk_error(exc)})", path) from None
    ndim = int(io.GetNumberOfDimensions())
    sizes = [int(io.GetDimensions(i)) for i in range(ndim)]
    return ndim, sizes, int(io.GetNumberOfComponents())


def _read_itk(path: Path) -> tuple[np.ndarray, Geometry]:
    import itk
    from monai.data import ITKReader

    ndim, sizes, components = _itk_header(path)
    if ndim == 3:
        spatial, channels = sizes, components
    elif ndim == 4 and components == 1:
        spatial, channels = sizes[:3], sizes[3]
    else:
        raise _wrong_dims(path, ndim + (1 if components > 1 else 0), 3)
    check_size(spatial, channels, path, MAX_DIM_3D)
    reader = ITKReader(pixel_type=itk.F) if components == 1 else ITKReader()  # vector pixels in their own type
    try:
        data, meta = reader.get_data(reader.read(str(path)))  # (x, y, z[, channels])
    except Exception as exc:  # noqa: BLE001
        raise CaseError(f"cannot read the image data, the file is truncated or corrupt ({_itk_error(exc)})",
                        path) from None
    data = data[None] if data.ndim == 3 else np.moveaxis(data, 3, 0)
    geometry = Geometry(tuple(spatial), np.asarray(meta["affine"], dtype=np.float64), "itk")
    return np.ascontiguousarray(data, dtype=np.float32), geometry


# ----------------------------------------------------------------------------------------------------------------------
# DICOM series: MONAI's ITKReader (GDCM groups the files of a folder and sorts them by position, ITK reads them)
# ----------------------------------------------------------------------------------------------------------------------

NON_IMAGE_MODALITIES = frozenset({"SEG", "SR", "RTSTRUCT", "RTPLAN", "RTRECORD", "PR", "KO", "DOC", "REG", "FID"})
"""DICOM modalities that are no image to segment (a SEG has pixel data too: its segments)."""

SLICE_GAP_TOLERANCE = 0.01
"""Largest deviation of a DICOM series' slice positions from a uniform grid, as a fraction of the slice spacing."""
_ITK_SERIES_RESTRICTION = "0008|0021"  # series date: the restriction MONAI's ITKReader adds to GDCM's series details
_ITK_DEVIATION_KEY = "ITK_non_uniform_sampling_deviation"  # set by ITK's ImageSeriesReader (MONAI's meta drops it)


def _numbers(ds: Any, keyword: str, count: int) -> np.ndarray | None:
    """The ``count`` numbers of a multi-valued DICOM attribute, or None when missing or malformed."""
    try:
        values = np.asarray([float(v) for v in ds.get(keyword)], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return values if values.shape == (count,) and np.isfinite(values).all() else None


def dicom_headers(source: Source) -> list[Any]:
    """The pydicom headers of the files of a DICOM series (pixel data located, not read), by file name.

    Checked by hand because MONAI's ``ITKReader`` (GDCM under it) reads whatever it is given: objects that are no
    image (an SR has no pixels, a SEG's pixels are segments), truncated pixel data, slices without the position and
    orientation that order them, slices of other orientations or pixel spacings in one series (and of other sizes,
    which GDCM splits off while the reader takes the first part). Also read by :mod:`.dicom_seg` to reference the
    source instances.

    Raises:
        CaseError: naming the file (or the series folder) and the problem.
    """
    import pydicom

    if not source.files:
        raise CaseError("no DICOM files in the series", source.path)
    headers = []
    for path in sorted(Path(f) for f in source.files):
        size = _check_file(path)
        try:
            ds = pydicom.dcmread(str(path), defer_size=1024)  # pixel data is located, not read
        except Exception as exc:  # noqa: BLE001
            raise CaseError(f"not a readable DICOM file ({type(exc).__name__}: {exc})", path) from None
        modality = str(ds.get("Modality", "") or "").upper()
        kind = str(getattr(ds.get("SOPClassUID"), "name", "") or modality or "object")
        pixels = ds.get_item(0x7FE00010)
        if modality in NON_IMAGE_MODALITIES or "SegmentSequence" in ds or pixels is None:
            raise CaseError(f"not an image: a DICOM {kind} ({modality or 'no modality'}"
                            f"{', no pixel data' if pixels is None else ''})", path)
        if "Rows" not in ds or "Columns" not in ds:
            raise CaseError("DICOM file without Rows/Columns", path)
        length, tell = getattr(pixels, "length", None), getattr(pixels, "value_tell", None)
        if length is not None and tell is not None and length != 0xFFFFFFFF and tell + length > size:
            raise CaseError(f"truncated DICOM file: the pixel data needs {tell + length} bytes, the file has {size}",
                            path)
        stored = pixels.value if isinstance(getattr(pixels, "value", None), bytes) else None  # small: read, not located
        needed = (int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
                  * int(ds.get("NumberOfFrames", 1) or 1) * int(ds.get("BitsAllocated", 8) or 8) + 7) // 8
        syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
        if stored is not None and not (syntax is not None and syntax.is_compressed) and len(stored) < needed:
            raise CaseError(f"truncated DICOM file: {len(stored)} bytes of pixel data, the header needs {needed}", path)
        headers.append(ds)
    frames = int(headers[0].get("NumberOfFrames", 1) or 1)
    if len(headers) == 1:
        if frames > 1:
            return headers
        raise CaseError("a DICOM series of a single slice is not a 3D volume", source.path)
    first = headers[0]
    for ds in headers:
        path = Path(ds.filename)
        if int(ds.get("NumberOfFrames", 1) or 1) > 1:
            raise CaseError(f"multi-frame file ({ds.NumberOfFrames} frames) inside a series of {len(headers)} files",
                            path)
        for keyword, count in (("ImagePositionPatient", 3), ("ImageOrientationPatient", 6)):
            if _numbers(ds, keyword, count) is None:
                raise CaseError(f"no valid {keyword}: the slices cannot be ordered", path)
        for what, get in (("sizes", lambda d: np.asarray([int(d.Rows), int(d.Columns)], dtype=np.float64)),
                          ("orientations", lambda d: _numbers(d, "ImageOrientationPatient", 6)),
                          ("pixel spacings", lambda d: _numbers(d, "PixelSpacing", 2))):
            mine, theirs = get(ds), get(first)
            if (mine is None) != (theirs is None) or (mine is not None and not np.allclose(mine, theirs, atol=1e-4)):
                shown = [None if v is None else v.tolist() for v in (mine, theirs)]
                raise CaseError(f"slices with different {what} in one series: {shown[0]} here, {shown[1]} in "
                                f"{Path(first.filename).name}", path)
    # ITK reads two slices at one position as a volume (its non-uniform spacing check misses them)
    orientation = _numbers(first, "ImageOrientationPatient", 6)
    heights = {}
    for ds in headers:
        height = round(float(_numbers(ds, "ImagePositionPatient", 3) @ np.cross(orientation[:3], orientation[3:])), 3)
        if height in heights:
            raise CaseError(f"two slices at the same position ({height} mm along the slice normal): "
                            f"{Path(heights[height]).name} and {Path(ds.filename).name}", source.path)
        heights[height] = ds.filename
    return headers


def _itk_series_name(source: Source) -> str:
    """The identifier MONAI's ``ITKReader`` reads ``source`` by in a folder of several series (GDCM's, with the
    reader's settings); ``""`` (the folder's only series) for a folder of one series."""
    if not source.series:
        return ""
    import itk

    names = itk.GDCMSeriesFileNames.New()
    names.SetUseSeriesDetails(True)
    names.AddSeriesRestriction(_ITK_SERIES_RESTRICTION)
    names.SetDirectory(str(source.path))
    ours = {os.path.realpath(f) for f in source.files}
    found = [uid for uid in names.GetSeriesUIDs() if ours & {os.path.realpath(f) for f in names.GetFileNames(uid)}]
    if len(found) != 1:
        raise CaseError(f"mixed series: GDCM reads its {len(ours)} files as {len(found)} series (different series "
                        "numbers, slice thicknesses, sizes or dates)", source.path)
    return found[0]


def _read_dicom(source: Source) -> tuple[np.ndarray, Geometry]:
    import itk
    from monai.data import ITKReader

    headers = dicom_headers(source)
    if len(headers) == 1:  # one multi-frame file
        return _read_itk(Path(headers[0].filename))
    check_size((int(headers[0].Columns), int(headers[0].Rows), len(headers)), 1, source.path, MAX_DIM_3D)
    reader = ITKReader(series_name=_itk_series_name(source), pixel_type=itk.F)
    try:
        image = reader.read(str(source.path))
        data, meta = reader.get_data(image)  # (x, y, z): columns, rows, slices
    except Exception as exc:  # noqa: BLE001
        raise CaseError(f"cannot read the DICOM series ({_itk_error(exc)})", source.path) from None
    if data.ndim != 3 or data.shape[2] != len(headers):
        raise CaseError(f"mixed series: ITK reads {data.shape[2] if data.ndim == 3 else data.ndim} of its "
                        f"{len(headers)} slices (GDCM splits series by series number, slice thickness and date)",
                        source.path)
    dictionary, step = image.GetMetaDataDictionary(), float(image.GetSpacing()[2])
    deviation = float(dictionary[_ITK_DEVIATION_KEY]) if dictionary.HasKey(_ITK_DEVIATION_KEY) else 0.0
    if deviation > max(SLICE_GAP_TOLERANCE * step, 1e-3):
        raise CaseError(f"non-uniform slice spacing: slice positions up to {deviation:.3f} mm off a uniform grid of "
                        f"{step:.3f} mm (missing slice?)", source.path)
    geometry = Geometry(tuple(data.shape), np.asarray(meta["affine"], dtype=np.float64), "itk")
    return np.ascontiguousarray(data, dtype=np.float32)[None], geometry


# ----------------------------------------------------------------------------------------------------------------------
# 2D
# ----------------------------------------------------------------------------------------------------------------------


def _default_pil_conversion(image: Any, num_channels: int) -> Any:
    """Without a bundle converter: palettes become RGB(A); an alpha channel is dropped when it is one too many (our
    policy for pictures saved with a spare band; MONAI's ``PILReader`` converts nothing by itself)."""
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA" if "transparency" in image.info or image.mode == "PA" else "RGB")
    if image.mode == "RGBA" and num_channels != 4:
        image = image.convert("RGB")
    if image.mode == "LA" and num_channels != 2:
        image = image.convert("L")
    if image.mode == "1":
        image = image.convert("L")
    return image


def _read_2d(path: Path, num_channels: int, options: Reader2DOptions) -> tuple[np.ndarray, Geometry]:
    from monai.data import PILReader
    from PIL import Image, UnidentifiedImageError

    _check_file(path)
    # the converter is applied here, after the header checks: PILReader.read would apply it (and decode) at once
    reader = PILReader(reverse_indexing=options.transpose)
    try:
        image = reader.read(str(path))  # the header; pillow decodes on load()
    except UnidentifiedImageError:
        raise CaseError("not an image pillow can read", path) from None
    except Image.DecompressionBombError as exc:
        raise CaseError(f"implausible image size ({exc})", path) from None
    except Exception as exc:  # noqa: BLE001
        raise CaseError(f"cannot open the image ({type(exc).__name__}: {exc})", path) from None
    with image:
        check_size(image.size, len(image.getbands()), path, MAX_DIM_2D)
        frames = int(getattr(image, "n_frames", 1) or 1)
        if frames > 1:
            raise CaseError(f"wrong number of dimensions: {frames} frames/pages (a 3D image), the bundle needs 2D "
                            "images", path)
        try:
            image.load()
            converted = options.converter(image) if options.converter else _default_pil_conversion(image, num_channels)
            data, _ = reader.get_data(converted)  # (W, H[, C]), or (H, W[, C]) without reverse_indexing
        except Exception as exc:  # noqa: BLE001 - OSError for truncated files, ValueError for odd modes
            raise CaseError(f"cannot read the image data, the file is truncated or corrupt ({type(exc).__name__}: "
                            f"{exc})", path) from None
    if data.ndim not in (2, 3):
        raise _wrong_dims(path, data.ndim, 2)
    data = data[None] if data.ndim == 2 else np.moveaxis(data, 2, 0)
    geometry = Geometry(tuple(data.shape[1:]), np.eye(4), "png", transposed=options.transpose)
    return np.ascontiguousarray(data, dtype=np.float32), geometry


# ----------------------------------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------------------------------


def read_source(source: Source, num_channels: int = 1, options_2d: Reader2DOptions | None = None):
    """Read one input (file or DICOM series) -> ``(data (C, *spatial) float32, Geometry)``; CaseError on problems."""
    if source.kind == "nifti":
        return _read_nifti(source.path)
    if source.kind == "itk":
        return _read_itk(source.path)
    if source.kind == "dicom":
        return _read_dicom(source)
    if source.kind == "2d":
        return _read_2d(source.path, num_channels, options_2d or Reader2DOptions())
    raise CaseError(f"unknown input kind {source.kind!r}", source.path)


def _channel_hint(spec: InputSpec) -> str:
    names = ", ".join(spec.channel_name(i) for i in range(spec.num_channels))
    text = f"the bundle needs {spec.num_channels} ({names})" if spec.num_channels > 1 else "the bundle needs 1"
    if spec.groups_by_suffix:
        suffixes = ", ".join("/".join(s) for s in spec.channel_suffixes or ())
        text += f"; give one file per channel named <case>_<suffix> (suffixes {suffixes}) or one file with every channel"
    return text


def read_case(case: Case, spec: InputSpec, options_2d: Reader2DOptions | None = None,
              allow_resample: bool = False) -> LoadedCase:
    """Read every input of ``case`` into one ``(C, *spatial)`` float32 array with the geometry of the first input.

    Channels in separate files must share the first one's grid (shape, and voxel positions within
    :data:`MISREGISTRATION_TOLERANCE` of a voxel); with ``allow_resample`` another grid is resampled onto the first
    (MONAI's ``ResampleToMatch``, bilinear) and noted in :attr:`LoadedCase.notes`.

    Raises:
        CaseError: naming the file and the problem (see the module docstring).
    """
    if case.error:
        raise CaseError(case.error)
    if not case.sources:
        raise CaseError("no input files", case.folder)
    if len(case.sources) == 1:
        source = case.sources[0]
        data, geometry = read_source(source, spec.num_channels, options_2d)
        if data.shape[0] != spec.num_channels:
            raise CaseError(f"wrong channel count: the image has {data.shape[0]} channel(s), {_channel_hint(spec)}",
                            source.path)
        for c in range(data.shape[0]):
            _check_finite(data[c], source.path)
        return LoadedCase(np.ascontiguousarray(data), geometry, str(source.path))

    if len(case.sources) != spec.num_channels:
        raise CaseError(f"{len(case.sources)} input files for {spec.num_channels} channels", case.folder)
    out: np.ndarray | None = None
    geometry: Geometry | None = None
    notes: list[str] = []
    for c, source in enumerate(case.sources):
        data, geo = read_source(source, 1, options_2d)
        if data.shape[0] != 1:
            raise CaseError(f"wrong channel count: the {spec.channel_name(c)} image has {data.shape[0]} channels, "
                            "expected 1 per modality file", source.path)
        _check_finite(data[0], source.path)
        if out is None or geometry is None:
            geometry = geo
            out = np.empty((spec.num_channels, *data.shape[1:]), dtype=np.float32)
        else:
            problem = _grid_difference(geo, data.shape[1:], geometry, out.shape[1:])
            if problem and not allow_resample:
                raise CaseError(f"the {spec.channel_name(c)} image is not on the grid of the {spec.channel_name(0)} "
                                f"image {case.sources[0].path.name}: {problem} (--allow-resample resamples it)",
                                source.path)
            if problem:
                data = _resample_onto(data, geo.affine, geometry.affine, out.shape[1:])
                notes.append(f"{spec.channel_name(c)} resampled onto the {spec.channel_name(0)} grid ({problem})")
                logger.warning(f"{source.path}: {notes[-1]}")
        out[c] = data[0]
        del data
    assert out is not None and geometry is not None
    return LoadedCase(out, geometry, str(case.sources[0].path), notes)


def _grid_difference(geo: Geometry, shape: Sequence[int], reference: Geometry, reference_shape: Sequence[int]
                     ) -> str:
    """How the grid ``(geo, shape)`` differs from ``reference`` beyond :data:`MISREGISTRATION_TOLERANCE`; ``""``."""
    if tuple(shape) != tuple(reference_shape):
        return f"shape {tuple(shape)}, not {tuple(reference_shape)}"
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(len(shape), -1)
    homogeneous = np.vstack([corners, np.zeros((3 - len(shape), corners.shape[1])), np.ones(corners.shape[1])])
    if geo.affine.shape != (4, 4) or reference.affine.shape != (4, 4):
        return ""
    distance = float(np.linalg.norm((geo.affine @ homogeneous - reference.affine @ homogeneous)[:3], axis=0).max())
    voxel = float(np.linalg.norm(reference.affine[:3, :3], axis=0).min())
    if distance > max(MISREGISTRATION_TOLERANCE * voxel, _GEOMETRY_ATOL):
        return f"voxels up to {distance:.2f} mm away from the same voxel of the first image"
    return ""


def _resample_onto(data: np.ndarray, affine: np.ndarray, reference_affine: np.ndarray,
                   reference_shape: Sequence[int]) -> np.ndarray:
    """``(1, *S)`` ``data`` on grid ``affine``, resampled (bilinear, zeros outside) onto ``reference_affine``."""
    import torch
    from monai.data import MetaTensor
    from monai.transforms import ResampleToMatch

    source = MetaTensor(torch.from_numpy(np.ascontiguousarray(data)), affine=torch.as_tensor(affine))
    target = MetaTensor(torch.zeros((1, *reference_shape)), affine=torch.as_tensor(reference_affine))
    resampled = ResampleToMatch(mode="bilinear", padding_mode="zeros", dtype=torch.float64)(source, target)
    return np.asarray(resampled.detach().cpu().numpy(), dtype=np.float32)


def to_meta_tensor(loaded: LoadedCase):
    """The case as the MetaTensor MONAI's ``LoadImaged`` + ``EnsureChannelFirstd`` would give (no data copy)."""
    import torch
    from monai.data import MetaTensor
    from monai.utils import MetaKeys, SpaceKeys

    affine = torch.as_tensor(loaded.geometry.affine, dtype=torch.float64)
    meta = {
        MetaKeys.ORIGINAL_AFFINE: loaded.geometry.affine.copy(),
        MetaKeys.SPATIAL_SHAPE: np.asarray(loaded.geometry.spatial_shape),
        MetaKeys.ORIGINAL_CHANNEL_DIM: 0,
        MetaKeys.SPACE: SpaceKeys.RAS,
        "filename_or_obj": loaded.filename,
    }
    return MetaTensor(torch.from_numpy(loaded.image), affine=affine, meta=meta)


# ----------------------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------------------


def check_output_folder(folder: str | os.PathLike, needed_bytes: int = MIN_FREE_BYTES) -> str | None:
    """``None`` if files can be written to ``folder`` (created if missing), else the problem, on one line.

    Checked by writing (and removing) a small file, not from permission bits (which do not stop root), and by the
    free space: at least ``needed_bytes``.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"the output folder {folder} cannot be created ({exc.strerror or exc})"
    if not folder.is_dir():
        return f"the output {folder} exists and is not a folder"
    probe = partial_path(folder, "write-test.tmp")
    try:
        with open(probe, "xb") as f:
            f.write(b"\0" * 4096)
    except OSError as exc:
        return f"the output folder {folder} is not writable ({exc.strerror or exc})"
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
    free = shutil.disk_usage(folder).free
    if free < needed_bytes:
        return (f"the output folder {folder} has {free / 2**20:.1f} MiB free, less than the {needed_bytes / 2**20:.0f} "
                "MiB needed for a case")
    return None


def torch_load_reason(exc: BaseException) -> str:
    """The useful part of a ``torch.load(weights_only=True)`` error, on one short line (PyTorch's message is a page)."""
    reason = one_line(exc).split("WeightsUnpickler error:")[-1].split(" Check the documentation")[0].strip()
    return f"{type(exc).__name__}: {reason[:100]}"


def _label_dtype(label: np.ndarray) -> np.dtype:
    if label.size and (label.min() < 0 or label.max() > 65535):
        raise CaseError(f"label values outside 0..65535 ({label.min()}..{label.max()}) cannot be written")
    return np.dtype(np.uint8) if not label.size or label.max() <= 255 else np.dtype(np.uint16)


def _write(label: np.ndarray, geometry: Geometry, tmp: Path) -> None:
    """``label`` (spatial shape of ``geometry``) to ``tmp`` with the MONAI writer of its format, on the input's grid:
    2D pictures with ``PILWriter``, volumes with :func:`custom_nets.writers.write_image` (NIfTI or ITK by extension)."""
    from monai.data import PILWriter

    from custom_nets.writers import write_image

    if geometry.writer == "png":  # label values as they are, not scaled to 0..255
        picture = PILWriter.create_backend_obj(label, scale=None, reverse_indexing=geometry.transposed)
        picture.save(tmp, format="PNG")
    else:
        write_image(label, geometry.affine, tmp)


def _read_label_map(path: str | os.PathLike, transposed: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """``(array, affine or None for 2D)`` of a label map, read with the MONAI reader of its format."""
    from monai.data import ITKReader, NibabelReader, PILReader

    name = str(path).lower()
    if name.endswith(".png"):
        reader = PILReader(reverse_indexing=transposed)
    elif name.endswith(NIFTI_ENDINGS):
        reader = NibabelReader()
    elif name.endswith((".nrrd", ".mha")):
        reader = ITKReader()
    else:  # a DICOM SEG holds segment numbers, not label values
        raise ValueError(f"{path}: not a label map written by write_label_map")
    array, meta = reader.get_data(reader.read(str(path)))
    return np.asarray(array), meta.get("affine")


def _verify(tmp: Path, label: np.ndarray, geometry: Geometry) -> None:
    """Read the written label map back and compare its values and grid with what was to be written."""
    try:
        back, affine = _read_label_map(tmp, geometry.transposed)
    except Exception as exc:  # noqa: BLE001 - whatever the reader finds wrong in the file
        raise CaseError(f"the written label map does not read back ({type(exc).__name__}: {exc})") from None
    same_grid = geometry.writer == "png" or np.allclose(affine, geometry.affine, atol=_GEOMETRY_ATOL)
    if back.shape != label.shape or not same_grid or not np.array_equal(back, label):
        found = f"shape {back.shape}" + ("" if affine is None else f", affine {np.round(affine, 4).tolist()}")
        raise CaseError(f"the written label map does not read back with the input's geometry and values ({found})")


def write_label_map(label: np.ndarray, geometry: Geometry, path: str | os.PathLike) -> None:
    """Write an integer label map (spatial shape of ``geometry``) atomically with the input's geometry.

    The format follows the extension of ``path`` for 3D geometries (``.nii.gz``, ``.nrrd``, ``.mha``) and is PNG for
    2D inputs. Values are stored as uint8 (uint16 when above 255).
    """
    label = np.asarray(label)
    if tuple(label.shape) != tuple(geometry.spatial_shape):
        raise CaseError(f"the label map has shape {tuple(label.shape)}, the input {tuple(geometry.spatial_shape)}")
    label = label.astype(_label_dtype(label), copy=False)
    write_file_atomic(path, lambda tmp: _write(label, geometry, tmp), lambda tmp: _verify(tmp, label, geometry))


def count_labels(label: np.ndarray) -> dict[int, int]:
    """Number of voxels of every nonzero value of an integer label map."""
    flat = np.asarray(label).ravel()
    if flat.size == 0:
        return {}
    counts = np.bincount(flat.astype(np.int64, copy=False)) if flat.dtype.kind in "iub" else None
    if counts is None:
        values, numbers = np.unique(flat, return_counts=True)
        return {int(v): int(n) for v, n in zip(values, numbers) if v != 0}
    return {int(v): int(n) for v, n in enumerate(counts) if v != 0 and n}


def read_label_counts(path: str | os.PathLike) -> tuple[dict[int, int], float]:
    """``(counts per nonzero value, voxel volume in mm^3)`` of a label map written earlier (1.0 for PNG pixels)."""
    label, affine = _read_label_map(path)
    volume = 1.0 if affine is None else float(abs(np.linalg.det(affine[:3, :3])))
    return count_labels(label), volume
