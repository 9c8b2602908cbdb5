"""What the UW-Madison GI tract bundles need beyond :mod:`custom_nets.convert.uwmadison` at inference time.

* :func:`slice_datalist`: every slice PNG under a folder (the Kaggle ``train/`` or ``test/`` tree, one case-day's
  ``scans/`` folder, or any folder of PNGs), with the competition id of each slice and, for 2.5D networks, its
  neighbours' paths;
* :func:`slice_root`: the folder :func:`slice_datalist` scans, so that masks can be written in a mirror of its tree;
* :func:`case_day_volumes` / :func:`volume_datalist`: NIfTI volumes of case-days (the slices of one case and day
  stacked), for slice-by-slice volume inference.

Orientation: MONAI's ``PILReader`` returns a PNG as ``(width, height)`` arrays. :func:`case_day_volumes` writes each
volume as ``(width, height, slices)`` (``volume[x, y, k] == png_k[y, x]``) with the affine
``diag(sx, sy, slice_thickness)``, so that its axial slices (axis 2) reach the network in the orientation the
network was trained on.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..convert.uwmadison import find_uwmadison_slices, neighbour_slices
from ..file_types import is_label_name
from ..files import write_file_atomic
from .common import is_demo
from .errors import DatasetError
from .images import find_volumes
from .uwmadison import generate_uwmadison_demo

__all__ = ["case_day_volumes", "slice_datalist", "slice_id_from_path", "slice_root", "volume_datalist"]

logger = logging.getLogger(__name__)

_DAY_DIR = re.compile(r"^(case\d+)_day(\d+)$")
_SLICE_NUMBER = re.compile(r"^slice_(\d+)", re.IGNORECASE)
DEFAULT_SLICE_THICKNESS = 3.0
"""Slice thickness in mm assumed for UW-Madison case-days (the PNG names give the in-plane spacing only)."""


def _case_day_of(path: Path) -> tuple[str, int] | None:
    """``("case123", 20)`` for ``.../case123_day20/scans/slice_*.png`` (or ``.../case123_day20/slice_*.png``)."""
    for folder in (path.parent, path.parent.parent):
        match = _DAY_DIR.match(folder.name)
        if match:
            return match.group(1), int(match.group(2))
    return None


def _slice_number(path: Path) -> int | None:
    match = _SLICE_NUMBER.match(path.name)
    return int(match.group(1)) if match else None


def slice_id_from_path(path: str | os.PathLike) -> str:
    """The competition id of a slice file: ``case123_day20_slice_0001`` for
    ``.../case123/case123_day20/scans/slice_0001_266_266_1.50_1.50.png``; the file name stem for any other file."""
    p = Path(path)
    case_day, number = _case_day_of(p), _slice_number(p)
    if case_day is not None and number is not None:
        return f"{case_day[0]}_day{case_day[1]}_slice_{number:04d}"
    return p.name[: -len(p.suffix)] if p.suffix else p.name


def slice_root(
    dataset_dir: str | os.PathLike | None, demo_dir: str | os.PathLike | None = None, generate: bool = True
) -> str:
    """The folder :func:`slice_datalist` scans: ``dataset_dir``, or the demo data folder.

    The demo data are generated on first use unless ``generate`` is False: the inference config only needs the path
    (for the saver's folder layout), and building its postprocessing must not write demo data into a bundle that MONAI
    Label or ``custom_nets.inference`` serves on other images.
    """
    if is_demo(dataset_dir):
        if demo_dir is None or not str(demo_dir).strip():
            raise ValueError("dataset_dir is 'demo' but no demo_dir was given to hold the generated demo data")
        return str(generate_uwmadison_demo(demo_dir)) if generate else str(Path(demo_dir).expanduser())
    root = Path(dataset_dir).expanduser()  # type: ignore[arg-type]
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        raise DatasetError(f"slice folder {root} {what}; expected a folder of slice PNGs (any depth)", root)
    return str(root.resolve())


def slice_datalist(
    dataset_dir: str | os.PathLike | None,
    demo_dir: str | os.PathLike | None = None,
    offsets: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """Every slice PNG under ``dataset_dir`` (recursively), for inference.

    Files and folders whose names start with ``.`` (e.g. the mask cache ``.uwmadison_masks``) and files ending in
    ``_mask``, ``_seg``, ``_segmentation`` or ``_label`` are skipped. ``dataset_dir`` ``"demo"`` means the demo
    data (generated into ``demo_dir``).

    Args:
        dataset_dir: folder of slices, or ``"demo"``.
        demo_dir: where the demo data lives.
        offsets: 2.5D slice offsets (e.g. ``(-2, 0, 2)``): ``"image"`` becomes the list of the neighbours' paths,
            taken among the slices of the same case-day folder in slice-number order (files not named ``slice_<k>*``
            in name order), clamped at both ends; ``None`` for one slice per input.

    Returns:
        Entries sorted by folder and slice number: ``{"image": path (or list), "center_image": path, "id": competition
        id (:func:`slice_id_from_path`), "case": "case<N>" (or the folder relative to ``dataset_dir``), "day": int
        (0 outside the Kaggle layout), "slice": int}``.

    Raises:
        DatasetError: ``dataset_dir`` is missing or holds no PNG.
    """
    root = Path(slice_root(dataset_dir, demo_dir))
    paths = []
    for path in root.rglob("*"):
        relative = path.relative_to(root).parts
        if any(part.startswith(".") for part in relative) or not path.is_file():
            continue
        if path.suffix.lower() != ".png" or is_label_name(path.stem):
            continue
        if path.stat().st_size == 0:
            raise DatasetError(f"{path}: empty file (0 bytes); expected a 16-bit PNG slice", path)
        paths.append(path)
    if not paths:
        raise DatasetError(f"{root}: contains no slice PNGs (.png, at any depth)", root)
    items = []
    for path in paths:
        case_day, number = _case_day_of(path), _slice_number(path)
        case, day = case_day if case_day is not None else (path.parent.relative_to(root).as_posix() or ".", 0)
        items.append({"case": case, "day": day, "number": number, "name": path.name, "image": str(path.resolve())})
    items.sort(key=lambda d: (d["case"], d["day"], d["number"] is None, d["number"] or 0, d["name"]))
    out = []
    position: dict[tuple[str, int], int] = {}
    for item in items:
        key = (item["case"], item["day"])
        index = position.get(key, 0)
        position[key] = index + 1
        path = item["image"]
        out.append(
            {
                "image": path,
                "center_image": path,
                "id": slice_id_from_path(path),
                "case": item["case"],
                "day": item["day"],
                "slice": item["number"] if item["number"] is not None else index + 1,
            }
        )
    if offsets is not None:
        out = neighbour_slices(out, offsets)
    return out


def case_day_volumes(
    dataset_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    slice_thickness: float = DEFAULT_SLICE_THICKNESS,
    overwrite: bool = False,
) -> list[Path]:
    """Write every case-day of a UW-Madison folder as one NIfTI volume ``out_dir/<case>_day<D>.nii.gz``.

    The slices (16-bit values kept, ``uint16``) are stacked in slice-number order as ``(width, height, slices)``
    with the affine ``diag(sx, sy, slice_thickness, 1)`` (see the module docstring). Existing files are kept unless
    ``overwrite``. Labels are not needed (the CSV is not read).

    Returns:
        The volume paths, sorted.
    """
    import nibabel as nib

    items = find_uwmadison_slices(dataset_dir, require_labels=False)
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for item in items:
        groups.setdefault((item["case"], item["day"]), []).append(item)
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for (case, day), group in sorted(groups.items()):
        path = out / f"{case}_day{day}.nii.gz"
        written.append(path)
        if path.is_file() and not overwrite:
            continue
        group.sort(key=lambda d: d["slice"])
        shapes = {(d["height"], d["width"]) for d in group}
        if len(shapes) > 1:
            raise DatasetError(f"{case} day {day} has slices of different sizes {sorted(shapes)}", group[0]["image"])
        planes = []
        for d in group:
            with Image.open(d["image"]) as image:
                planes.append(np.asarray(image).T)  # (H, W) -> (W, H): MONAI's PILReader order
        volume = np.stack(planes, axis=-1)
        sx, sy = group[0]["spacing"]
        affine = np.diag([float(sx), float(sy), float(slice_thickness), 1.0])
        image = nib.Nifti1Image(volume.astype(np.uint16), affine)
        write_file_atomic(path, lambda tmp, image=image: nib.save(image, str(tmp)))
    logger.info("%d case-day volumes in %s", len(written), out)
    return written


def volume_datalist(
    dataset_dir: str | os.PathLike | None,
    demo_dir: str | os.PathLike | None = None,
    slice_thickness: float = DEFAULT_SLICE_THICKNESS,
) -> list[dict[str, Any]]:
    """Every NIfTI volume under ``dataset_dir``; for ``"demo"``, the demo case-days written as volumes into
    ``demo_dir/volumes`` first (:func:`case_day_volumes`)."""
    if is_demo(dataset_dir):
        folder = Path(slice_root(dataset_dir, demo_dir))
        case_day_volumes(folder, folder / "volumes", slice_thickness=slice_thickness)
        return find_volumes(folder / "volumes")
    return find_volumes(dataset_dir)  # type: ignore[arg-type]
