"""Plain folders of images or volumes, for inference on data in no particular layout."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .errors import DatasetError
from .naming import case_name_from_path

__all__ = ["VOLUME_EXTENSIONS", "find_volumes"]

VOLUME_EXTENSIONS = (".nii", ".nii.gz")
# file-name endings of masks and labels stored beside their images; never taken as input images
MASK_SUFFIXES = ("_mask", "_seg", "_segmentation", "_label")


def _find(folder: str | os.PathLike, extensions: tuple[str, ...], what: str) -> list[dict[str, Any]]:
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder (expected a folder of {what})", path=root)
    found = []
    for path in sorted(root.rglob("*")):
        name = path.name.lower()
        if not path.is_file() or name.startswith(".") or not name.endswith(extensions):
            continue
        stem = case_name_from_path(path)
        if stem.lower().endswith(MASK_SUFFIXES):
            continue
        if path.stat().st_size == 0:
            raise DatasetError(f"{path}: empty file (0 bytes)", path=path)
        found.append({"case": stem, "image": str(path.resolve())})
    if not found:
        raise DatasetError(f"{root}: contains no {what} ({', '.join(extensions)})", path=root)
    return found


def find_volumes(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """Every NIfTI volume under ``folder`` (recursively), label maps excluded."""
    return _find(folder, VOLUME_EXTENSIONS, "NIfTI volumes")
