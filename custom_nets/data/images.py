"""Plain folders of images or volumes, for inference on data in no particular layout."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..file_types import NIFTI_ENDINGS, is_label_name
from .errors import DatasetError
from .naming import case_name_from_path

__all__ = ["find_volumes"]


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
        if is_label_name(stem):
            continue
        if path.stat().st_size == 0:
            raise DatasetError(f"{path}: empty file (0 bytes)", path=path)
        found.append({"case": stem, "image": str(path.resolve())})
    if not found:
        raise DatasetError(f"{root}: contains no {what} ({', '.join(extensions)})", path=root)
    return found


def find_volumes(folder: str | os.PathLike) -> list[dict[str, Any]]:
    """Every NIfTI volume under ``folder`` (recursively), label maps excluded."""
    return _find(folder, NIFTI_ENDINGS, "NIfTI volumes")
