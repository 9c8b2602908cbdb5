"""Plans from the data: a dataset fingerprint and the training configuration derived from it, by nnU-Net's rules.

Isensee et al., "nnU-Net: a self-configuring method for deep learning-based biomedical image segmentation", Nature
Methods 18, 203-211 (2021); rules as in nnU-Net v2's ``DatasetFingerprintExtractor`` and ``ExperimentPlanner``.
MONAI has the data analyser of Auto3DSeg (``DataAnalyzer``) but not these planning rules, hence this module.

- **Fingerprint** (:func:`fingerprint`): per case, the RAS spacing, the shape before and after cropping to the
  nonzero box (RAS axis order), foreground (label > 0) intensities per channel (a sample), and the volume of each
  label value; read in parallel over cases (a small thread pool) with a progress bar.
- **Plan** (:func:`make_plan`):

  - ``target_spacing``: the per-axis median spacing; on a very anisotropic axis (over 3x coarser than the others and
    holding under a third of their voxels) the 10th percentile instead;
  - ``normalization`` per channel: ``ct`` (channel named CT: clip to the dataset's foreground 0.5-99.5 percentiles,
    subtract its foreground mean, divide by its std), ``rgb`` (0-255 to 0-1), ``zscore_nonzero`` (per case over the
    nonzero voxels, when cropping to nonzero shrinks the images below 3/4) or ``zscore``;
  - ``configurations``: a ``3d`` one (3D data) and a ``2d`` one (slices: 2D data, and the recommendation for very
    anisotropic volumes), each with a ``patch_size`` (the spacing's aspect ratio, clipped to the median resampled
    shape, shrunk until a batch of 2 fits the memory budget of the device) and a ``batch_size`` (what the budget
    allows, at most 5 % of the dataset's voxels per batch, at least 2); ``spatial_dims``, ``patch_size`` and
    ``batch_size`` at the top level are the recommended configuration's.

Shapes and spacings are in RAS axis order (what ``Orientationd("RAS")`` gives) for volumes, and (W, H) for 2D images
(MONAI's PIL reading), as the bundles see them. The plan is cached (:data:`PLANS_FILE`, next to the checkpoints) and
recomputed when the dataset's file listing (names, sizes, modification times) changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from custom_nets.data.dataset import Dataset, Task, is_rgb, ras_spacing, read_array, read_header
from custom_nets.data.errors import DatasetError
from custom_nets.files import write_text_atomic

__all__ = [
    "PLANS_FILE",
    "fingerprint",
    "load_plan",
    "make_plan",
    "plan_dataset",
    "planned_batch_size",
    "planned_patch_size",
    "planned_pixdim",
    "trained_plan",
    "training_plan",
]

logger = logging.getLogger(__name__)

PLANS_FILE = "plans.json"
PLAN_VERSION = 1
#: foreground voxels sampled per case and channel for the intensity statistics (nnU-Net: 10,000)
SAMPLES_PER_CASE = 10_000
#: an axis is very anisotropic when its spacing is over this many times the others' (and it has as many times fewer
#: voxels); nnU-Net's 3
ANISOTROPY = 3.0
#: cropping to nonzero shrinking the median case below this fraction means skull-stripped-like data: z-score over the
#: nonzero voxels (nnU-Net's 3/4)
NONZERO_FRACTION = 0.75
#: memory per voxel of a batch in training (activations, gradients, optimiser), calibrated on nnU-Net's reference:
#: a 3D U-Net with 32 base features fits 2 x 128^3 in 8 GB, a 2D one 12 x 512^2
BYTES_PER_VOXEL = {3: 8e9 / (2 * 128**3), 2: 8e9 / (12 * 512**2)}
#: the initial patch volume before clipping to the data (nnU-Net: 256^3 voxels in 3D, 2048^2 pixels in 2D)
INITIAL_PATCH_VOXELS = {3: 256**3, 2: 2048**2}
#: patch sides are multiples of this (four poolings by 2 in every bundle's network)
PATCH_DIVISOR = 16
MIN_BATCH = 2
#: one batch covers at most this fraction of the dataset's voxels
MAX_BATCH_FRACTION = 0.05
#: share of the CPU's RAM (of a GPU's memory) a training run may plan for
CPU_MEMORY_SHARE = 0.25
GPU_MEMORY_SHARE = 0.8


# ----------------------------------------------------------------------------------------------------------------------
# Fingerprint
# ----------------------------------------------------------------------------------------------------------------------


def _as_monai_axes(array: np.ndarray, spatial: int, channels_last: bool) -> np.ndarray:
    """(C, *spatial) with 2D images as (W, H) (MONAI's PIL reading), volumes in their voxel order."""
    if array.ndim == spatial:
        array = array[None]
    elif channels_last:
        array = np.moveaxis(array.reshape(*array.shape[:spatial], -1), -1, 0)
    if spatial == 2:
        array = np.swapaxes(array, 1, 2)
    return array


def _case_fingerprint(case: Mapping[str, Any], label_values: Sequence[int], seed: int) -> dict[str, Any]:
    """What one case contributes to the fingerprint (see the module docstring)."""
    files = [case["image"]] if isinstance(case["image"], str) else list(case["image"])
    header = read_header(files[0])
    spatial = len(header.shape)
    channels = [_as_monai_axes(np.asarray(read_array(f), dtype=np.float32), spatial, True) for f in files]
    image = np.concatenate(channels, axis=0)
    label = _as_monai_axes(np.asarray(read_array(case["label"])), spatial, True)[0]
    if header.affine is not None:
        import nibabel as nib

        # voxel axes -> RAS axes for the shapes; spacing already per RAS axis
        order = [int(a) for a, _ in nib.orientations.io_orientation(header.affine)]
        spacing = list(ras_spacing(header.affine))
    else:
        order, spacing = list(range(spatial)), [1.0] * spatial
    nonzero = np.any(image != 0, axis=0)
    if nonzero.any():
        idx = np.nonzero(nonzero)
        cropped = [int(i.max() - i.min() + 1) for i in idx]
    else:
        cropped = list(nonzero.shape)
    to_ras = [0] * spatial
    for voxel_axis, ras_axis in enumerate(order):
        to_ras[ras_axis] = voxel_axis
    shape = [int(nonzero.shape[a]) for a in to_ras]
    cropped = [cropped[a] for a in to_ras]
    voxel_volume = float(np.prod(spacing))
    foreground = label > 0
    rng = np.random.default_rng(seed)
    samples = []
    for c in range(image.shape[0]):
        values = image[c][foreground]
        if values.size > SAMPLES_PER_CASE:
            values = rng.choice(values, SAMPLES_PER_CASE, replace=False)
        samples.append(values.astype(np.float32))
    counts = {int(v): int(n) for v, n in zip(*np.unique(label, return_counts=True))}
    return {
        "case": case["case"],
        "spacing": [float(s) for s in spacing],
        "shape": shape,
        "shape_after_crop": cropped,
        "crop_fraction": float(np.prod(cropped) / max(np.prod(shape), 1)),
        "label_volumes": {str(v): counts.get(v, 0) * voxel_volume for v in label_values},
        "_samples": samples,
    }


def _intensity_stats(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {k: 0.0 for k in ("mean", "std", "median", "min", "max", "percentile_00_5", "percentile_99_5")}
    p005, median, p995 = np.percentile(values, [0.5, 50.0, 99.5])
    return {"mean": float(values.mean()), "std": float(values.std()), "median": float(median),
            "min": float(values.min()), "max": float(values.max()),
            "percentile_00_5": float(p005), "percentile_99_5": float(p995)}


def fingerprint(dataset: Dataset, workers: int = 2, progress: bool = True) -> dict[str, Any]:
    """The fingerprint of ``dataset``'s training cases (see the module docstring); a thread pool of ``workers``.

    Returns:
        ``{"cases": [per-case dicts], "intensity": [per-channel stats], "spatial_dims", "channel_names", ...}``.
    """
    label_values = sorted(dataset.declared_values() - {0})
    cases = dataset.training
    iterator: Any
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(cases)))) as pool:
        iterator = pool.map(lambda ic: _case_fingerprint(ic[1], label_values, ic[0]), enumerate(cases))
        if progress:
            from tqdm import tqdm

            iterator = tqdm(iterator, total=len(cases), desc=f"fingerprint {dataset.root.name}", unit="case",
                            leave=False)
        try:
            per_case = list(iterator)
        except DatasetError:
            raise
        except Exception as err:  # noqa: BLE001 - one line naming the dataset, not a traceback
            raise DatasetError(f"dataset {dataset.root}: a case cannot be read for planning "
                               f"({type(err).__name__}: {err})", dataset.root) from None
    channels = len(per_case[0]["_samples"])
    intensity = [_intensity_stats(np.concatenate([c["_samples"][i] for c in per_case])) for i in range(channels)]
    for c in per_case:
        del c["_samples"]
    return {
        "spatial_dims": len(per_case[0]["shape"]),
        "channel_names": list(dataset.channel_names),
        "has_spacing": any(c["spacing"] != [1.0] * len(c["spacing"]) for c in per_case)
        or dataset.file_ending not in (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg"),
        "intensity": intensity,
        "cases": per_case,
    }


# ----------------------------------------------------------------------------------------------------------------------
# Plan
# ----------------------------------------------------------------------------------------------------------------------


def anisotropic_axis(spacing: Sequence[float], shape: Sequence[float]) -> int | None:
    """The very anisotropic axis of a volume (over :data:`ANISOTROPY` times coarser than the others, and as many
    times fewer voxels), or ``None``."""
    if len(spacing) < 3:
        return None
    spacing, shape = np.asarray(spacing, dtype=float), np.asarray(shape, dtype=float)
    worst = int(np.argmax(spacing))
    others = [a for a in range(len(spacing)) if a != worst]
    if spacing[worst] > ANISOTROPY * max(spacing[others]) and shape[worst] * ANISOTROPY < min(shape[others]):
        return worst
    return None


def target_spacing(spacings: np.ndarray, shapes: np.ndarray) -> list[float]:
    """nnU-Net's full-resolution target spacing: the median, with the 10th percentile on a very anisotropic axis.

    Args:
        spacings: (cases, axes) spacings; shapes: (cases, axes) shapes after cropping.
    """
    target = np.median(spacings, axis=0)
    worst = anisotropic_axis(target, np.median(shapes, axis=0))
    if worst is not None:
        others = [a for a in range(len(target)) if a != worst]
        coarse = float(np.percentile(spacings[:, worst], 10))
        target[worst] = max(coarse, float(max(target[others])) + 1e-5)
    return [float(s) for s in target]


def _normalization(fp: Mapping[str, Any]) -> list[dict[str, Any]]:
    names = fp["channel_names"]
    if is_rgb(names):
        return [{"scheme": "rgb"} for _ in names]
    nonzero = float(np.median([c["crop_fraction"] for c in fp["cases"]])) < NONZERO_FRACTION
    out = []
    for name, stats in zip(names, fp["intensity"]):
        if str(name).strip().lower() == "ct":
            out.append({"scheme": "ct", "clip": [stats["percentile_00_5"], stats["percentile_99_5"]],
                        "mean": stats["mean"], "std": max(stats["std"], 1e-8)})
        else:
            out.append({"scheme": "zscore_nonzero" if nonzero else "zscore"})
    return out


def _round_up(x: float, divisor: int = PATCH_DIVISOR) -> int:
    # rounded first: a median of 96 computed through an oblique affine comes out as 96.00000000000001
    return int(max(divisor, math.ceil(round(x / divisor, 6)) * divisor))


def patch_and_batch(spacing: Sequence[float], median_shape: Sequence[float], budget_bytes: float,
                    dataset_voxels: float) -> tuple[list[int], int]:
    """nnU-Net's patch and batch size for one configuration.

    The patch follows the spacing's aspect ratio at :data:`INITIAL_PATCH_VOXELS`, is clipped to the median resampled
    shape (rounded up to :data:`PATCH_DIVISOR`), and its axis largest relative to the median shape shrinks by the
    divisor until :data:`MIN_BATCH` patches fit ``budget_bytes``; the batch is what the budget then allows, at most
    :data:`MAX_BATCH_FRACTION` of ``dataset_voxels``, at least :data:`MIN_BATCH`.
    """
    dims = len(spacing)
    inverse = 1.0 / np.asarray(spacing, dtype=float)
    patch = inverse / np.prod(inverse) ** (1.0 / dims) * INITIAL_PATCH_VOXELS[dims] ** (1.0 / dims)
    patch = [min(_round_up(p), _round_up(m)) for p, m in zip(patch, median_shape)]
    budget_voxels = budget_bytes / BYTES_PER_VOXEL[dims]
    while MIN_BATCH * np.prod(patch) > budget_voxels and max(patch) > PATCH_DIVISOR:
        axis = int(np.argmax([p / max(m, 1.0) if p > PATCH_DIVISOR else -1 for p, m in zip(patch, median_shape)]))
        patch[axis] -= PATCH_DIVISOR
    voxels = float(np.prod(patch))
    batch = int(budget_voxels // voxels)
    batch = min(batch, int(MAX_BATCH_FRACTION * dataset_voxels // voxels))
    return [int(p) for p in patch], max(batch, MIN_BATCH)


def memory_budget(device: Any = None) -> float:
    """Bytes a training run may plan for: a share of the CUDA device's memory, else of the machine's RAM."""
    import torch

    device = torch.device(device) if device is not None else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        return GPU_MEMORY_SHARE * torch.cuda.get_device_properties(device.index or 0).total_memory
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8e9
    return CPU_MEMORY_SHARE * float(total)


def make_plan(fp: Mapping[str, Any], task: Task, budget_bytes: float) -> dict[str, Any]:
    """The plan of a fingerprint (see the module docstring)."""
    cases = fp["cases"]
    dims = int(fp["spatial_dims"])
    spacings = np.asarray([c["spacing"] for c in cases], dtype=float)
    cropped = np.asarray([c["shape_after_crop"] for c in cases], dtype=float)
    spacing = target_spacing(spacings, cropped)
    resampled = cropped * spacings / np.asarray(spacing)
    median_shape = np.median(resampled, axis=0)
    total_voxels = float(resampled.prod(axis=1).sum())
    configurations: dict[str, Any] = {}
    if dims == 3:
        patch, batch = patch_and_batch(spacing, median_shape, budget_bytes, total_voxels)
        configurations["3d"] = {"spatial_dims": 3, "patch_size": patch, "batch_size": batch}
    # slices: the in-plane axes (all but the coarsest in 3D)
    slice_axis = int(np.argmax(spacing)) if dims == 3 else None
    inplane = [a for a in range(dims) if a != slice_axis]
    patch, batch = patch_and_batch([spacing[a] for a in inplane], median_shape[inplane], budget_bytes, total_voxels)
    configurations["2d"] = {"spatial_dims": 2, "patch_size": patch, "batch_size": batch, "slice_axis": slice_axis}
    anisotropic = anisotropic_axis(np.median(spacings, axis=0), np.median(cropped, axis=0)) is not None
    recommended = "2d" if dims == 2 or anisotropic else "3d"
    chosen = configurations[recommended]
    return {
        "version": PLAN_VERSION,
        "dataset": task.name,
        "spatial_dims": chosen["spatial_dims"],
        "image_dims": dims,
        "configuration": recommended,
        "target_spacing": spacing if fp["has_spacing"] else None,
        "median_shape": [float(s) for s in median_shape],
        "normalization": _normalization(fp),
        "patch_size": chosen["patch_size"],
        "batch_size": chosen["batch_size"],
        "configurations": configurations,
        "channels": list(task.channel_names),
        "labels": {name: list(region) for name, region in zip(task.label_names, task.regions)},
        "memory_budget_bytes": float(budget_bytes),
        "fingerprint": {
            "intensity": fp["intensity"],
            "cases": fp["cases"],
        },
    }


# ----------------------------------------------------------------------------------------------------------------------
# Caching and what the bundle configs call
# ----------------------------------------------------------------------------------------------------------------------


def dataset_listing(dataset: Dataset) -> str:
    """A digest of the dataset's files (relative names, sizes, modification times) and the budget's device kind."""
    files = {dataset.root / "dataset.json"}
    for case in dataset.training:
        files.update(Path(f) for f in ([case["image"]] if isinstance(case["image"], str) else case["image"]))
        files.add(Path(case["label"]))
    digest = hashlib.sha1()
    for f in sorted(files):
        try:
            st = f.stat()
        except OSError:
            continue
        name = os.path.relpath(f, dataset.root)
        digest.update(f"{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def plan_dataset(dataset: Dataset, path: str | os.PathLike | None = None, device: Any = None, workers: int = 2,
                 progress: bool = True) -> dict[str, Any]:
    """The plan of ``dataset``: read from ``path`` when it was made from the same file listing, else computed (and
    written to ``path`` when given)."""
    listing = dataset_listing(dataset)
    budget = memory_budget(device)
    if path is not None and Path(path).is_file():
        try:
            cached = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            cached = None
        if (isinstance(cached, dict) and cached.get("listing") == listing and cached.get("version") == PLAN_VERSION
                and cached.get("memory_budget_bytes") == budget):
            return cached
    plan = make_plan(fingerprint(dataset, workers=workers, progress=progress), dataset.task, budget)
    plan["listing"] = listing
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(Path(path), json.dumps(plan, indent=1) + "\n")
    return plan


def load_plan(path: str | os.PathLike) -> dict[str, Any]:
    """A plan file; ``DatasetError`` (one line naming it) when it is missing or not a plan."""
    p = Path(path).expanduser()
    try:
        plan = json.loads(p.read_text())
    except (OSError, ValueError) as err:
        raise DatasetError(f"plan {p} cannot be read ({err}); make one with scripts/plan.py DATASET_DIR -o {p}", p
                           ) from None
    missing = [k for k in ("spatial_dims", "target_spacing", "normalization", "patch_size", "batch_size", "channels",
                           "labels") if not isinstance(plan, dict) or k not in plan]
    if missing:
        raise DatasetError(f"plan {p} lacks {', '.join(missing)}; make one with scripts/plan.py", p)
    return plan


def _check_plan_task(plan: Mapping[str, Any], task: Task, where: Path) -> None:
    if list(plan["channels"]) != list(task.channel_names) or len(plan["normalization"]) != task.in_channels:
        raise DatasetError(f"plan {where} is for channels {plan['channels']}; the dataset has "
                           f"{list(task.channel_names)}", where)


def training_plan(dataset: Dataset, ckpt_dir: str | os.PathLike, plan: str | os.PathLike | None = None,
                  dataset_dir: str | os.PathLike | None = None, device: Any = None) -> dict[str, Any] | None:
    """The plan a training run uses, saved as ``<ckpt_dir>/plans.json`` (what inference then reads).

    Args:
        dataset: the training dataset.
        ckpt_dir: the checkpoint folder.
        plan: a plan file (``--plan PATH``); ``"none"``: no plan (the bundle's own settings); empty: the cached
            ``<ckpt_dir>/plans.json``, recomputed when the dataset's files changed.
        dataset_dir: the run's ``dataset_dir``: ``"demo"`` without a plan file plans nothing (``None``: the bundle's
            own settings, tuned for its demo task), but keeps the ``plans.json`` of the model in ``ckpt_dir`` when it
            fits the task (MONAI Label fine-tuning a model trained on its own data) and removes one that does not.
    """
    from custom_nets.data.common import is_demo

    cached = Path(ckpt_dir) / PLANS_FILE
    if isinstance(plan, str) and plan.strip().lower() == "none":  # --plan none: the bundle's own settings
        cached.unlink(missing_ok=True)
        return None
    if plan not in (None, "") and str(plan).strip():
        given = load_plan(plan)
        _check_plan_task(given, dataset.task, Path(plan))
        cached.parent.mkdir(parents=True, exist_ok=True)
        if Path(plan).resolve() != cached.resolve():
            write_text_atomic(cached, json.dumps(given, indent=1) + "\n")
        return given
    if dataset_dir is not None and is_demo(dataset_dir):
        # the demo, or MONAI Label's studies (they arrive with dataset_dir "demo" and the served model's task): a plan
        # the model in ckpt_dir was trained with stays its plan; one of other channels is stale
        if cached.is_file():
            kept = load_plan(cached)
            try:
                _check_plan_task(kept, dataset.task, cached)
                return kept
            except DatasetError:
                cached.unlink()
        return None
    result = plan_dataset(dataset, cached, device=device)
    _check_plan_task(result, dataset.task, cached)
    return result


def trained_plan(ckpt_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The plan the model in ``ckpt_dir`` was trained with (its ``plans.json``), or ``None`` (bundle defaults)."""
    path = Path(ckpt_dir) / PLANS_FILE
    return load_plan(path) if path.is_file() else None


def planned_pixdim(plan: Mapping[str, Any] | None, task: Task) -> list[float]:
    """``Spacingd``'s pixdim: the plan's target spacing, else the task's (0: keep the image's own)."""
    if plan and plan.get("target_spacing"):
        return [float(s) for s in plan["target_spacing"]]
    return task.pixdim


def _configuration(plan: Mapping[str, Any], dims: int) -> Mapping[str, Any] | None:
    config = (plan.get("configurations") or {}).get(f"{dims}d")
    if config is None and int(plan["spatial_dims"]) == dims:
        config = plan
    return config


def planned_patch_size(plan: Mapping[str, Any] | None, default: Sequence[int],
                       divisor: int | Sequence[int] = 1) -> list[int]:
    """The plan's patch size for a network of ``len(default)`` dimensions, at most ``default`` per axis (the bundle's
    window, the largest its network was sized for) and rounded up to the network's size ``divisor`` (a plan rounds
    to :data:`PATCH_DIVISOR`, which LinkNet's 32 does not divide); ``default`` without a plan. 2D patches are square
    (the plan's largest side): the 2D bundles train square patches, which their random rotations keep in shape."""
    config = _configuration(plan, len(default)) if plan else None
    if config is None:
        return list(default)
    patch = [max(config["patch_size"])] * 2 if len(default) == 2 else config["patch_size"]
    divisors = [int(divisor)] * len(default) if isinstance(divisor, (int, float)) else [int(d) for d in divisor]
    return [int(min(_round_up(p, k), d)) for p, d, k in zip(patch, default, divisors)]


def planned_batch_size(plan: Mapping[str, Any] | None, default: int, spatial_dims: int) -> int:
    """The plan's batch size for a ``spatial_dims`` network, at most the bundle's ``default``; ``default`` without a
    plan."""
    config = _configuration(plan, spatial_dims) if plan else None
    if config is None:
        return int(default)
    return int(min(int(config["batch_size"]), int(default)))
