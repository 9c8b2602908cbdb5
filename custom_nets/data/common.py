"""Machinery shared by the demo generators (:mod:`.brats`, :mod:`.lgg`, :mod:`.polyp_skin`, :mod:`.uwmadison`), the
canonical layout (:mod:`.dataset`, :mod:`.demo`) and the public layouts' discovery (:mod:`custom_nets.convert`).

Nothing here knows a layout; each caller passes in what differs (file names, messages, the demo generator).

- Arguments and files: :func:`check_int`, :func:`is_hidden`, :func:`visible_subfolders`, :func:`check_folder`,
  :func:`check_nonempty_file`, :func:`is_nonempty_file`, :func:`raise_problems`.
- Atomic writes live in :mod:`custom_nets.files` (one place for the whole package).
- Demo-data bookkeeping: :func:`demo_description`, :func:`demo_marker`, :func:`read_demo_marker`,
  :func:`prepare_demo_dir` (the ``dataset.json`` marker, reuse or refusal when the parameters differ, overwrite of
  only the generated items), and :func:`generate_case_folders` for the demos made of one folder per case.
- Splits and the demo: :func:`split_groups` (seeded, grouped, fraction or k-fold), :func:`is_demo`.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ..files import atomic_folder, remove_stale_partials, write_text_atomic
from .errors import DatasetError

logger = logging.getLogger(__name__)

__all__ = [
    "DEMO_MARKER",
    "DEMO_README",
    "MAX_LISTED_PROBLEMS",
    "check_folder",
    "check_int",
    "check_nonempty_file",
    "demo_description",
    "demo_marker",
    "generate_case_folders",
    "is_demo",
    "is_hidden",
    "is_nonempty_file",
    "prepare_demo_dir",
    "raise_problems",
    "read_demo_marker",
    "split_groups",
    "visible_subfolders",
]

T = TypeVar("T")

DEMO_MARKER = "dataset.json"
"""File name of the marker that makes a folder recognisable as generated demo data (parameters, contents)."""
DEMO_README = "README.txt"
"""File name of the plain-text note written next to the marker."""
MAX_LISTED_PROBLEMS = 20
"""How many problems a :class:`DatasetError` lists before ``... and N more``."""


# ----------------------------------------------------------------------------------------------------------------------
# Arguments, names and files
# ----------------------------------------------------------------------------------------------------------------------


def _as_int(value: Any) -> int | None:
    """``value`` as an int if it is an integer (int, numpy integer or integral float; never a bool), else ``None``."""
    if isinstance(value, bool):
        return None
    try:
        as_int = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return as_int if as_int == value else None


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an ``int``; ``ValueError`` naming the argument unless it is an integer ``>= minimum``.

    Integers, numpy integers and integral floats (``3.0``) are accepted; booleans, strings, ``None`` and fractional
    numbers are not.
    """
    as_int = _as_int(value)
    if as_int is None or as_int < minimum:
        if minimum == 1:
            expected = "a positive integer"
        elif minimum == 0:
            expected = "a non-negative integer"
        else:
            expected = f"an integer of at least {minimum}"
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return as_int


def is_hidden(name: str) -> bool:
    """True for names that are never data: hidden (``.DS_Store``, ``.partial-*``) or dunder (``__MACOSX``)."""
    return name.startswith(".") or name.startswith("__")


def visible_subfolders(folder: Path) -> list[Path]:
    """The sub-folders of ``folder`` that are not hidden (:func:`is_hidden`), sorted by name."""
    return sorted((p for p in folder.iterdir() if p.is_dir() and not is_hidden(p.name)), key=lambda p: p.name)


def read_subfolders(
    root: Path,
    wanted: Callable[[str], bool],
    read: Callable[[Path, list[str]], tuple[list[dict[str, Any]], list[str]]],
    holds: str,
) -> list[dict[str, Any]]:
    """Entries of every visible sub-folder of ``root`` (one per case or patient, as the BraTS and LGG layouts have).

    ``read(folder, names)`` gets the sorted names of the folder's ``wanted`` files and returns its entries and its
    problems; a folder without such files is skipped with a warning (``"it holds no <holds>"``). Every folder's
    problems are raised together at the end (:func:`raise_problems`), so a user sees all of them at once.
    """
    entries: list[dict[str, Any]] = []
    problems: list[str] = []
    for folder in visible_subfolders(root):
        names = sorted(p.name for p in folder.iterdir() if p.is_file() and not is_hidden(p.name) and wanted(p.name))
        if not names:
            logger.warning("skipping %s: it holds no %s", folder, holds)
            continue
        found, folder_problems = read(folder, names)
        entries += found
        problems += folder_problems
    raise_problems(root, problems)
    return entries


def check_folder(folder: Path, what: str, expected: str) -> None:
    """``DatasetError`` unless ``folder`` is an existing folder: ``"<what> <folder> does not exist; <expected>"``."""
    if not folder.exists():
        raise DatasetError(f"{what} {folder} does not exist; {expected}", folder)
    if not folder.is_dir():
        raise DatasetError(f"{what} {folder} is not a folder; {expected}", folder)


def check_nonempty_file(path: Path, expected: str) -> str | None:
    """Why ``path`` cannot be read as data (empty, unreadable), or ``None`` if it is a non-empty file.

    Args:
        path: the file.
        expected: what it should be, with its article, for the message (``"a NIfTI image"``).

    Returns:
        ``"file <path> is empty (0 bytes); expected <expected> (re-copy or re-extract it)"``, ``"file <path> cannot be
        read (<error>); expected <expected>"``, or ``None``. A problem to collect, so that every bad file of a dataset
        is reported at once (:func:`raise_problems`).
    """
    try:
        if path.stat().st_size == 0:
            return f"file {path} is empty (0 bytes); expected {expected} (re-copy or re-extract it)"
    except OSError as err:
        return f"file {path} cannot be read ({err}); expected {expected}"
    return None


def is_nonempty_file(path: Path) -> bool:
    """True if ``path`` exists and is not empty (0 bytes); what counts as a written demo file."""
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def raise_problems(where: Path, problems: Sequence[str], what: str = "dataset folder") -> None:
    """``DatasetError`` listing ``problems`` (the first 20, then how many more), if there are any.

    The message is ``"<what> <where> has N problem(s):"`` and one problem a line; ``where`` is the error's path.
    """
    if not problems:
        return
    shown = "\n  - ".join(problems[:MAX_LISTED_PROBLEMS])
    more = f"\n  ... and {len(problems) - MAX_LISTED_PROBLEMS} more" if len(problems) > MAX_LISTED_PROBLEMS else ""
    place = f"{what} {where}" if what else f"{where}"
    raise DatasetError(f"{place} has {len(problems)} problem(s):\n  - {shown}{more}", where)


# ----------------------------------------------------------------------------------------------------------------------
# Demo-data bookkeeping
# ----------------------------------------------------------------------------------------------------------------------


def demo_description(made_by: str, not_real: str = "images") -> str:
    """The warning every demo's ``dataset.json`` carries: what made it, that it is neither real ``not_real`` nor
    patient data, and that scores on it say nothing about real data."""
    return (
        f"SYNTHETIC demo data made by {made_by}: not real {not_real}, not patient data. It exercises the pipelines; "
        "it says nothing about a model's accuracy on real data."
    )


def demo_marker(
    name: str, description: str, parameters: Mapping[str, Any], *, generator: str | None = None, **details: Any
) -> dict[str, Any]:
    """Contents of a demo folder's ``dataset.json``, in a fixed key order.

    ``{"name", "description", "synthetic": true, "generator" (if given), **parameters, **details}``: the generation
    parameters are what :func:`prepare_demo_dir` compares on reuse; ``details`` describe the files (labels, cases).
    """
    marker: dict[str, Any] = {"name": name, "description": description, "synthetic": True}
    if generator is not None:
        marker["generator"] = generator
    marker.update(parameters)
    marker.update(details)
    return marker


def read_demo_marker(
    out_dir: Path,
    generator: str,
    *,
    check_generator: bool = False,
    what: str = "demo data",
    overwrite_helps: bool = True,
) -> dict[str, Any] | None:
    """The parsed ``dataset.json`` of a demo folder, or ``None`` if there is none.

    Args:
        out_dir: the demo folder.
        generator: dotted name of the generating function, named in the messages.
        check_generator: the marker must also name ``generator`` (not only say ``"synthetic": true``).
        what: what the demo data is, for the messages (``"LGG demo data"``).
        overwrite_helps: the advice for an unreadable marker includes passing ``overwrite=True``.

    Raises:
        DatasetError: the marker cannot be read or parsed, or is not a marker of this generator's demo data.
    """
    path = out_dir / DEMO_MARKER
    if not path.exists():
        return None
    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        remedy = "Delete the folder or pass overwrite=True" if overwrite_helps else "Delete it (or the folder)"
        raise DatasetError(
            f"demo marker {path} cannot be read ({err}); expected the JSON written by {generator}. {remedy} to "
            "regenerate the demo data.",
            path,
        ) from err
    ours = isinstance(marker, dict) and bool(marker.get("synthetic"))
    if ours and check_generator:
        ours = marker.get("generator") == generator
    if not ours:
        raise DatasetError(
            f"{path} is not a marker of custom_nets {what}; expected the {DEMO_MARKER} written by {generator}. "
            "Refusing to write demo data into a folder that may hold other data: choose an empty or new folder.",
            path,
        )
    return marker


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def prepare_demo_dir(
    out_dir: Path,
    parameters: Mapping[str, Any],
    overwrite: bool,
    *,
    generator: str,
    marker: Mapping[str, Any],
    readme: str,
    existing: Callable[[], Sequence[Path]],
    is_complete: Callable[[], bool],
    what: str = "demo data",
    check_generator: bool = False,
    check_marker_on_overwrite: bool = False,
    replace_on_overwrite: bool = True,
    partial_folders: Sequence[Path] = (),
    overwrite_hint: str = "overwrite=True",
) -> bool:
    """Make ``out_dir`` ready for generating demo data; True if it already holds the complete requested data.

    In order:

    1. ``out_dir`` is created (a file there is an error) and temporary entries of interrupted runs older than an hour
       are deleted from it and from the existing ``partial_folders``.
    2. The marker ``dataset.json`` is read, unless ``overwrite`` (and not ``check_marker_on_overwrite``); one that
       cannot be read, or is not a marker of this generator's data (:func:`read_demo_marker`), is an error.
    3. With ``overwrite``: the marker and, if ``replace_on_overwrite``, the ``existing()`` items are deleted. Nothing
       else in the folder is touched.
       Without it: a marker with other ``parameters`` is an error (nothing is deleted); a matching one with
       ``is_complete()`` means reuse (returns True). No marker but ``existing()`` items is an error: the folder may
       hold other data.
    4. Without a marker (now), ``marker`` and ``readme`` are written (atomically); returns False: the caller writes
       the items that are missing (or all of them with ``overwrite``).

    Args:
        out_dir: the demo folder.
        parameters: the generation parameters, as stored in the marker and compared on reuse.
        overwrite: regenerate even if the folder holds demo data.
        generator: dotted name of the generating function, named in the messages.
        marker: the full marker to write (see :func:`demo_marker`).
        readme: text of ``README.txt``.
        existing: the layout's items now in ``out_dir`` (e.g. the case folders): without a marker they mean the folder
            may hold other data; with ``overwrite`` (and ``replace_on_overwrite``) they are deleted.
        is_complete: True if every item of the requested data set is present and non-empty.
        what: what the demo data is, for the messages (``"LGG demo data"``).
        check_generator: a marker must name ``generator`` (see :func:`read_demo_marker`).
        check_marker_on_overwrite: read and check the marker even with ``overwrite`` (a foreign or unreadable marker
            is an error then too).
        replace_on_overwrite: with ``overwrite``, delete the ``existing()`` items (False: the caller rewrites its
            files in place).
        partial_folders: further folders to clean of stale temporary entries (those where items are written).
        overwrite_hint: how to ask for an overwrite, for the messages (e.g. ``"overwrite=True (--overwrite)"``).

    Raises:
        DatasetError: ``out_dir`` is a file; the marker is unreadable or foreign; without ``overwrite``, the marker
            has other parameters, or there is no marker but ``existing()`` items. The message names the folder.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise DatasetError(
            f"demo data folder {out_dir} exists but is not a folder; expected a folder (or nothing).", out_dir
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    for folder in (out_dir, *partial_folders):
        if folder.is_dir():
            remove_stale_partials(folder)
    marker_path = out_dir / DEMO_MARKER
    previous: dict[str, Any] | None = None
    if check_marker_on_overwrite or not overwrite:
        previous = read_demo_marker(
            out_dir,
            generator,
            check_generator=check_generator,
            what=what,
            overwrite_helps=not check_marker_on_overwrite,
        )
    found = list(existing())

    if overwrite:
        marker_path.unlink(missing_ok=True)
        previous = None
        if replace_on_overwrite:
            for path in found:
                _remove(path)
    elif previous is not None:
        stored = {key: previous.get(key) for key in parameters}
        if stored != dict(parameters):
            raise DatasetError(
                f"demo data folder {out_dir} holds {what} generated with {stored} (see {marker_path}), not the "
                f"requested {dict(parameters)}. Pass {overwrite_hint} to regenerate it, or choose another folder.",
                out_dir,
            )
        if is_complete():
            return True
    elif found:
        names = [os.path.relpath(path, out_dir) for path in found]
        listed = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        action = "delete and regenerate them" if replace_on_overwrite else "write the demo data there anyway"
        raise DatasetError(
            f"demo data folder {out_dir} holds {listed} but no {DEMO_MARKER} marker, so it cannot tell how they were "
            f"made (it may be a real dataset); expected a folder written by {generator}. Refusing to mix demo data "
            f"with other data: choose an empty or new folder, or pass {overwrite_hint} to {action}.",
            out_dir,
        )
    if previous is None:
        write_text_atomic(marker_path, json.dumps(marker, indent=2) + "\n")
        write_text_atomic(out_dir / DEMO_README, readme)
    return False


def generate_case_folders(
    out_dir: Path,
    parameters: Mapping[str, Any],
    overwrite: bool,
    *,
    names: Sequence[str],
    prefix: str,
    is_complete: Callable[[Path], bool],
    write: Callable[[Path, int, str], None],
    items: str,
    **prepare: Any,
) -> Path:
    """Generate (or reuse) demo data made of one folder per case (BraTS cases, LGG patients) in ``out_dir``.

    First :func:`prepare_demo_dir`, whose existing items are the folders named ``prefix...`` and whose data set is
    complete when ``is_complete`` holds for the folder of every one of ``names``; then each case folder that is missing
    or incomplete (every one, with ``overwrite``) is made anew: ``write(folder, index, name)`` fills a hidden temporary
    folder, renamed into place (:func:`~custom_nets.files.atomic_folder`), so an interrupted run leaves no half-written
    case and a rerun completes what is missing.

    Args:
        names: the case folders, in generation order (``write`` gets each one's index).
        items: the cases, for the log (``"BraTS demo cases"``).
        prepare: the other keyword arguments of :func:`prepare_demo_dir` (``generator``, ``marker``, ``readme`` ...).

    Returns:
        ``out_dir``.
    """
    reuse = prepare_demo_dir(
        out_dir,
        parameters,
        overwrite,
        existing=lambda: sorted(p for p in out_dir.iterdir() if p.is_dir() and p.name.startswith(prefix)),
        is_complete=lambda: all(is_complete(out_dir / name) for name in names),
        **prepare,
    )
    if reuse:
        logger.debug("reusing the %s in %s", items, out_dir)
        return out_dir
    start = time.perf_counter()
    for index, name in enumerate(names):
        folder = out_dir / name
        if not overwrite and is_complete(folder):
            continue
        if folder.exists():
            shutil.rmtree(folder)
        with atomic_folder(folder, is_complete=is_complete) as tmp:  # another process may write the same case
            write(tmp, index, name)
    logger.info("generated %d synthetic %s in %s (%.1f s)", len(names), items, out_dir, time.perf_counter() - start)
    return out_dir


# ----------------------------------------------------------------------------------------------------------------------
# Splits
# ----------------------------------------------------------------------------------------------------------------------


def split_groups(
    items: Sequence[T],
    group_of: Callable[[T], Hashable],
    val_fraction: float = 0.2,
    seed: int = 0,
    num_folds: int | None = None,
    fold: int = 0,
    *,
    unit: str = "case",
    item_unit: str | None = None,
) -> tuple[list[T], list[T]]:
    """Split ``items`` into training and validation by group (case, patient), deterministically.

    Every group lands on one side, so correlated items (slices of one patient) never leak. The groups are sorted (so
    the input order does not matter), shuffled with ``seed``, then either the first ``round(val_fraction * n)`` go to
    validation (at least 1, at most ``n - 1``), or, with ``num_folds``, the shuffled groups are cut into ``num_folds``
    near-equal folds and fold ``fold`` is the validation set (over all folds, every group is validated exactly once).

    Args:
        items: the entries to split.
        group_of: the group of an entry (sortable: all groups of one call of one type, e.g. ``str``).
        val_fraction: share of validation groups, in ``(0, 1)``; ignored when ``num_folds`` is given.
        seed: shuffle seed.
        num_folds: number of cross-validation folds (``2 <= num_folds <=`` number of groups), or ``None``.
        fold: validation fold index, ``0 <= fold < num_folds``.
        unit: what a group is, for the messages (``"patient"``).
        item_unit: what an item is, if not a group itself (``"slice"``), for the messages.

    Returns:
        ``(train, val)``: the entries themselves (not copies), each list in the order of ``items``; disjoint in
        groups, both non-empty, together all entries.

    Raises:
        DatasetError: fewer than 2 groups.
        ValueError: ``val_fraction``, ``num_folds`` or ``fold`` out of range, or ``num_folds`` / ``fold`` not integers.
    """
    keys = [group_of(item) for item in items]
    groups = sorted(set(keys))
    n = len(groups)
    if n < 2:
        if item_unit is None:
            message = (
                f"cannot split {n} {unit}(s) {groups} into training and validation; expected at least 2 {unit}s in "
                "the dataset"
            )
        else:
            message = (
                f"cannot split {len(items)} {item_unit}(s) of {n} {unit}(s) {groups} by {unit} into training and "
                f"validation; expected {item_unit}s of at least 2 {unit}s"
            )
        raise DatasetError(message)
    shuffled = [groups[i] for i in np.random.default_rng(int(seed)).permutation(n)]
    if num_folds is None:
        if not 0.0 < float(val_fraction) < 1.0:
            raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction!r}")
        n_val = min(max(int(round(float(val_fraction) * n)), 1), n - 1)
        val_groups = set(shuffled[:n_val])
    else:
        folds = _as_int(num_folds)
        if folds is None or not 2 <= folds <= n:
            raise ValueError(
                f"num_folds must be an integer between 2 and the number of {unit}s ({n}), got {num_folds!r}"
            )
        index = _as_int(fold)
        if index is None or not 0 <= index < folds:
            raise ValueError(f"fold must be an integer between 0 and num_folds - 1 ({folds - 1}), got {fold!r}")
        val_groups = {shuffled[i] for i in np.array_split(np.arange(n), folds)[index].tolist()}
    train = [item for item, key in zip(items, keys) if key not in val_groups]
    val = [item for item, key in zip(items, keys) if key in val_groups]
    return train, val


# ----------------------------------------------------------------------------------------------------------------------
# The demo
# ----------------------------------------------------------------------------------------------------------------------


def is_demo(dataset_dir: str | os.PathLike | None) -> bool:
    """True for ``None``, an empty string or ``"demo"`` (any letter case): use the generated demo data."""
    if dataset_dir is None:
        return True
    return isinstance(dataset_dir, str) and dataset_dir.strip().lower() in ("", "demo")
