"""UW-Madison GI Tract Image Segmentation (Kaggle 2022): run-length masks, slice discovery, case-level splits,
2.5D neighbour stacks, synthetic demo data and the bundle datalist.

Layout (the Kaggle download, and the synthetic demo)::

    dataset_dir/
        train.csv                     columns id, class, segmentation
        train/case<N>/case<N>_day<D>/scans/slice_<k>_<width>_<height>_<spacing x>_<spacing y>.png

* ``id`` is ``case<N>_day<D>_slice_<k>`` (``k`` 4-digit zero-padded), ``class`` one of :data:`CLASSES`, and
  ``segmentation`` a run-length string of ``start length`` pairs: starts 1-indexed, pixels numbered row by row over
  ``height x width`` (C order over ``(H, W)``), empty when the organ is absent from the slice. Every slice has one row
  per class in the Kaggle file; a missing row is read as an empty mask.
* Slices are 16-bit greyscale PNGs; e.g. ``slice_0001_266_266_1.50_1.50.png`` (266 x 266 pixels, 1.5 mm).

Masks are decoded from the CSV **once** into per-slice 3-channel 8-bit PNGs (channel order :data:`CLASSES`, values
0/1; classes may overlap, so this is multi-label, not a label map), written atomically under
``<cache_dir or dataset_dir/.uwmadison_masks>/masks-<hash of train.csv>/<case>/<id>.png``: a changed CSV gets a new
cache folder, so a stale cache is never read. Storing masks as PNGs read by the same reader as the images keeps both
in one orientation.

Loading chain (MONAI; :func:`uwmadison_load_transforms` returns the first three)::

    LoadImaged(keys=["image", "label"], reader="PILReader", image_only=True)
        # image: 16-bit PNG -> float32 (W, H) - MONAI's PIL reader transposes to (W, H), the mask PNG identically;
        # a 2.5D entry (``"image"`` a list of paths, see neighbour_slices) is stacked to (n_slices, W, H)
    EnsureChannelFirstd(keys=["image", "label"])        # image (1 or n_slices, W, H), label (3, W, H)
    ScaleIntensityRangePercentilesd(keys="image", lower=0.0, upper=99.8, b_min=0.0, b_max=1.0, clip=True)
        # per slice (all channels together, so a 2.5D stack keeps its relative intensities): 16-bit values vary by
        # scanner and day (max from a few hundred to ~16000); the 99.8th percentile ignores a few hot pixels
    # then e.g. Resized / SpatialPadd + RandSpatialCropd to the network size (divisible by 16 for UNet 3+, 32 for
    # FCT) and augmentation; predictions: Activations(sigmoid=True), AsDiscrete(threshold=0.5)

Public API: :func:`rle_decode`, :func:`rle_encode`, :func:`masks_to_rle_rows`, :func:`parse_slice_filename`,
:func:`find_uwmadison_slices`, :func:`split_by_case`, :func:`neighbour_slices`, :func:`uwmadison_load_transforms`,
:func:`generate_uwmadison_demo`, :func:`uwmadison_datalist`. Dataset problems raise :class:`DatasetError` naming the
file (and CSV line) and the problem.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import math
import os
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .common import (
    MAX_LISTED_PROBLEMS,
    atomic_folder,
    check_folder,
    check_int,
    check_nonempty_file,
    datalist_for_role,
    demo_marker,
    is_demo,
    prepare_demo_dir,
    raise_problems,
    remove_stale_partials,
    split_groups,
    write_file_atomic,
    write_text_atomic,
)
from .errors import DatasetError

__all__ = [
    "CLASSES",
    "CSV_COLUMNS",
    "find_uwmadison_slices",
    "generate_uwmadison_demo",
    "masks_to_rle_rows",
    "neighbour_slices",
    "parse_slice_filename",
    "rle_decode",
    "rle_encode",
    "split_by_case",
    "uwmadison_datalist",
    "uwmadison_load_transforms",
]

logger = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = ("large_bowel", "small_bowel", "stomach")
"""Organ classes, in the channel order of the cached masks and of the network outputs."""

CSV_COLUMNS: tuple[str, ...] = ("id", "class", "segmentation")
"""Columns ``train.csv`` must have."""

_CSV_NAME = "train.csv"
_IMAGE_SUBDIR = "train"
_DEFAULT_CACHE = ".uwmadison_masks"
_CACHE_VERSION = "v1"
_MAX_LISTED = MAX_LISTED_PROBLEMS

_SLICE_RE = re.compile(r"^slice_(\d+)_(\d+)_(\d+)_(\d+(?:\.\d+)?)_(\d+(?:\.\d+)?)\.png$", re.IGNORECASE)
_CASE_RE = re.compile(r"^case(\d+)$")
_DAY_RE = re.compile(r"^case(\d+)_day(\d+)$")


# ----------------------------------------------------------------------------------------------------------------------
# Run-length encoding
# ----------------------------------------------------------------------------------------------------------------------


def rle_decode(rle: str | None, shape: Sequence[int]) -> np.ndarray:
    """Decode a Kaggle run-length string into a binary mask.

    Args:
        rle: ``"start length start length ..."``, starts 1-indexed over the pixels of ``shape`` numbered row by row
            (C order); ``""``, whitespace or ``None`` (a missing CSV cell) mean an empty mask. Runs may come in any
            order and may overlap (their union is taken).
        shape: ``(height, width)``.

    Returns:
        ``uint8`` array of ``shape`` with values 0 and 1.

    Raises:
        ValueError: an odd number of values, a value that is not an integer, a start below 1, a length below 1, or a
            run past the last pixel (``start - 1 + length > height * width``).
    """
    height, width = (int(n) for n in shape)
    if height < 1 or width < 1:
        raise ValueError(f"mask shape must be two positive sizes (height, width), got {tuple(shape)}")
    n_pixels = height * width
    tokens = [] if rle is None else str(rle).split()
    if not tokens:
        return np.zeros((height, width), dtype=np.uint8)
    if len(tokens) % 2:
        raise ValueError(
            f"run-length string has an odd number of values ({len(tokens)}); expected 'start length' pairs"
        )
    try:
        values = np.array([int(t) for t in tokens], dtype=np.int64)
    except ValueError:
        bad = next(t for t in tokens if not t.lstrip("+-").isdigit())
        raise ValueError(f"run-length string has a non-integer value {bad!r}; expected 'start length' pairs") from None
    starts, lengths = values[0::2], values[1::2]
    if starts.min() < 1:
        raise ValueError(f"run-length start {int(starts.min())} is below 1; starts are 1-indexed")
    if lengths.min() < 1:
        raise ValueError(f"run-length length {int(lengths.min())} is below 1")
    ends = starts - 1 + lengths  # exclusive, 0-indexed
    if ends.max() > n_pixels:
        i = int(np.argmax(ends))
        raise ValueError(
            f"run {int(starts[i])} {int(lengths[i])} ends at pixel {int(ends[i])}, past the end of the "
            f"{height} x {width} image ({n_pixels} pixels)"
        )
    edges = np.zeros(n_pixels + 1, dtype=np.int64)
    np.add.at(edges, starts - 1, 1)
    np.add.at(edges, ends, -1)
    return (np.cumsum(edges[:-1]) > 0).astype(np.uint8).reshape(height, width)


def rle_encode(mask: np.ndarray) -> str:
    """Encode a 2D mask (nonzero = foreground) as a Kaggle run-length string; ``""`` for an empty mask.

    Pixels are numbered row by row (C order over ``(height, width)``), starts 1-indexed, runs sorted and maximal;
    ``rle_decode(rle_encode(m), m.shape) == (m != 0)``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"rle_encode needs a 2D (height, width) mask, got shape {mask.shape}")
    flat = np.concatenate([[False], mask.ravel(order="C") != 0, [False]])
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # 1-indexed run starts and exclusive run ends, alternating
    starts, stops = changes[0::2], changes[1::2]
    return " ".join(f"{s} {n}" for s, n in zip(starts.tolist(), (stops - starts).tolist()))


def masks_to_rle_rows(
    slice_id: str, mask: np.ndarray, classes: Sequence[str] = CLASSES, spatial_order: str = "hw"
) -> list[tuple[str, str, str]]:
    """Rows ``(id, class, rle)`` of a submission-style CSV for one slice.

    Args:
        slice_id: the slice id, e.g. ``case123_day20_slice_0001``.
        mask: ``(len(classes), H, W)`` binary masks (any dtype; nonzero = foreground), e.g. a thresholded prediction.
        classes: class of each channel.
        spatial_order: ``"hw"`` if ``mask`` is ``(C, height, width)`` (numpy / PIL order), ``"wh"`` if it is
            ``(C, width, height)`` (the order of MONAI's ``PILReader``, i.e. a network output on loaded slices).
    """
    mask = np.asarray(mask)
    if mask.ndim != 3 or mask.shape[0] != len(classes):
        raise ValueError(f"mask must be (n_classes={len(classes)}, H, W), got shape {mask.shape}")
    if spatial_order not in ("hw", "wh"):
        raise ValueError(f"spatial_order must be 'hw' or 'wh', got {spatial_order!r}")
    if spatial_order == "wh":
        mask = np.swapaxes(mask, 1, 2)
    return [(slice_id, name, rle_encode(mask[c])) for c, name in enumerate(classes)]


# ----------------------------------------------------------------------------------------------------------------------
# File names
# ----------------------------------------------------------------------------------------------------------------------


def parse_slice_filename(path: str | os.PathLike) -> dict[str, Any]:
    """Slice number, size and spacing from a slice file name.

    ``slice_0001_266_266_1.50_1.50.png`` -> ``{"slice": 1, "width": 266, "height": 266, "spacing_x": 1.5,
    "spacing_y": 1.5}`` (``spacing_x`` along the width). Only the base name is looked at.

    Raises:
        ValueError: the name is not ``slice_<k>_<width>_<height>_<spacing x>_<spacing y>.png``.
    """
    name = os.path.basename(os.fspath(path))
    match = _SLICE_RE.match(name)
    if match is None:
        raise ValueError(
            f"slice file name {name!r} is not slice_<k>_<width>_<height>_<spacing x>_<spacing y>.png "
            "(e.g. slice_0001_266_266_1.50_1.50.png)"
        )
    k, width, height, sx, sy = match.groups()
    return {"slice": int(k), "width": int(width), "height": int(height), "spacing_x": float(sx), "spacing_y": float(sy)}


def _slice_id(case: int, day: int, k: int) -> str:
    return f"case{case}_day{day}_slice_{k:04d}"


def _write_png_atomic(path: Path, array: np.ndarray) -> None:
    write_file_atomic(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))


# ----------------------------------------------------------------------------------------------------------------------
# Reading a dataset folder
# ----------------------------------------------------------------------------------------------------------------------


def _layout(root: Path) -> str:
    return (
        f"expected {root / _CSV_NAME} (columns id, class, segmentation) and slices at "
        f"{root / _IMAGE_SUBDIR}/case<N>/case<N>_day<D>/scans/slice_<k>_<width>_<height>_<sx>_<sy>.png"
    )


def _scan_images(root: Path) -> dict[str, dict[str, Any]]:
    """All slice files under ``root/train``, keyed by id; DatasetError listing every bad folder or file."""
    image_root = root / _IMAGE_SUBDIR
    if not image_root.is_dir():
        raise DatasetError(f"slice folder {image_root} does not exist or is not a folder; {_layout(root)}", image_root)
    slices: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for case_dir in sorted(p for p in image_root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        case_match = _CASE_RE.match(case_dir.name)
        if case_match is None:
            problems.append(f"folder {case_dir} is not named case<N>; expected one folder per case")
            continue
        case = int(case_match.group(1))
        for day_dir in sorted(p for p in case_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            day_match = _DAY_RE.match(day_dir.name)
            if day_match is None or int(day_match.group(1)) != case:
                problems.append(f"folder {day_dir} is not named {case_dir.name}_day<D>")
                continue
            day = int(day_match.group(2))
            scans = day_dir / "scans"
            if not scans.is_dir():
                problems.append(f"folder {day_dir} has no scans/ folder; expected {scans}/slice_*.png")
                continue
            for entry in sorted(os.scandir(scans), key=lambda e: e.name):
                if not entry.is_file() or not entry.name.lower().endswith(".png") or entry.name.startswith("."):
                    continue
                path = Path(entry.path)
                try:
                    info = parse_slice_filename(entry.name)
                except ValueError as err:
                    problems.append(f"file {path}: {err}")
                    continue
                problem = check_nonempty_file(path, "a 16-bit PNG slice")
                if problem is not None:
                    problems.append(problem)
                    continue
                slice_id = _slice_id(case, day, info["slice"])
                if slice_id in slices:
                    first = slices[slice_id]["image"]
                    problems.append(f"file {path} repeats slice {info['slice']} of {day_dir} ({first})")
                    continue
                slices[slice_id] = {
                    "id": slice_id,
                    "case": case_dir.name,
                    "day": day,
                    "slice": info["slice"],
                    "image": os.path.abspath(path),
                    "spacing": (info["spacing_x"], info["spacing_y"]),
                    "height": info["height"],
                    "width": info["width"],
                }
    raise_problems(image_root, problems, what="slice folder")
    if not slices:
        raise DatasetError(f"slice folder {image_root} holds no slice PNGs; {_layout(root)}", image_root)
    return slices


def _read_csv(csv_path: Path) -> dict[str, dict[str, tuple[int, str]]]:
    """``{id: {class: (line number, rle)}}`` from ``train.csv``; DatasetError for a bad header, class or duplicate."""
    rows: dict[str, dict[str, tuple[int, str]]] = {}
    problems: list[str] = []
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in CSV_COLUMNS if c not in columns]
            if missing:
                raise DatasetError(
                    f"label file {csv_path} lacks the column(s) {', '.join(missing)}; it has "
                    f"{', '.join(columns) or 'no header'}; expected the columns {', '.join(CSV_COLUMNS)}",
                    csv_path,
                )
            reader.fieldnames = columns
            for row in reader:
                line = reader.line_num
                slice_id = (row.get("id") or "").strip()
                cls = (row.get("class") or "").strip()
                rle = row.get("segmentation") or ""
                if not slice_id:
                    problems.append(f"line {line}: empty id")
                    continue
                if cls not in CLASSES:
                    expected = ", ".join(CLASSES)
                    problems.append(f"line {line} ({slice_id}): unknown class {cls!r}; expected one of {expected}")
                    continue
                per_class = rows.setdefault(slice_id, {})
                if cls in per_class:
                    first_line = per_class[cls][0]
                    problems.append(f"line {line}: second row for {slice_id} / {cls} (first on line {first_line})")
                    continue
                per_class[cls] = (line, rle)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise DatasetError(
            f"label file {csv_path} cannot be read as CSV ({err}); {_layout(csv_path.parent)}", csv_path
        ) from err
    raise_problems(csv_path, problems, what="label file")
    return rows


def _csv_fingerprint(csv_path: Path) -> str:
    digest = hashlib.sha256(_CACHE_VERSION.encode())
    with open(csv_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def _mask_cache_dir(root: Path, csv_path: Path, cache_dir: str | os.PathLike | None) -> Path:
    base = root / _DEFAULT_CACHE if cache_dir is None else Path(cache_dir).expanduser()
    folder = base / f"masks-{_csv_fingerprint(csv_path)}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DatasetError(
            f"cannot create the mask cache folder {folder} ({err}); pass a writable cache_dir (e.g. when the dataset "
            "is on a read-only mount)",
            folder,
        ) from err
    return folder


def _write_mask(item: dict[str, Any], rows: dict[str, tuple[int, str]], csv_path: Path, path: Path) -> str | None:
    """Decode the three RLEs of one slice into ``path`` (3-channel uint8 PNG); returns a problem or ``None``."""
    height, width = item["height"], item["width"]
    try:
        with Image.open(item["image"]) as image:
            size = image.size
    except (OSError, ValueError) as err:
        return f"file {item['image']} cannot be read as a PNG ({err})"
    if size != (width, height):
        return (
            f"file {item['image']} is {size[0]} x {size[1]} pixels (width x height) but its name says "
            f"{width} x {height}; the masks would not line up"
        )
    mask = np.zeros((height, width, len(CLASSES)), dtype=np.uint8)
    for c, cls in enumerate(CLASSES):
        line, rle = rows.get(cls, (0, ""))
        try:
            mask[..., c] = rle_decode(rle, (height, width))
        except ValueError as err:
            return f"{csv_path} line {line} ({item['id']}, {cls}): malformed segmentation: {err}"
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_png_atomic(path, mask)
    return None


def find_uwmadison_slices(
    dataset_dir: str | os.PathLike,
    require_labels: bool = True,
    cache_dir: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
    """Read a UW-Madison GI tract folder (the Kaggle download or the demo) into a datalist.

    With ``require_labels`` the CSV is decoded once into per-slice mask PNGs (see the module docstring); later calls
    only check that the cached files exist. Slices without any CSV row are left out (a warning says how many) - a
    ``train.csv`` cut down to a few cases is a valid way to make a small experiment.

    Args:
        dataset_dir: the folder holding ``train.csv`` and ``train/``.
        require_labels: read ``train.csv`` and add ``"label"``; if False, every slice is listed without a label and
            the CSV is not read (inference).
        cache_dir: where the decoded masks go; default ``dataset_dir/.uwmadison_masks``.

    Returns:
        Entries sorted by case number, day and slice: ``{"id", "case": "case<N>", "day": int, "slice": int,
        "image": absolute path, "label": absolute path of the 3-channel mask PNG (with labels), "spacing": (sx, sy)
        in mm, "height", "width"}``.

    Raises:
        DatasetError: missing folder or CSV; CSV without the columns id/class/segmentation; an unknown class or a
            repeated (id, class) row; a malformed RLE (odd count, non-integer, run past the end of the image), named
            by CSV line; an id in the CSV without an image file; a zero-byte, unreadable or mis-sized PNG; a badly
            named folder or slice file.
    """
    root = Path(dataset_dir).expanduser()
    check_folder(root, "dataset folder", _layout(root))
    csv_path = root / _CSV_NAME
    if require_labels and not csv_path.is_file():
        raise DatasetError(
            f"label file {csv_path} does not exist; {_layout(root)} (pass require_labels=False, or role 'infer', for "
            "unlabelled slices)",
            csv_path,
        )
    slices = _scan_images(root)
    items = sorted(slices.values(), key=lambda d: (int(d["case"][4:]), d["day"], d["slice"]))
    if not require_labels:
        return items

    rows = _read_csv(csv_path)
    orphans = sorted(set(rows) - set(slices))
    if orphans:
        lines = [f"{i} (line {min(line for line, _ in rows[i].values())})" for i in orphans[:_MAX_LISTED]]
        more = f" and {len(orphans) - _MAX_LISTED} more" if len(orphans) > _MAX_LISTED else ""
        raise DatasetError(
            f"label file {csv_path} lists {len(orphans)} id(s) with no image file under {root / _IMAGE_SUBDIR}: "
            f"{', '.join(lines)}{more}; expected train/<case>/<case>_<day>/scans/slice_<k>_*.png for each",
            csv_path,
        )
    labelled = [item for item in items if item["id"] in rows]
    if len(labelled) < len(items):
        logger.warning(
            "%d of %d slices in %s have no row in %s and are left out", len(items) - len(labelled), len(items),
            root / _IMAGE_SUBDIR, csv_path,
        )  # fmt: skip
    if not labelled:
        raise DatasetError(f"label file {csv_path} has no rows for any slice under {root / _IMAGE_SUBDIR}", csv_path)

    cache = _mask_cache_dir(root, csv_path, cache_dir)
    problems: list[str] = []
    written = 0
    for item in labelled:
        path = cache / item["case"] / f"{item['id']}.png"
        if not path.is_file():
            problem = _write_mask(item, rows[item["id"]], csv_path, path)
            if problem:
                problems.append(problem)
                continue
            written += 1
        item["label"] = os.path.abspath(path)
    raise_problems(csv_path, problems, what="label file")
    if written:
        logger.info("decoded %d slice masks from %s into %s", written, csv_path, cache)
    return labelled


# ----------------------------------------------------------------------------------------------------------------------
# Splits, 2.5D stacks and transforms
# ----------------------------------------------------------------------------------------------------------------------


def split_by_case(
    items: Sequence[dict[str, Any]],
    val_fraction: float = 0.2,
    seed: int = 0,
    num_folds: int | None = None,
    fold: int = 0,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split slices into training and validation by **case** (all days and slices of a case on one side).

    The case names are split like :func:`custom_nets.data.brats.split_cases` does (sorted, shuffled with ``seed``,
    then a ``val_fraction`` split or fold ``fold`` of ``num_folds``; :func:`custom_nets.data.common.split_groups`);
    slices keep their input order.

    Raises:
        DatasetError: fewer than 2 cases.
        ValueError: ``val_fraction``, ``num_folds`` or ``fold`` out of range, or ``num_folds`` / ``fold`` not integers.
    """
    train, val = split_groups(
        items, lambda item: str(item["case"]), val_fraction, seed, num_folds, fold, unit="case", item_unit="slice"
    )
    return [dict(item) for item in train], [dict(item) for item in val]


def _center_path(item: dict[str, Any]) -> str:
    """The entry's own slice path (also after :func:`neighbour_slices` has replaced ``"image"`` by a list)."""
    return item.get("center_image", item["image"])


def neighbour_slices(items: Sequence[dict[str, Any]], offsets: Sequence[int] = (-2, 0, 2)) -> list[dict[str, Any]]:
    """2.5D inputs: replace every entry's ``"image"`` by the list of its neighbours' paths at ``offsets``.

    Neighbours are taken within the same case and day, by position in that day's slice order (sorted by slice
    number), clamped at both ends (the first slice repeats itself for negative offsets). ``LoadImaged`` stacks a
    list of paths as channels, so ``offsets=(-2, 0, 2)`` gives a 3-channel image (channel order = ``offsets``). The
    original path is kept as ``"center_image"``; other keys (``"label"`` of the centre slice, ``"id"``, ...) are
    unchanged. Use :func:`neighbour_slices` on the full list of a day (e.g. before any filtering of slices).
    """
    offsets = tuple(int(o) for o in offsets)
    if not offsets:
        raise ValueError("offsets must hold at least one slice offset, e.g. (-2, 0, 2)")
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for item in items:
        groups.setdefault((str(item["case"]), item["day"]), []).append(item)
    position: dict[int, tuple[list[dict[str, Any]], int]] = {}
    for group in groups.values():
        group.sort(key=lambda d: d["slice"])
        for i, item in enumerate(group):
            position[id(item)] = (group, i)
    out = []
    for item in items:
        group, i = position[id(item)]
        last = len(group) - 1
        entry = dict(item)
        entry["center_image"] = _center_path(item)
        entry["image"] = [_center_path(group[min(max(i + o, 0), last)]) for o in offsets]
        out.append(entry)
    return out


def uwmadison_load_transforms(
    image_key: str = "image",
    label_key: str | None = "label",
    lower_percentile: float = 0.0,
    upper_percentile: float = 99.8,
) -> list:
    """The MONAI transforms that load a slice (or 2.5D stack) and its mask and scale the 16-bit intensities.

    ``LoadImaged(PILReader)`` -> ``EnsureChannelFirstd`` -> ``ScaleIntensityRangePercentilesd(lower, upper -> 0, 1,
    clip)``: image ``(n_slices, W, H)`` float32 in ``[0, 1]``, label ``(3, W, H)`` float32 0/1 (see the module
    docstring for the axis order). Add resizing/cropping and augmentation after these.
    """
    from monai.transforms import EnsureChannelFirstd, LoadImaged, ScaleIntensityRangePercentilesd

    keys = [image_key] if label_key is None else [image_key, label_key]
    return [
        LoadImaged(keys=keys, reader="PILReader", image_only=True),
        EnsureChannelFirstd(keys=keys),
        ScaleIntensityRangePercentilesd(
            keys=image_key, lower=lower_percentile, upper=upper_percentile, b_min=0.0, b_max=1.0, clip=True,
            channel_wise=False,
        ),  # fmt: skip
    ]


# ----------------------------------------------------------------------------------------------------------------------
# Synthetic demo data
# ----------------------------------------------------------------------------------------------------------------------

_DEMO_GENERATOR_VERSION = 1
_DEMO_GENERATOR = "custom_nets.data.uwmadison.generate_uwmadison_demo"
_DEMO_FIRST_CASE = 101
_MIN_DEMO_SIZE = 32

# Slice-position intervals (0 = first slice of a day, 1 = last) in which each organ is present, CLASSES order.
_PRESENCE = ((0.10, 0.95), (0.30, 1.01), (0.05, 0.62))


def _demo_case_number(index: int) -> int:
    return _DEMO_FIRST_CASE + index


def _demo_day_numbers(days_per_case: int) -> list[int]:
    return [7 * j for j in range(days_per_case)]


def _demo_sizes(size: Sequence[int] | Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """``size`` as a list of ``(height, width)`` pairs (case ``i`` uses entry ``i % len``)."""
    if len(size) == 2 and all(isinstance(n, (int, np.integer)) for n in size):
        pairs = [tuple(size)]
    else:
        pairs = [tuple(s) for s in size]  # type: ignore[arg-type]
    out = []
    for pair in pairs:
        if len(pair) != 2 or any(int(n) != n or int(n) < _MIN_DEMO_SIZE for n in pair):
            raise ValueError(f"size must be (height, width) pairs of integers >= {_MIN_DEMO_SIZE}, got {size!r}")
        out.append((int(pair[0]), int(pair[1])))
    if not out:
        raise ValueError(f"size must hold at least one (height, width) pair, got {size!r}")
    return out


def _demo_spacing(height: int, width: int) -> tuple[float, float]:
    return (1.5, 1.5) if height == width else (1.63, 1.63)


def _smooth_field(
    rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, wavelength: float, n_waves: int = 4
) -> np.ndarray:
    """Sum of random plane waves (about unit RMS): smooth texture / bias fields, float32 of ``yy``'s shape."""
    field = np.zeros(yy.shape, dtype=np.float32)
    for _ in range(n_waves):
        angle = rng.uniform(0.0, 2.0 * np.pi)
        k = 2.0 * np.pi / (wavelength * rng.uniform(0.7, 1.4))
        phase = rng.uniform(0.0, 2.0 * np.pi)
        field += np.cos(k * (np.cos(angle) * xx + np.sin(angle) * yy) + phase).astype(np.float32)
    return field * np.float32(math.sqrt(2.0 / n_waves))


def _profile(t: float, interval: tuple[float, float]) -> float:
    """Organ size factor at slice position ``t``: 0 outside ``interval``, 0.45 .. 1 inside (largest mid-way)."""
    lo, hi = interval
    if not lo < t < hi:
        return 0.0
    return 0.45 + 0.55 * math.sin(math.pi * (t - lo) / (hi - lo))


def _demo_day(
    rng: np.random.Generator, height: int, width: int, n_slices: int, case_params: dict[str, float]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(uint16 image (H, W), uint8 masks (3, H, W))`` for every slice of one day."""
    yy, xx = np.meshgrid(np.arange(height, dtype=np.float32), np.arange(width, dtype=np.float32), indexing="ij")
    scale = float(min(height, width))
    cy = height / 2.0 + rng.uniform(-0.03, 0.03) * height  # the patient lies a little differently every day
    cx = width / 2.0 + rng.uniform(-0.03, 0.03) * width
    gain = rng.uniform(0.5, 1.8)  # scanner gain of the day: 16-bit ranges differ, percentile scaling copes
    body_ry, body_rx = 0.42 * height, 0.46 * width
    ring_r = case_params["ring"] * scale
    ring_w = case_params["ring_width"] * scale
    bias = np.exp(0.12 * _smooth_field(rng, yy, xx, 2.5 * scale, 3))
    texture = 1.0 + 0.07 * _smooth_field(rng, yy, xx, 0.12 * scale, 6)
    # small-bowel blobs: four around the middle, the last one on the large-bowel ring (lower left), so they overlap
    blob_angles = np.append(rng.uniform(0.0, 2.0 * np.pi, size=4), 3.0 * np.pi / 4.0)
    blob_dist = np.append(rng.uniform(0.0, 0.55, size=4) * ring_r, ring_r)
    stomach_angle = -np.pi / 4 + rng.uniform(-0.25, 0.25)  # upper right, on the large-bowel ring

    dy, dx = yy - cy, xx - cx
    radius = np.hypot(dy, dx)
    angle = np.arctan2(dy, dx)  # image y points down: pi/2 is straight down
    body = (dy / body_ry) ** 2 + (dx / body_rx) ** 2 < 1.0
    slices = []
    for k in range(n_slices):
        t = k / (n_slices - 1) if n_slices > 1 else 0.5
        masks = np.zeros((len(CLASSES), height, width), dtype=bool)
        # large bowel: a thick ring around the abdomen, open at the bottom, its width following the slice profile
        f_lb = _profile(t, _PRESENCE[0])
        if f_lb > 0:
            gap = np.abs(np.angle(np.exp(1j * (angle - np.pi / 2)))) < 0.55
            masks[0] = (np.abs(radius - ring_r) < 0.5 * ring_w * f_lb + 1.0) & ~gap
        # small bowel: a cluster of blobs in the middle, one of them on the large-bowel ring
        f_sb = _profile(t, _PRESENCE[1])
        if f_sb > 0:
            blob_r = case_params["blob"] * scale * f_sb
            for a, d in zip(blob_angles.tolist(), blob_dist.tolist()):
                by, bx = cy + d * math.sin(a), cx + d * math.cos(a)
                masks[1] |= (yy - by) ** 2 + (xx - bx) ** 2 < blob_r**2
        # stomach: an ellipse in the upper right, centred on the ring (overlaps the large bowel)
        f_st = _profile(t, _PRESENCE[2])
        if f_st > 0:
            sy = cy + ring_r * math.sin(stomach_angle)
            sx = cx + ring_r * math.cos(stomach_angle)
            ry, rx = case_params["stomach"] * scale * f_st, 0.8 * case_params["stomach"] * scale * f_st
            masks[2] = ((yy - sy) / ry) ** 2 + ((xx - sx) / rx) ** 2 < 1.0
        masks &= body[None]

        image = np.where(body, np.float32(700.0), np.float32(0.0)) * texture
        image[masks[0]] = 1900.0 * texture[masks[0]]
        image[masks[2]] = 2600.0 * texture[masks[2]]  # stomach fluid: brightest
        image[masks[1]] = 1300.0 * texture[masks[1]]
        image = image * bias * gain + rng.normal(0.0, 25.0, size=image.shape).astype(np.float32)
        image = np.where(body, image, rng.uniform(0.0, 8.0, size=image.shape))
        slices.append((np.clip(np.rint(image), 0, 65535).astype(np.uint16), masks.astype(np.uint8)))
    return slices


def _demo_case(
    seed: int, index: int, days_per_case: int, slices_per_day: int, size: tuple[int, int]
) -> dict[int, list[tuple[np.ndarray, np.ndarray]]]:
    """Slices of every day of demo case ``index``; deterministic in ``(seed, index, days, slices, size)``."""
    case_rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 0x75776D]))
    params = {
        "ring": case_rng.uniform(0.27, 0.31),
        "ring_width": case_rng.uniform(0.06, 0.08),
        "blob": case_rng.uniform(0.045, 0.06),
        "stomach": case_rng.uniform(0.10, 0.13),
    }
    days = {}
    for j, day in enumerate(_demo_day_numbers(days_per_case)):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), j, 0x646179]))
        days[day] = _demo_day(rng, size[0], size[1], slices_per_day, params)
    return days


def _demo_slice_name(k: int, height: int, width: int) -> str:
    sx, sy = _demo_spacing(height, width)
    return f"slice_{k:04d}_{width}_{height}_{sx:.2f}_{sy:.2f}.png"


def _demo_case_complete(case_dir: Path, days_per_case: int, slices_per_day: int) -> bool:
    for day in _demo_day_numbers(days_per_case):
        scans = case_dir / f"{case_dir.name}_day{day}" / "scans"
        try:
            files = [e for e in os.scandir(scans) if e.name.endswith(".png") and e.stat().st_size > 0]
        except OSError:
            return False
        if len(files) != slices_per_day:
            return False
    return True


_README_TEXT = """SYNTHETIC UW-Madison GI tract layout demo data (not real MRI, not patient data)

Generated by custom_nets.data.uwmadison.generate_uwmadison_demo; parameters in dataset.json.
train/case<N>/case<N>_day<D>/scans/slice_<k>_<width>_<height>_<sx>_<sy>.png are 16-bit greyscale slices; train.csv
holds one row per slice and organ (large_bowel, small_bowel, stomach) with a run-length mask (empty when absent).
The large bowel is a thick ring open at the bottom, the small bowel a cluster of blobs (one on the ring), the stomach
an ellipse on the ring (upper right): masks overlap, and every day's first slice is empty.
Delete this folder to regenerate it.
"""


def generate_uwmadison_demo(
    out_dir: str | os.PathLike,
    num_cases: int = 4,
    days_per_case: int = 2,
    slices_per_day: int = 8,
    size: Sequence[int] | Sequence[Sequence[int]] = ((128, 128), (112, 144)),
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Generate (or reuse) a synthetic dataset in the UW-Madison layout: ``train.csv`` + 16-bit PNG slices.

    Every day of every case is a short stack of abdominal-looking slices: a body ellipse with texture, a smooth bias
    field, a per-day scanner gain (so 16-bit ranges differ) and noise, holding three organ-like, overlapping shapes
    whose presence depends on the slice position: stomach in the upper slices, large bowel in most, small bowel in
    the lower ones; the first slice of every day has none (with 8 slices: empty, stomach + large bowel, all three,
    large + small bowel, small bowel alone all occur).

    Deterministic: case ``i`` depends only on ``(seed, i, days_per_case, slices_per_day, its size)``. Each case folder
    is written under a temporary name and renamed into place, ``train.csv`` (written atomically) last, so an
    interrupted run is completed by the next call; a complete folder with the same parameters is reused as is.

    Args:
        out_dir: folder to write into (created if needed).
        num_cases: cases ``case101``, ``case102``, ...
        days_per_case: days per case (``day0``, ``day7``, ...).
        slices_per_day: slices per day (``slice_0001`` ...), at least 2.
        size: ``(height, width)`` of every slice, or a sequence of such pairs used case by case (the default mixes a
            square and a non-square size, as the real data does); each at least 32.
        seed: random seed.
        overwrite: regenerate even if the folder holds demo data (the demo's ``train/``, ``train.csv`` and marker are
            replaced; nothing else is touched).

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: invalid arguments.
        DatasetError: ``out_dir`` is a file, or holds other data / demo data made with other parameters (without
            ``overwrite``).
    """
    num_cases = check_int("num_cases", num_cases, 1)
    days_per_case = check_int("days_per_case", days_per_case, 1)
    slices_per_day = check_int("slices_per_day", slices_per_day, 2)
    seed = check_int("seed", seed, 0)
    sizes = _demo_sizes(size)
    out = Path(out_dir).expanduser()
    parameters = {
        "generator_version": _DEMO_GENERATOR_VERSION,
        "num_cases": num_cases,
        "days_per_case": days_per_case,
        "slices_per_day": slices_per_day,
        "size": [list(s) for s in sizes],
        "seed": seed,
    }
    csv_path, image_root = out / _CSV_NAME, out / _IMAGE_SUBDIR
    cases = [_demo_case_number(i) for i in range(num_cases)]

    def case_complete(case: int) -> bool:
        return _demo_case_complete(image_root / f"case{case}", days_per_case, slices_per_day)

    marker = demo_marker(
        "custom_nets synthetic UW-Madison GI tract demo",
        "SYNTHETIC demo data, not real MRI and not patient data; it exercises the pipeline and says nothing about "
        "accuracy on real scans.",
        parameters,
        generator=_DEMO_GENERATOR,
        classes=list(CLASSES),
        cases=[f"case{c}" for c in cases],
    )
    reuse = prepare_demo_dir(
        out, parameters, overwrite,
        generator=_DEMO_GENERATOR,
        marker=marker,
        readme=_README_TEXT,
        # train.csv or train/ without a marker: it may be a real dataset
        existing=lambda: [path for path in (csv_path, image_root) if path.exists()],
        is_complete=lambda: csv_path.is_file() and all(case_complete(case) for case in cases),
        what="UW-Madison demo data",
        check_generator=True,
        check_marker_on_overwrite=True,
    )  # fmt: skip
    if reuse:
        logger.debug("reusing the UW-Madison demo data in %s", out)
        return out
    if overwrite:
        shutil.rmtree(out / _DEFAULT_CACHE, ignore_errors=True)

    start = time.perf_counter()
    image_root.mkdir(exist_ok=True)
    remove_stale_partials(image_root)
    rows: list[tuple[str, str, str]] = []
    for index, case in enumerate(cases):
        height, width = sizes[index % len(sizes)]
        days = _demo_case(seed, index, days_per_case, slices_per_day, (height, width))
        case_dir = image_root / f"case{case}"
        if not case_complete(case):
            if case_dir.exists():
                shutil.rmtree(case_dir)
            with atomic_folder(case_dir) as tmp:
                for day, slices in days.items():
                    scans = tmp / f"case{case}_day{day}" / "scans"
                    scans.mkdir(parents=True)
                    for k, (image, _) in enumerate(slices, start=1):
                        Image.fromarray(image).save(scans / _demo_slice_name(k, height, width), format="PNG")
        for day, slices in days.items():
            for k, (_, masks) in enumerate(slices, start=1):
                rows += masks_to_rle_rows(_slice_id(case, day, k), masks)

    lines = [",".join(CSV_COLUMNS)] + [f"{i},{c},{r}" for i, c, r in rows]
    write_text_atomic(csv_path, "\n".join(lines) + "\n")
    logger.info("generated the UW-Madison demo data in %s (%.1f s)", out, time.perf_counter() - start)
    return out


# ----------------------------------------------------------------------------------------------------------------------
# Bundle datalists
# ----------------------------------------------------------------------------------------------------------------------

_is_demo = is_demo  # imported by custom_nets.data.uwmadison_bundle; new code should use common.is_demo


def uwmadison_datalist(
    dataset_dir: str | os.PathLike | None,
    demo_dir: str | os.PathLike | None,
    role: str = "train",
    offsets: Sequence[int] | None = None,
    cache_dir: str | os.PathLike | None = None,
    **split_kwargs: Any,
) -> list[dict[str, Any]]:
    """The datalist a bundle config asks for.

    ``dataset_dir`` ``"demo"`` (any letter case), ``""`` or ``None`` means the synthetic demo data, generated into
    ``demo_dir`` on first use (default parameters) and reused afterwards. Any other value is a real dataset folder
    whose errors propagate: it never falls back to the demo.

    Args:
        dataset_dir: UW-Madison folder (``train.csv`` + ``train/``), or ``"demo"``.
        demo_dir: where the demo data lives (needed only for the demo).
        role: ``"train"`` / ``"val"``: that side of :func:`split_by_case`; ``"all"``: every labelled slice;
            ``"infer"``: every slice, no labels.
        offsets: 2.5D slice offsets (e.g. ``(-2, 0, 2)``) applied with :func:`neighbour_slices`; ``None`` for 2D.
        cache_dir: where decoded masks are cached (default inside the dataset folder).
        **split_kwargs: ``val_fraction``, ``seed``, ``num_folds``, ``fold`` for :func:`split_by_case`.
    """

    def find(folder: Path, labelled: bool) -> list[dict[str, Any]]:
        items = find_uwmadison_slices(folder, require_labels=labelled, cache_dir=cache_dir)
        return items if offsets is None else neighbour_slices(items, offsets)

    return datalist_for_role(
        dataset_dir, demo_dir, role,
        find=find,
        generate=generate_uwmadison_demo,
        split=split_by_case,
        split_kwargs=split_kwargs,
        what="synthetic UW-Madison demo data",
        log=logger,
    )  # fmt: skip
