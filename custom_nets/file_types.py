"""Image file endings and ground-truth file names: one place for the data layer, batch inference and the writers.

Kept free of heavy imports (no torch, MONAI or numpy), so that ``segment.py --help`` and case discovery stay fast.
"""

from __future__ import annotations

__all__ = [
    "FILE_ENDINGS",
    "ITK_ENDINGS",
    "LABEL_SUFFIXES",
    "NIFTI_ENDINGS",
    "PICTURE_ENDINGS",
    "VOLUME_ENDINGS",
    "ends_with_token",
    "file_ending",
    "is_label_name",
    "strip_ending",
]

NIFTI_ENDINGS = (".nii.gz", ".nii")
ITK_ENDINGS = (".nrrd", ".nhdr", ".mha", ".mhd")
VOLUME_ENDINGS = NIFTI_ENDINGS + ITK_ENDINGS
"""3D image files (DICOM series are folders, found by their content)."""
PICTURE_ENDINGS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
"""2D image files."""
FILE_ENDINGS = VOLUME_ENDINGS + PICTURE_ENDINGS

LABEL_SUFFIXES = ("seg", "label", "labels", "mask", "gt", "segmentation")
"""Name endings (after ``_`` or ``-``, any letter case) of ground-truth files stored beside their images: never taken
as input images, by batch inference nor by the bundles' datalists of plain folders."""
_SEPARATORS = "_-"


def file_ending(name: str, endings: tuple[str, ...] = FILE_ENDINGS) -> str | None:
    """The ending of ``endings`` that file name ``name`` has (lower case, e.g. ``".nii.gz"``), or ``None``; a name that
    is only an ending (``.nii.gz``) has none."""
    lower = name.lower()
    for ending in endings:
        if lower.endswith(ending) and len(lower) > len(ending):
            return ending
    return None


def strip_ending(name: str) -> str:
    """``case_0000.nii.gz`` -> ``case_0000``; a name without a known ending is returned as it is."""
    ending = file_ending(name)
    return name[: -len(ending)] if ending else name


def ends_with_token(stem: str, token: str) -> str | None:
    """If ``stem`` is ``token`` or ends with ``_token``/``-token`` (any case), the part before it (maybe ``""``)."""
    lower, token = stem.lower(), token.lower()
    if lower == token:
        return ""
    if lower.endswith(token) and len(lower) > len(token) and lower[-len(token) - 1] in _SEPARATORS:
        return stem[: -len(token) - 1]
    return None


def is_label_name(stem: str) -> bool:
    """Whether a file name without its ending names a ground-truth file (``x_seg``, ``x-mask``, ``gt`` ...)."""
    return any(ends_with_token(stem, suffix) is not None for suffix in LABEL_SUFFIXES)
