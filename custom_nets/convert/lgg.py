"""LGG MRI slices (Kaggle ``kaggle_3m``: ``<patient>/<patient>_<n>.tif`` + ``_mask.tif``) to the canonical layout.

Every slice is a case ``<patient>_<n>``: its RGB TIFF (pre-contrast, FLAIR, post-contrast as R, G, B) becomes one
lossless ``<case>_0000.png``, its mask a 0/1 label PNG (``> 127`` for 0/255 masks, as
:func:`custom_nets.data.lgg.foreground_fraction` counts). ``splits_final.json`` holds 5 folds grouped by patient, so
the slices of one patient are never split. Discovery is :func:`find_lgg_slices`.
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

from ..data.common import check_folder, check_nonempty_file, is_hidden, read_subfolders, visible_subfolders
from ..data.errors import DatasetError
from ..data.lgg import _read_mask
from .core import Entry, Layout, save_png
from .polyp_skin import RGB_CHANNELS, pil_to_rgb

__all__ = ["LAYOUT", "RGB_CHANNELS", "find_lgg_slices"]

logger = logging.getLogger(__name__)

_LOOKED_AT = 5  # patient folders looked at by detect()
_TIFF_EXTENSIONS = (".tif", ".tiff")
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")
# "<prefix>_<n>.tif" or "<prefix>_<n>_mask.tif" (also .tiff, any letter case); the prefix is the patient name
_SLICE_RE = re.compile(r"^(?P<prefix>.+)_(?P<n>\d+)(?P<mask>_mask)?\.tiff?$", re.IGNORECASE)

# ----------------------------------------------------------------------------------------------------------------------
# Reading LGG-layout folders
# ----------------------------------------------------------------------------------------------------------------------


def _is_tiff(name: str) -> bool:
    return name.lower().endswith(_TIFF_EXTENSIONS)


def _holds_tiff(folder: Path) -> bool:
    """True if ``folder`` directly holds a non-hidden ``.tif`` / ``.tiff`` file."""
    return any(f.is_file() and not is_hidden(f.name) and _is_tiff(f.name) for f in folder.iterdir())


def _check_tiff(path: Path) -> str | None:
    """A problem that would make reading a TIFF file fail (empty, not a TIFF), or ``None`` if it looks fine."""
    problem = check_nonempty_file(path, "a TIFF slice")
    if problem is not None:
        return problem
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as err:
        return f"file {path} cannot be read ({err}); expected a readable TIFF slice"
    if head not in _TIFF_MAGIC:
        return f"file {path} is not a TIFF file (its first bytes are {head!r}); expected a .tif slice"
    return None


def _with_mask_suffix(image_name: str) -> str:
    """``<prefix>_<n>.tif`` -> ``<prefix>_<n>_mask.tif`` (the extension kept as it is)."""
    stem, dot, extension = image_name.rpartition(".")
    return f"{stem}_mask{dot}{extension}"


def _expected_layout(dataset_dir: Path) -> str:
    return (
        f"expected one folder per patient, {dataset_dir}{os.sep}<patient>{os.sep}<patient>_<n>.tif with "
        "<patient>_<n>_mask.tif (the Kaggle lgg-mri-segmentation kaggle_3m layout)"
    )


def _read_patient(
    patient_dir: Path, files: Sequence[str], require_mask: bool
) -> tuple[list[dict[str, Any]], list[str]]:
    """Entries of one patient folder sorted by slice number, and a description of every problem found in it."""
    patient = patient_dir.name
    problems: list[str] = []
    images: dict[int, Path] = {}
    masks: dict[int, Path] = {}
    foreign: list[str] = []
    for name in files:
        match = _SLICE_RE.match(name)
        if match is None:
            problems.append(
                f"file {patient_dir / name} is not named <patient>_<n>.tif or <patient>_<n>_mask.tif; rename or "
                "remove it"
            )
            continue
        if match["prefix"] != patient:
            foreign.append(name)
        n = int(match["n"])
        target = masks if match["mask"] else images
        if n in target:
            kind = "mask" if match["mask"] else "image"
            problems.append(
                f"patient folder {patient_dir} has two {kind} files for slice {n} ({target[n].name}, {name}); "
                "expected one"
            )
            continue
        target[n] = patient_dir / name
    if foreign:
        logger.warning(
            "patient folder %s holds files not named after it (%s, ...); they are read as slices of %s",
            patient_dir, foreign[0], patient,
        )  # fmt: skip
    for n in sorted(set(masks) - set(images)):
        image_name = re.sub(r"_mask(\.tiff?)$", r"\1", masks[n].name, flags=re.IGNORECASE)
        problems.append(f"mask {masks[n]} has no image: expected {patient_dir / image_name}")
    if require_mask:
        for n in sorted(set(images) - set(masks)):
            mask_path = images[n].with_name(_with_mask_suffix(images[n].name))
            problems.append(
                f"image {images[n]} has no mask: expected {mask_path} (use "
                "require_mask=False for unlabelled slices)"
            )
    to_check = [images[n] for n in sorted(images)]
    if require_mask:
        to_check += [masks[n] for n in sorted(masks)]
    for path in to_check:
        problem = _check_tiff(path)
        if problem:
            problems.append(problem)
    if problems:
        return [], problems
    entries = []
    for n in sorted(images):
        entry: dict[str, Any] = {"patient": patient, "slice": n, "image": os.path.abspath(images[n])}
        if require_mask:
            entry["label"] = os.path.abspath(masks[n])
        entries.append(entry)
    return entries, []


def find_lgg_slices(dataset_dir: str | os.PathLike, require_mask: bool = True) -> list[dict[str, Any]]:
    """Read an LGG-layout folder (the demo data or Kaggle's ``kaggle_3m``) into a slice datalist.

    One sub-folder per patient holding ``<patient>_<n>.tif`` images and ``<patient>_<n>_mask.tif`` masks (``.tiff``
    and any letter case work too). Hidden entries and plain files next to the patient folders (``data.csv``,
    ``README.md``, the demo's ``dataset.json``) are ignored; folders without any TIFF file are skipped with a warning.
    Every problem in every patient folder is reported at once.

    Args:
        dataset_dir: the dataset folder.
        require_mask: every image must have its mask (training, validation); if False (inference) masks are not
            required and the entries have no ``"label"`` key. A mask without its image is an error either way.

    Returns:
        Entries ``{"patient": folder name, "slice": n (int), "image": path, "label": mask path}`` (absolute paths,
        str) sorted by patient, then numerically by slice number (2 before 10).

    Raises:
        DatasetError: the folder does not exist or is not a folder; it has no patient folders with TIFF files; an image
            has no mask (with ``require_mask``), a mask has no image, a slice number appears twice, a TIFF file has an
            unexpected name, is empty (0 bytes) or is not a TIFF. The message names the folder or file and the
            expected names.
    """
    root = Path(dataset_dir).expanduser()
    check_folder(root, "dataset folder", _expected_layout(root))

    entries = read_subfolders(root, _is_tiff, lambda folder, files: _read_patient(folder, files, require_mask),
                              ".tif files")
    if not entries:
        hint = ""
        loose = [p.name for p in root.iterdir() if p.is_file() and _is_tiff(p.name)]
        nested = [p for p in visible_subfolders(root) if any(q.is_dir() and _holds_tiff(q) for q in p.iterdir())]
        if loose:
            hint = f"; it holds .tif files directly ({loose[0]}, ...): point dataset_dir at the folder above it"
        elif nested:
            hint = f"; its sub-folder {nested[0]} holds patient folders: point dataset_dir at it"
        raise DatasetError(
            f"dataset folder {root} contains no patient folders with .tif slices{hint}; {_expected_layout(root)}", root
        )
    return entries


def _detect(folder: Path) -> bool:
    """A sub-folder holding ``<x>_<n>_mask.tif`` (among the first few, by name)."""
    for patient_dir in visible_subfolders(folder)[:_LOOKED_AT]:
        for path in patient_dir.iterdir():
            match = _SLICE_RE.match(path.name)
            if match and match["mask"] and not is_hidden(path.name):
                return True
    return False


def _find(src: Path, scratch: Path | None) -> list[Entry]:
    return [
        {"case": f"{e['patient']}_{e['slice']}", "image": e["image"], "label": e["label"], "group": e["patient"]}
        for e in find_lgg_slices(src, require_mask=True)
    ]


def _write_case(entry: Entry, images_dir: Path, labels_dir: Path | None) -> str | None:
    try:
        with Image.open(entry["image"]) as image:
            rgb = np.asarray(pil_to_rgb(image))
    except (OSError, ValueError) as err:
        return f"file {entry['image']} cannot be read as an RGB TIFF ({err})"
    if labels_dir is not None:
        mask = _read_mask(entry["label"])
        if mask.shape != rgb.shape[:2]:
            return f"mask {entry['label']} is {mask.shape} but its image {entry['image']} is {rgb.shape[:2]}"
        save_png(mask.astype(np.uint8), labels_dir / f"{entry['case']}.png")
    save_png(rgb, images_dir / f"{entry['case']}_0000.png")
    return None


LAYOUT = Layout(
    name="lgg",
    title="LGG kaggle_3m",
    description=(
        "Lower-grade glioma MRI slices (Buda et al. 2019): the R, G, B channels of each image are the pre-contrast, "
        "FLAIR and post-contrast sequences; label 1 tumour. One case per slice, named <patient>_<n>; "
        "splits_final.json keeps the slices of one patient together."
    ),
    converted={"channel_names": RGB_CHANNELS, "labels": {"background": 0, "tumour": 1}, "file_ending": ".png"},
    in_place={"channel_names": RGB_CHANNELS, "labels": {"background": 0, "tumour": 255}},
    detect=_detect,
    find=_find,
    write_case=_write_case,
    group_unit="patient",
    group_of_case=lambda case: case.rsplit("_", 1)[0],
)
