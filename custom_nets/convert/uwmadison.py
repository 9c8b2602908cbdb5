"""UW-Madison GI tract (Kaggle 2022: ``train.csv`` run-length masks + 16-bit PNG slices) to the canonical layout.

Every labelled slice is a 2.5D case named by its competition id (``case123_day20_slice_0066``): three channels, the
slices at offsets -2, 0, +2 within its case-day (clamped at the ends,
:func:`neighbour_slices`, what the 2.5D GI bundles feed their networks), each the original
16-bit PNG hard-linked (or copied) as ``_0000.png``, ``_0001.png``, ``_0002.png``. The three run-length masks become
one label map, 1 large bowel, 2 small bowel, 3 stomach; where organs overlap the later one wins (stomach over small
bowel over large bowel), the rule of :func:`custom_nets.transforms.multilabel.multilabel_to_label_map` that today's GI
inference applies to its outputs. ``splits_final.json`` keeps all days of a case in one fold. Discovery and
run-length decoding are :func:`find_uwmadison_slices`; :func:`uwmadison_datalist` is the competition-layout datalist
of the GI bundles' ``evaluate_uwmadison.json``.

The masks cannot be read in place, so :func:`custom_nets.convert.describe` converts such a folder once into
``<folder>/.canonical/uwmadison-<hash of train.csv>`` (a changed CSV gets a new folder, as the mask cache does).

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

Loading chain (MONAI)::

    LoadImaged(keys=["image", "label"], reader="PILReader", image_only=True)
        # image: 16-bit PNG -> float32 (W, H) - MONAI's PIL reader transposes to (W, H), the mask PNG identically;
        # a 2.5D entry (``"image"`` a list of paths, see neighbour_slices) is stacked to (n_slices, W, H)
    EnsureChannelFirstd(keys=["image", "label"])        # image (1 or n_slices, W, H), label (3, W, H)
    ScaleIntensityRangePercentilesd(keys="image", lower=0.0, upper=99.8, b_min=0.0, b_max=1.0, clip=True)
        # per slice (all channels together, so a 2.5D stack keeps its relative intensities): 16-bit values vary by
        # scanner and day (max from a few hundred to ~16000); the 99.8th percentile ignores a few hot pixels
    # then e.g. Resized / SpatialPadd + RandSpatialCropd to the network size (divisible by 16 for UNet 3+, 32 for
    # FCT) and augmentation; predictions: Activations(sigmoid=True), AsDiscrete(threshold=0.5)

Dataset problems raise :class:`~custom_nets.data.errors.DatasetError` naming the file (and CSV line) and the problem.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..data.common import (
    MAX_LISTED_PROBLEMS,
    check_folder,
    check_nonempty_file,
    is_demo,
    raise_problems,
    split_groups,
)
from ..data.errors import DatasetError
from ..files import write_file_atomic
from ..data.uwmadison import (
    _CSV_NAME,
    _DEFAULT_CACHE,
    _IMAGE_SUBDIR,
    CLASSES,
    CSV_COLUMNS,
    _slice_id,
    generate_uwmadison_demo,
)
from ..transforms.multilabel import multilabel_to_label_map
from .core import Entry, Layout, link_or_copy, save_png

__all__ = [
    "LAYOUT", "OFFSETS", "find_uwmadison_slices", "neighbour_slices", "parse_slice_filename", "rle_decode",
    "split_by_case", "uwmadison_datalist",
]

logger = logging.getLogger(__name__)

OFFSETS = (-2, 0, 2)
"""Slice offsets of the three channels of a converted case."""

_CACHE_VERSION = "v1"
_MAX_LISTED = MAX_LISTED_PROBLEMS

_SLICE_RE = re.compile(r"^slice_(\d+)_(\d+)_(\d+)_(\d+(?:\.\d+)?)_(\d+(?:\.\d+)?)\.png$", re.IGNORECASE)
_CASE_RE = re.compile(r"^case(\d+)$")
_DAY_RE = re.compile(r"^case(\d+)_day(\d+)$")


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
# Splits, 2.5D stacks and the competition-layout datalist
# ----------------------------------------------------------------------------------------------------------------------


def split_by_case(
    items: Sequence[dict[str, Any]],
    val_fraction: float = 0.2,
    seed: int = 0,
    num_folds: int | None = None,
    fold: int = 0,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split slices into training and validation by **case** (all days and slices of a case on one side).

    The case names are split by :func:`custom_nets.data.common.split_groups` (sorted, shuffled with ``seed``, then a
    ``val_fraction`` split or fold ``fold`` of ``num_folds``); slices keep their input order.

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


_ROLES = ("train", "val", "all", "infer")


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

    if role not in _ROLES:
        raise ValueError(f"role must be one of {', '.join(_ROLES)}, got {role!r}")
    if is_demo(dataset_dir):
        if demo_dir is None or not str(demo_dir).strip():
            raise ValueError("dataset_dir is 'demo' but no demo_dir was given to hold the generated demo data")
        folder = generate_uwmadison_demo(demo_dir)
        logger.info("dataset_dir is %r: using the synthetic UW-Madison demo data in %s", dataset_dir, folder)
    else:  # a real folder's errors propagate: never a silent fallback to the demo
        folder = Path(dataset_dir).expanduser()  # type: ignore[arg-type]
    items = find_uwmadison_slices(folder, require_labels=role != "infer", cache_dir=cache_dir)
    if offsets is not None:
        items = neighbour_slices(items, offsets)
    if role in ("all", "infer"):
        return items
    train, val = split_by_case(items, **split_kwargs)
    return train if role == "train" else val


def _find(src: Path, scratch: Path | None) -> list[Entry]:
    items = find_uwmadison_slices(src, require_labels=True, cache_dir=scratch)
    return [
        {"case": item["id"], "image": item["image"], "label": item["label"], "group": item["case"]}
        for item in neighbour_slices(items, OFFSETS)
    ]


def _write_case(entry: Entry, images_dir: Path, labels_dir: Path | None) -> str | None:
    for c, path in enumerate(entry["image"]):
        link_or_copy(path, images_dir / f"{entry['case']}_{c:04d}.png")
    if labels_dir is not None:
        with Image.open(entry["label"]) as image:  # (H, W, 3) 0/1, written by find_uwmadison_slices
            channels = torch.from_numpy(np.asarray(image).transpose(2, 0, 1).copy())
        save_png(multilabel_to_label_map(channels).numpy(), labels_dir / f"{entry['case']}.png")
    return None


LAYOUT = Layout(
    name="uwmadison",
    title="UW-Madison GI tract",
    description=(
        "Abdominal MRI slices (UW-Madison GI Tract Image Segmentation, Kaggle 2022) as 2.5D cases: channels are the "
        "16-bit slices at offsets -2, 0, +2 within the case-day (clamped at the ends); labels 1 large bowel, "
        "2 small bowel, 3 stomach (where organs overlap, the later one wins). splits_final.json keeps the days of a "
        "case together."
    ),
    converted={
        "channel_names": {str(c): f"MRI slice {o:+d}" if o else "MRI slice 0" for c, o in enumerate(OFFSETS)},
        "labels": {"background": 0, **{name: i + 1 for i, name in enumerate(CLASSES)}},
        "file_ending": ".png",
    },
    detect=lambda folder: (folder / _CSV_NAME).is_file() and (folder / _IMAGE_SUBDIR).is_dir(),
    find=_find,
    write_case=_write_case,
    group_unit="case",
    group_of_case=lambda case: case.split("_day", 1)[0],
    cache_key=lambda src: f"uwmadison-{_csv_fingerprint(src / _CSV_NAME)}",
)
