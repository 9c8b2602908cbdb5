"""Synthetic UW-Madison GI Tract Image Segmentation (Kaggle 2022) demo data in the competition layout, and the
run-length encoding the demo's ``train.csv`` and the GI bundles' ``submission.csv`` are written with.

The layout, its discovery (run-length decoding, the mask cache, case-level splits, 2.5D neighbour stacks) and the
competition-layout datalist of ``evaluate_uwmadison.json`` are :mod:`custom_nets.convert.uwmadison`; the uwmadison demo
of :func:`custom_nets.data.demo.make_demo` is converted from this demo by it.

Public API: :data:`CLASSES`, :data:`CSV_COLUMNS`, :func:`rle_encode`, :func:`masks_to_rle_rows`,
:func:`generate_uwmadison_demo`.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .common import check_int, demo_description, demo_marker, prepare_demo_dir
from ..files import atomic_folder, remove_stale_partials, write_text_atomic

__all__ = ["CLASSES", "CSV_COLUMNS", "generate_uwmadison_demo", "masks_to_rle_rows", "rle_encode"]

logger = logging.getLogger(__name__)

CLASSES: tuple[str, ...] = ("large_bowel", "small_bowel", "stomach")
"""Organ classes, in the channel order of the cached masks and of the network outputs."""

CSV_COLUMNS: tuple[str, ...] = ("id", "class", "segmentation")
"""Columns ``train.csv`` must have."""

_CSV_NAME = "train.csv"
_IMAGE_SUBDIR = "train"
_DEFAULT_CACHE = ".uwmadison_masks"


# ----------------------------------------------------------------------------------------------------------------------
# Run-length encoding
# ----------------------------------------------------------------------------------------------------------------------


def rle_encode(mask: np.ndarray) -> str:
    """Encode a 2D mask (nonzero = foreground) as a Kaggle run-length string; ``""`` for an empty mask.

    Pixels are numbered row by row (C order over ``(height, width)``), starts 1-indexed, runs sorted and maximal;
    ``rle_decode(rle_encode(m), m.shape) == (m != 0)`` (:func:`custom_nets.convert.uwmadison.rle_decode`).
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


def _slice_id(case: int, day: int, k: int) -> str:
    return f"case{case}_day{day}_slice_{k:04d}"


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
        demo_description(_DEMO_GENERATOR, "MRI"),
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
