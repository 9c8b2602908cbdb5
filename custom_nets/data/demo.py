"""Synthetic demo data in the canonical layout (nnU-Net v2 ``dataset.json`` + ``imagesTr`` / ``labelsTr``).

:func:`make_demo` writes one task's demo data set, the same whatever bundle asks for it: the public-layout generator
of the task (:func:`~custom_nets.data.brats.generate_brats_demo`, ...) writes into a hidden temporary folder, which
is converted (:mod:`custom_nets.convert`) into ``out_dir`` and deleted. So the demo's ``dataset.json`` is a real
nnU-Net one, and its generation parameters live in a separate marker, ``demo.json``. :data:`DEMO_TASKS` gives each
task's ``dataset.json`` (at the default sizes) without generating anything, for configs that only need the channels
and labels.

=========== ================================================= =========================================
task        default size (the generator's defaults)           dataset.json
=========== ================================================= =========================================
brats       8 cases of 96 x 96 x 64 voxels                     FLAIR/T1/T1ce/T2, regions TC, WT, ET
lgg         6 patients x 12 slices of 128 x 128 (72 cases)     RGB, tumour 1, 5 folds by patient
kvasir      16 images, 180-260 px                              RGB, polyp 1
isic        16 images, about 150-210 x 200-280 px              RGB, lesion 1
uwmadison   4 cases x 2 days x 8 slices (64 2.5D cases)        3 slices, large/small bowel, stomach 1-3
=========== ================================================= =========================================
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..convert.core import Layout, dataset_json, write_dataset
from ..convert.layouts import get_layout
from .brats import generate_brats_demo
from .common import demo_description
from ..files import partial_path
from .errors import DatasetError
from .lgg import generate_lgg_demo
from .polyp_skin import generate_isic_demo, generate_kvasir_demo
from .uwmadison import generate_uwmadison_demo

__all__ = ["DEMO_FILE", "DEMO_TASKS", "make_demo", "read_demo_marker"]

DEMO_FILE = "demo.json"
"""The marker next to a demo's ``dataset.json``: task, generator and its parameters."""
_DEMO_VERSION = 2  # 2: dataset.json lists the cases with their groups (patients)

_GENERATORS: dict[str, Callable[..., Path]] = {
    "brats": generate_brats_demo,
    "lgg": generate_lgg_demo,
    "kvasir": generate_kvasir_demo,
    "isic": generate_isic_demo,
    "uwmadison": generate_uwmadison_demo,
}
_TITLES = {
    "brats": "BraTS", "lgg": "LGG slice", "kvasir": "Kvasir-SEG", "isic": "ISIC 2017", "uwmadison": "UW-Madison GI",
}  # fmt: skip
# number of labelled cases of a demo, from its generation parameters
_NUM_TRAINING: dict[str, Callable[[Mapping[str, Any]], int]] = {
    "brats": lambda p: p["num_cases"],
    "lgg": lambda p: p["num_patients"] * p["slices_per_patient"],
    "kvasir": lambda p: p["num_images"],
    "isic": lambda p: p["num_images"],
    "uwmadison": lambda p: p["num_cases"] * p["days_per_case"] * p["slices_per_day"],
}
_NOT_SIZES = ("out_dir", "overwrite")


def _layout(task: str) -> Layout:
    return get_layout(task)


def _check_task(task: str) -> str:
    if task not in _GENERATORS:
        raise ValueError(f"unknown demo task {task!r}; expected one of {', '.join(_GENERATORS)}")
    return task


def _defaults(task: str) -> dict[str, Any]:
    parameters = inspect.signature(_GENERATORS[task]).parameters
    return {name: p.default for name, p in parameters.items() if name not in _NOT_SIZES}


def _parameters(task: str, size_params: Mapping[str, Any]) -> dict[str, Any]:
    """The generator's parameters (defaults updated by ``size_params``), as JSON stores them (tuples as lists)."""
    defaults = _defaults(task)
    unknown = sorted(set(size_params) - set(defaults))
    if unknown:
        raise ValueError(f"unknown {task} demo parameter(s) {', '.join(unknown)}; expected {', '.join(defaults)}")
    return json.loads(json.dumps({**defaults, **size_params}))


def _dataset_json(task: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    layout = _layout(task)
    description = f"{demo_description(f'custom_nets.data.demo.make_demo({task!r})')} {layout.description}"
    name = f"custom_nets synthetic {_TITLES[task]} demo"
    return dataset_json(layout, name, description, _NUM_TRAINING[task](parameters))


def _marker(task: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "task": task,
        "synthetic": True,
        "demo_version": _DEMO_VERSION,
        "generator": f"{_GENERATORS[task].__module__}.{_GENERATORS[task].__name__}",
        "parameters": dict(parameters),
    }


# what inference needs beyond dataset.json: the dimensionality and (3D) the voxel spacing in mm of each demo
_GEOMETRY: dict[str, dict[str, Any]] = {
    "brats": {"spatial_dims": 3, "spacing": [1.0, 1.0, 1.0]},
    **{task: {"spatial_dims": 2} for task in ("lgg", "kvasir", "isic", "uwmadison")},
}

DEMO_TASKS: dict[str, dict[str, Any]] = {
    task: {**_dataset_json(task, _parameters(task, {})), **_GEOMETRY[task]} for task in _GENERATORS
}
"""For each task, the ``dataset.json`` that :func:`make_demo` writes at the default sizes (nothing is generated),
plus ``spatial_dims`` and, for 3D, ``spacing`` (mm): what an inference config needs without the data."""


def read_demo_marker(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The parsed ``demo.json`` of a complete demo folder (one with its ``dataset.json``), else ``None``."""
    path = Path(folder).expanduser()
    try:
        if not (path / "dataset.json").is_file():
            return None
        marker = json.loads((path / DEMO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def make_demo(task: str, out_dir: str | os.PathLike, *, overwrite: bool = False, **size_params: Any) -> Path:
    """Write (or reuse) the synthetic demo data set of ``task`` in the canonical layout in ``out_dir``.

    Deterministic (same parameters, same files) and idempotent: a complete demo of the same task and parameters is
    reused as it is. Atomic: the folder appears complete or not at all, so bundles (or ranks) that ask at the same
    time share one copy. ``out_dir/demo.json`` records the task, generator and parameters.

    Args:
        task: ``"brats"``, ``"lgg"``, ``"kvasir"``, ``"isic"`` or ``"uwmadison"``.
        out_dir: the demo folder.
        overwrite: replace ``out_dir`` whatever it holds.
        **size_params: the task generator's keyword arguments (e.g. ``num_cases=2, shape=(32, 32, 32)`` for BraTS,
            ``num_images`` for Kvasir / ISIC, ``seed``); the rest keep the generator's defaults.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: unknown ``task`` or parameter, or an invalid value (the generator's message).
        DatasetError: ``out_dir`` is a file, or (without ``overwrite``) a non-empty folder that is not this demo:
            another task's or other parameters' demo (the message says which), or other data.
    """
    task = _check_task(task)
    parameters = _parameters(task, size_params)
    marker = _marker(task, parameters)
    out = Path(out_dir).expanduser()

    def is_this_demo(folder: Path) -> bool:
        return read_demo_marker(folder) == marker

    if not overwrite and is_this_demo(out):
        return out
    if out.exists() and not out.is_dir():
        raise DatasetError(f"demo data folder {out} exists but is not a folder; expected a folder (or nothing)", out)
    found = read_demo_marker(out) if out.is_dir() else None
    if found and found.get("task") == task and found.get("parameters") == parameters:
        overwrite = True  # the same demo made by an older version of this module: made anew
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        what = (
            f"the {found.get('task')} demo made with {found.get('parameters')} (see {out / DEMO_FILE})"
            if found else "files that are not a demo made by make_demo (no demo.json)"
        )  # fmt: skip
        raise DatasetError(
            f"demo data folder {out} holds {what}, not the {task} demo with {parameters}; choose another folder, or "
            "pass overwrite=True to replace it",
            out,
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    public = partial_path(out.parent, f"{out.name}-public")
    try:
        _GENERATORS[task](public, **parameters)
        dataset = _dataset_json(task, parameters)
        try:
            write_dataset(
                _layout(task), public, out, overwrite=overwrite, name=dataset["name"],
                description=dataset["description"], extra_files={DEMO_FILE: json.dumps(marker, indent=2) + "\n"},
                is_complete=is_this_demo,
            )  # fmt: skip
        except DatasetError:
            if is_this_demo(out):  # another process made the same demo meanwhile
                return out
            raise
    finally:
        shutil.rmtree(public, ignore_errors=True)
    return out
