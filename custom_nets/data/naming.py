"""Case names: from image paths to the names used in output files and metric reports."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..file_types import strip_ending

__all__ = ["case_name_from_path", "case_names_from_batch", "case_output_name"]

# the first channel file of an nnU-Net case, <case>_0000 (what LoadImaged names a stacked image after)
FIRST_CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_0000$")
_MODALITY_SUFFIXES = ("_flair", "_t1ce", "_t1", "_t2", "-t2f", "-t1n", "-t1c", "-t2w", "_image", "_img")


def case_name_from_path(path: str | os.PathLike) -> str:
    """Case name from an image path: the file name without extension and without a trailing modality suffix."""
    name = strip_ending(Path(str(path)).name)
    for suffix in _MODALITY_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    match = FIRST_CHANNEL_SUFFIX.match(name)
    return match["case"] if match else name


def case_names_from_batch(batch: Sequence[Mapping[str, Any]], image_key: str = "image") -> list[str]:
    """Case names of a decollated batch, read from the image's ``filename_or_obj`` metadata."""
    names = []
    for item in batch:
        meta = getattr(item[image_key], "meta", {}) or item.get(f"{image_key}_meta_dict", {})
        source = meta.get("filename_or_obj", "unknown")
        if isinstance(source, (list, tuple)):
            source = source[0]
        names.append(case_name_from_path(source))
    return names




def case_output_name(metadict: Mapping[str, Any], saver: Any = None) -> dict[str, Any]:
    """``output_name_formatter`` for MONAI's ``SaveImage``: name the output after the case, not the first modality.

    ``BraTS20_001/BraTS20_001_flair.nii.gz`` gives ``subject="BraTS20_001"``, so ``SaveImaged(output_postfix="seg")``
    writes ``BraTS20_001_seg.nii.gz``.
    """
    source = metadict.get("filename_or_obj", "case")
    if isinstance(source, (list, tuple)):
        source = source[0]
    return {"subject": case_name_from_path(source), "idx": metadict.get("patch_index", None)}
