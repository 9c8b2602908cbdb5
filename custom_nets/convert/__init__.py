"""Converters from the public dataset layouts to the one canonical layout every bundle reads (nnU-Net v2).

Command line::

    python -m custom_nets.convert brats|lgg|kvasir|isic|uwmadison|auto SRC DST [--overwrite]

Python:

- :func:`convert` writes the canonical folder (``dataset.json``, ``imagesTr``, ``labelsTr``, ``imagesTs``,
  ``splits_final.json`` where cases share a patient), atomically: a failed conversion leaves no ``DST``.
- :func:`detect` tells which public layout a folder holds.
- :func:`describe` gives a Decathlon-style ``dataset.json`` dict (absolute paths) that reads an unconverted public
  folder in place, so a bundle's ``--dataset_dir`` may still point at it.

The layouts (:data:`LAYOUTS`) and what each conversion writes are in :mod:`.brats`, :mod:`.lgg`,
:mod:`.polyp_skin` and :mod:`.uwmadison`; the shared writer in :mod:`.core`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..data.errors import DatasetError
from .core import DATASET_JSON, Layout, describe_in_place, describe_via_cache, write_dataset
from .layouts import LAYOUTS, get_layout

__all__ = ["LAYOUTS", "Layout", "convert", "describe", "detect", "get_layout"]


def _has_dataset_json(folder: Path) -> bool:
    """True if ``folder/dataset.json`` describes a dataset (nnU-Net v2 or Decathlon).

    The marker file of today's public-layout demo folders, also named ``dataset.json``, does not count.
    """
    path = folder / DATASET_JSON
    if not path.is_file():
        return False
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True  # a broken dataset.json is the reader's to report
    return not (isinstance(info, dict) and info.get("synthetic") is True and "channel_names" not in info
                and "modality" not in info)  # fmt: skip


def detect(path: str | os.PathLike) -> str | None:
    """The public layout a folder holds (a :data:`LAYOUTS` name), or ``None``.

    ``None`` for a folder that is missing, holds a ``dataset.json`` (it is read as it is), or matches no layout.
    Only names are looked at (the first few case folders), no image is read.
    """
    folder = Path(path).expanduser()
    if not folder.is_dir() or _has_dataset_json(folder):
        return None
    for name, layout in LAYOUTS.items():
        if layout.detect(folder):
            return name
    return None


def describe(path: str | os.PathLike, layout: str | None = None) -> dict[str, Any]:
    """A ``dataset.json``-like dict that reads the public folder ``path`` without converting it by hand.

    Keys: ``name``, ``description``, ``channel_names``, ``labels`` (name -> value or region), optional
    ``regions_class_order``, ``numTraining``, ``file_ending`` and, as in the Decathlon form, ``training``: a list of
    ``{"case", "image": absolute path or [path per channel], "label", "group" (where cases share a patient / case)}``
    and, when some images have no label, ``test``: a list of ``{"case", "image"}`` (MONAI's
    ``load_decathlon_datalist`` reads both lists). Where the files are readable as
    they are the entries point at them, with the layout's own label values (BraTS 1/2/4 as regions, LGG and ISIC
    masks 255); UW-Madison's run-length masks and Kvasir-SEG's JPEG masks are no label maps: such a folder is
    converted once into ``path/.canonical/<layout>-<hash>`` (a changed dataset gets a new one) and that conversion
    is described.

    Args:
        path: the public dataset folder.
        layout: its layout name; default :func:`detect`.

    Raises:
        DatasetError: no known layout, a malformed folder (the layout's discovery errors), or (UW-Madison) a folder
            that cannot hold the cache: the message gives the convert command.
        ValueError: unknown ``layout``.
    """
    folder = Path(path).expanduser()
    found = get_layout(layout) if layout is not None else _detected(folder)
    if found.in_place is None:
        return describe_via_cache(found, folder)
    return describe_in_place(found, folder, found.find(folder, None))


def _detected(folder: Path) -> Layout:
    name = detect(folder)
    if name is None:
        if not folder.is_dir():
            raise DatasetError(f"dataset folder {folder} does not exist or is not a folder", folder)
        raise DatasetError(
            f"dataset folder {folder} has no dataset.json and holds none of the public layouts "
            f"({', '.join(sorted(LAYOUTS))}); see docs/own_data.md for the expected layout",
            folder,
        )
    return LAYOUTS[name]


def convert(
    layout: str,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Convert the public folder ``src`` (layout ``layout``, or ``"auto"`` for :func:`detect`) into ``dst``.

    See :func:`custom_nets.convert.core.write_dataset` for what is written and the errors. Returns ``dst``.
    """
    src_path = Path(src).expanduser()
    found = _detected(src_path) if str(layout).strip().lower() == "auto" else get_layout(layout)
    if src_path.is_dir() and not found.detect(src_path):
        other = detect(src_path)
        if other is not None:
            raise DatasetError(
                f"source folder {src_path} holds the {LAYOUTS[other].title} layout, not {found.title}; convert it "
                f"with the layout {other} (or auto)",
                src_path,
            )
    return write_dataset(found, src_path, dst, overwrite=overwrite, progress=progress)
