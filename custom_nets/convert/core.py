"""What every converter shares: the :class:`Layout` description, the atomic writer of a canonical dataset folder,
and the ``dataset.json`` / ``splits_final.json`` contents.

The canonical layout is nnU-Net v2's (Isensee et al., "nnU-Net: a self-configuring method for deep learning-based
biomedical image segmentation", Nature Methods 2021; ``documentation/dataset_format.md``)::

    DST/dataset.json                 channel_names, labels (name -> value or region), numTraining, file_ending, ...
    DST/imagesTr/<case>_0000.<ext>   one file per channel (an RGB PNG is one _0000.png with 3 channels)
    DST/labelsTr/<case>.<ext>        integer label map, background 0, the images' geometry
    DST/imagesTs/<case>_0000.<ext>   unlabelled cases, if any
    DST/splits_final.json            [{"train": [...], "val": [...]}, ...] one dict per fold, when cases share a group

A layout module gives a :class:`Layout`: how to recognise a public folder, list its cases, write one case in the
canonical form, and what ``dataset.json`` says (converted, and as the files are in place). :func:`write_dataset`
does the rest, atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from monai.utils import optional_import
from PIL import Image

from ..data.common import is_hidden, raise_problems, split_groups
from ..data.dataset import DATASET_JSON, SPLITS_JSON, read_dataset
from ..data.errors import DatasetError
from ..file_types import file_ending
from ..files import partial_path, remove_stale_partials, write_text_atomic

tqdm, has_tqdm = optional_import("tqdm", name="tqdm")  # requirements.txt has it; the package runs without

__all__ = [
    "CACHE_DIR",
    "DATASET_JSON",
    "NUM_FOLDS",
    "SPLITS_JSON",
    "SPLIT_SEED",
    "Layout",
    "dataset_json",
    "describe_canonical",
    "describe_in_place",
    "describe_via_cache",
    "link_or_copy",
    "listing_fingerprint",
    "save_png",
    "splits_by_group",
    "write_dataset",
]

logger = logging.getLogger(__name__)

NUM_FOLDS = 5
"""Folds of a written ``splits_final.json`` (nnU-Net's default; fewer when there are fewer groups)."""
SPLIT_SEED = 12345
"""Shuffle seed of a written ``splits_final.json`` (nnU-Net's ``KFold`` random_state, for familiarity)."""

Entry = dict[str, Any]
"""A case of a public folder: ``{"case", "image": path or [path per channel], "label" (if labelled), "group"?}``."""


@dataclass(frozen=True)
class Layout:
    """One public dataset layout and its conversion to the canonical one.

    Attributes:
        name: the CLI name (``"brats"``).
        title: for messages and the default ``dataset.json`` description (``"BraTS 2020/2021/2023"``).
        description: what the converted data is (channels, label values), for ``dataset.json``.
        converted: the converted ``dataset.json`` fields ``channel_names``, ``labels``, ``file_ending`` and optional
            ``regions_class_order``.
        detect: True if a folder holds this layout (cheap: looks at names, reads no image).
        find: ``find(src, scratch)`` lists the cases (:data:`Entry`), sorted; ``scratch`` is a private folder the
            listing may write into (decoded masks), deleted after the conversion.
        write_case: ``write_case(entry, images_dir, labels_dir)`` writes ``images_dir/<case>_<XXXX><ending>`` and,
            for a labelled entry, ``labels_dir/<case><ending>``; returns a problem (one line) or ``None``.
        in_place: ``dataset.json`` fields (``channel_names``, ``labels``, optional ``regions_class_order``) that read
            the public files as they are; ``None`` if they cannot be read in place (run-length masks).
        group_unit: what a group is (``"patient"``) when cases share one; then ``splits_final.json`` is written.
        group_of_case: the group of a converted case name (for :func:`describe_canonical`).
        cache_key: for layouts not readable in place, the name of the cached conversion of a folder (it changes
            when the folder's labels change); see :func:`describe_via_cache`.
    """

    name: str
    title: str
    description: str
    converted: Mapping[str, Any]
    detect: Callable[[Path], bool]
    find: Callable[[Path, Path | None], list[Entry]]
    write_case: Callable[[Entry, Path, Path | None], str | None]
    in_place: Mapping[str, Any] | None = None
    group_unit: str | None = None
    group_of_case: Callable[[str], str] | None = None
    cache_key: Callable[[Path], str] | None = None


# ----------------------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------------------


def link_or_copy(src: str | os.PathLike, dst: Path) -> None:
    """Hard-link ``src`` to ``dst``, or copy it where a link is impossible (another file system, no permission).

    Never a symbolic link: the converted dataset must survive the deletion of the source folder. A hard link shares
    the file's content with the source (no extra disk space); editing one in place edits both, deleting one does not
    affect the other.
    """
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def save_png(array: np.ndarray, path: Path) -> None:
    """Write a uint8 / uint16 ``(H, W)`` or uint8 ``(H, W, 3)`` array as a lossless PNG (PIL infers the mode)."""
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG")


def _image_paths(entry: Mapping[str, Any]) -> list[str]:
    image = entry["image"]
    return [image] if isinstance(image, str) else list(image)


# ----------------------------------------------------------------------------------------------------------------------
# dataset.json, splits and descriptions
# ----------------------------------------------------------------------------------------------------------------------


def dataset_json(layout: Layout, name: str, description: str, num_training: int) -> dict[str, Any]:
    """The converted ``dataset.json`` (nnU-Net v2), keys in nnU-Net's order."""
    out: dict[str, Any] = {
        "name": name,
        "description": description,
        "channel_names": dict(layout.converted["channel_names"]),
        "labels": dict(layout.converted["labels"]),
    }
    if "regions_class_order" in layout.converted:
        out["regions_class_order"] = list(layout.converted["regions_class_order"])
    out["numTraining"] = int(num_training)
    out["file_ending"] = layout.converted["file_ending"]
    return out


def splits_by_group(
    entries: Sequence[Entry], unit: str = "group", num_folds: int = NUM_FOLDS, seed: int = SPLIT_SEED
) -> list[dict[str, list[str]]] | None:
    """nnU-Net ``splits_final.json`` folds of the labelled ``entries``: cases of one ``"group"`` never split.

    ``min(num_folds, number of groups)`` folds of :func:`custom_nets.data.common.split_groups`, so every group is
    validated exactly once; ``None`` for fewer than 2 groups (no split possible).
    """
    groups = {str(e["group"]) for e in entries}
    if len(groups) < 2:
        return None
    folds = min(int(num_folds), len(groups))
    out = []
    for fold in range(folds):
        train, val = split_groups(
            list(entries), lambda e: str(e["group"]), seed=seed, num_folds=folds, fold=fold, unit=unit
        )
        out.append({"train": [e["case"] for e in train], "val": [e["case"] for e in val]})
    return out


def _training_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    out = {"case": entry["case"], "image": entry["image"], "label": entry["label"]}
    if "group" in entry:
        out["group"] = entry["group"]
    return out


def describe_in_place(layout: Layout, src: Path, entries: Sequence[Entry]) -> dict[str, Any]:
    """A Decathlon-style description of a public folder read as it is (absolute paths)."""
    assert layout.in_place is not None
    labelled = [e for e in entries if "label" in e]
    unlabelled = [{"case": e["case"], "image": e["image"]} for e in entries if "label" not in e]
    out: dict[str, Any] = {
        "name": src.name,
        "description": f"{layout.title} folder {src}, read in place with its own label values.",
        "channel_names": dict(layout.in_place["channel_names"]),
        "labels": dict(layout.in_place["labels"]),
    }
    if "regions_class_order" in layout.in_place:
        out["regions_class_order"] = list(layout.in_place["regions_class_order"])
    out["numTraining"] = len(labelled)
    out["file_ending"] = file_ending(_image_paths(entries[0])[0]) if entries else layout.converted["file_ending"]
    out["training"] = [_training_entry(e) for e in labelled]
    if unlabelled:
        out["test"] = unlabelled
    return out


def describe_canonical(folder: Path, layout: Layout) -> dict[str, Any]:
    """A Decathlon-style description (absolute paths) of a canonical folder written by :func:`write_dataset`.

    The folder is read by the data layer's reader (:func:`custom_nets.data.dataset.read_dataset`); entries get their
    ``"group"`` from :attr:`Layout.group_of_case`.
    """
    dataset = read_dataset(folder)
    out = json.loads((folder / DATASET_JSON).read_text(encoding="utf-8"))
    out["training"] = [
        {**entry, "group": layout.group_of_case(entry["case"])} if layout.group_of_case else dict(entry)
        for entry in dataset.training
    ]
    if dataset.test:
        out["test"] = [{"case": entry["case"], "image": entry["image"]} for entry in dataset.test]
    return out


def listing_fingerprint(*folders: Path) -> str:
    """A short hash of the names, sizes and modification times of the visible files in ``folders``: a cache key
    that changes when a file is added, removed or rewritten."""
    digest = hashlib.sha256()
    for folder in folders:
        if not folder.is_dir():
            continue
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.is_file() and not is_hidden(entry.name):
                stat = entry.stat()
                digest.update(f"{folder.name}/{entry.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


CACHE_DIR = ".canonical"
"""Hidden folder of a public dataset that holds its cached conversion (:func:`describe_via_cache`)."""


def describe_via_cache(layout: Layout, src: Path) -> dict[str, Any]:
    """Describe a folder that cannot be read in place through its conversion, cached in ``src/.canonical/<key>``.

    The first call converts (atomically); later calls reuse the complete conversion. A changed dataset (another
    :attr:`Layout.cache_key`) is converted again into a new folder.

    Raises:
        DatasetError: ``src`` cannot be written: the message gives the convert command to run instead.
    """
    assert layout.cache_key is not None
    cache = src / CACHE_DIR / layout.cache_key(src)
    if not (cache / DATASET_JSON).is_file():
        try:
            write_dataset(layout, src, cache, is_complete=lambda folder: (folder / DATASET_JSON).is_file())
        except OSError as err:
            raise DatasetError(
                f"{layout.title} folder {src} must be converted before it can be read, and its cache {cache} cannot "
                f"be written ({err.strerror or err}); convert it once with: python -m custom_nets.convert "
                f"{layout.name} {src} NEW_FOLDER, then use NEW_FOLDER",
                src,
            ) from err
    return describe_canonical(cache, layout)


# ----------------------------------------------------------------------------------------------------------------------
# The atomic writer
# ----------------------------------------------------------------------------------------------------------------------


def _check_destination(src: Path, dst: Path, overwrite: bool) -> None:
    s, d = src.resolve(), dst.resolve()
    # a hidden folder inside the source (the cache of describe_via_cache) is never read as data
    inside = d.is_relative_to(s) and not any(is_hidden(part) for part in d.relative_to(s).parts)
    if d == s or s.is_relative_to(d) or inside:
        raise DatasetError(
            f"destination {dst} is, contains or lies inside the source folder {src}; expected a separate folder",
            dst,
        )
    if dst.exists() and not dst.is_dir():
        raise DatasetError(f"destination {dst} exists and is not a folder; expected a new folder", dst)
    if dst.is_dir() and any(dst.iterdir()) and not overwrite:
        raise DatasetError(
            f"destination {dst} exists and is not empty; choose a new folder, or pass --overwrite (overwrite=True) "
            "to replace it",
            dst,
        )


def write_dataset(
    layout: Layout,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: bool = False,
    name: str | None = None,
    description: str | None = None,
    extra_files: Mapping[str, str] | None = None,
    is_complete: Callable[[Path], bool] | None = None,
) -> Path:
    """Convert the public folder ``src`` into the canonical folder ``dst``, atomically.

    Everything is written into a hidden temporary sibling of ``dst`` and renamed into place at the end, so a failed
    or interrupted conversion leaves no ``dst`` (and, with ``overwrite``, the previous ``dst`` untouched).

    Args:
        layout: the public layout of ``src``.
        src: the public dataset folder.
        dst: the new dataset folder (must not exist, or be empty, unless ``overwrite``).
        overwrite: replace an existing ``dst``.
        progress: show a progress bar (tqdm, when installed).
        name, description: ``dataset.json``'s; default: ``src``'s folder name and the layout's description.
        extra_files: further text files written into the folder before the rename (name -> content).
        is_complete: if the final rename fails because another process wrote ``dst`` meanwhile and
            ``is_complete(dst)`` says that copy is whole, the copy just made is dropped (demo data shared by bundles).

    Returns:
        ``dst`` as a :class:`~pathlib.Path`.

    Raises:
        DatasetError: ``src`` is not a folder of ``layout`` or has bad files (every problem, one a line, each naming
            the file); ``dst`` is unusable (exists without ``overwrite``, or overlaps ``src``).
    """
    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    if not src.is_dir():
        raise DatasetError(f"source folder {src} does not exist or is not a folder", src)
    _check_destination(src, dst, overwrite)
    dst.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(dst.parent)
    tmp = partial_path(dst.parent, dst.name)
    tmp.mkdir()
    try:
        scratch = tmp / ".scratch"
        scratch.mkdir()
        entries = layout.find(src, scratch)
        if not entries:
            raise DatasetError(f"source folder {src} holds no {layout.title} cases", src)
        labelled = [e for e in entries if "label" in e]
        dirs = {key: tmp / key for key in ("imagesTr", "labelsTr")}
        for folder in dirs.values():
            folder.mkdir()
        if len(labelled) < len(entries):
            (tmp / "imagesTs").mkdir()
            logger.warning("%d of %d cases of %s have no label: written to imagesTs", len(entries) - len(labelled),
                           len(entries), src)  # fmt: skip
        problems = []
        show = progress and has_tqdm
        for entry in tqdm(entries, desc=f"{layout.name} -> {dst.name}", unit="case") if show else entries:
            if "label" in entry:
                problem = layout.write_case(entry, dirs["imagesTr"], dirs["labelsTr"])
            else:
                problem = layout.write_case(entry, tmp / "imagesTs", None)
            if problem:
                problems.append(problem)
        raise_problems(src, problems, what=f"{layout.title} folder")
        shutil.rmtree(scratch)
        info = dataset_json(
            layout,
            src.resolve().name if name is None else name,
            f"{layout.description} Converted from the {layout.title} layout by custom_nets.convert {layout.name}."
            if description is None else description,
            len(labelled),
        )  # fmt: skip
        if layout.group_unit is not None:  # the patient of each case, for grouped splits and per-patient metrics
            info["training"] = _grouped_training_list(tmp, labelled, info["file_ending"])
        write_text_atomic(tmp / DATASET_JSON, json.dumps(info, indent=2) + "\n")
        if layout.group_unit is not None:
            splits = splits_by_group(labelled, unit=layout.group_unit)
            if splits is None:
                logger.warning("%s: fewer than 2 %ss, no %s written", src, layout.group_unit, SPLITS_JSON)
            else:
                write_text_atomic(tmp / SPLITS_JSON, json.dumps(splits, indent=1) + "\n")
        for file_name, text in (extra_files or {}).items():
            write_text_atomic(tmp / file_name, text)
        _move_into_place(tmp, dst, overwrite, is_complete)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("converted %d cases of %s (%s) into %s", len(entries), src, layout.title, dst)
    return dst


def _grouped_training_list(folder: Path, labelled: Sequence[Entry], ending: str) -> list[dict[str, Any]]:
    """Decathlon-style ``training`` entries (paths relative to the dataset) with each case's ``"group"``: the reader
    takes the groups from them (nnU-Net v2 ignores the key and scans ``imagesTr`` itself)."""
    channels: dict[str, list[str]] = {}
    for path in sorted((folder / "imagesTr").iterdir()):
        channels.setdefault(path.name[: -len(ending)].rsplit("_", 1)[0], []).append(f"imagesTr/{path.name}")
    out = []
    for entry in labelled:
        images = channels[entry["case"]]
        out.append({"image": images[0] if len(images) == 1 else images, "label": f"labelsTr/{entry['case']}{ending}",
                    "group": str(entry["group"])})
    return out


def _move_into_place(tmp: Path, dst: Path, overwrite: bool, is_complete: Callable[[Path], bool] | None) -> None:
    """Rename ``tmp`` to ``dst``; with ``overwrite``, the old ``dst`` is moved aside first and deleted after."""
    old = None
    if overwrite and dst.exists():
        old = partial_path(dst.parent, f"{dst.name}-old")
        os.rename(dst, old)
    elif dst.is_dir() and not any(dst.iterdir()):
        dst.rmdir()
    try:
        os.rename(tmp, dst)
    except OSError:
        if old is not None:
            os.rename(old, dst)
            raise
        if is_complete is None or not is_complete(dst):
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
