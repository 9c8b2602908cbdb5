"""Synthetic BraTS-layout demo cases (the BraTS demo of :func:`custom_nets.data.demo.make_demo` is converted from
them by :mod:`custom_nets.convert.brats`, which also reads real BraTS folders).

Layout (BraTS 2020/2021, and the synthetic demo)::

    dataset_dir/
        <case>/<case>_flair.nii.gz  <case>_t1.nii.gz  <case>_t1ce.nii.gz  <case>_t2.nii.gz  <case>_seg.nii.gz

BraTS 2023 names ``<case>-t2f`` (FLAIR), ``-t1n`` (T1), ``-t1c`` (T1ce), ``-t2w`` (T2) and ``-seg`` are read too, and
``.nii`` works wherever ``.nii.gz`` does. Labels follow BraTS: 1 necrotic / non-enhancing core, 2 oedema,
4 enhancing tumour (3 in BraTS 2023).

Public API: :func:`generate_brats_demo` writes deterministic synthetic cases in that layout.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from .common import check_int, demo_description, demo_marker, generate_case_folders, is_nonempty_file

__all__ = [
    "MODALITIES",
    "LABELS",
    "generate_brats_demo",
]


MODALITIES = ("flair", "t1", "t1ce", "t2")
"""Image channels, in the order of the ``"image"`` list of every datalist entry."""

LABELS = {0: "background", 1: "necrotic / non-enhancing tumour core", 2: "peritumoral oedema", 4: "enhancing tumour"}
"""BraTS 2020/2021 label values (BraTS 2023 uses 3 for enhancing tumour)."""

# ----------------------------------------------------------------------------------------------------------------------
# Synthetic demo data
# ----------------------------------------------------------------------------------------------------------------------

DEMO_CASE_PREFIX = "DEMO_"
_DEMO_GENERATOR_VERSION = 1
_GENERATOR = "custom_nets.data.brats.generate_brats_demo"
_MIN_SIZE = 24

# Tissue classes of the generator: rows of _CONTRAST.
_BACKGROUND, _WHITE_MATTER, _GREY_MATTER, _CSF, _NECROSIS, _ENHANCING, _OEDEMA = range(7)

# Mean intensity of each tissue class (rows, as above) in each modality (columns: flair, t1, t1ce, t2).
# Oedema is bright on FLAIR and T2, the enhancing rim bright on T1ce, necrosis dark on T1 and T1ce, CSF bright on T2.
_CONTRAST = np.array(
    [
        [0.0, 0.0, 0.0, 0.0],
        [330.0, 620.0, 630.0, 280.0],
        [430.0, 450.0, 470.0, 430.0],
        [110.0, 170.0, 180.0, 880.0],
        [420.0, 190.0, 220.0, 820.0],
        [600.0, 430.0, 960.0, 560.0],
        [820.0, 390.0, 410.0, 740.0],
    ],
    dtype=np.float32,
)

# Shape parameters. Radii are fractions of the brain's semi-axes (tumour) or of the region's own radii (sub-regions).
_BRAIN_FRACTION = (0.38, 0.42, 0.38)  # brain semi-axes as fractions of the volume size (x, y, z)
_BRAIN_ROUGHNESS = 0.04
_CORTEX_DEPTH = 0.86  # normalised brain radius beyond which the cortex (grey matter) starts
_TUMOUR_ROUGHNESS = 0.22
_NOISE_CLIP = 2.5  # smooth noise fields are unit RMS, clipped to +-_NOISE_CLIP
_RIM_VOXELS = 2  # enhancing rim: at least this thick around the necrosis
_OEDEMA_VOXELS = 3  # oedema: at least this thick around the tumour core
_TUMOUR_LIMIT = 0.84  # the dilated core stays inside this normalised brain radius (below the rough brain surface)


def _demo_case_name(index: int) -> str:
    return f"{DEMO_CASE_PREFIX}{index:03d}"


def _demo_affine(shape: Sequence[int]) -> np.ndarray:
    """Voxel-to-world affine of the demo cases, ``(4, 4)`` float64.

    1 mm isotropic, LPS-like axes (``diag(-1, -1, 1)``, as in BraTS files) and a nonzero origin, so that reorienting
    to RAS and writing back is a real geometry round trip. The volume centre sits at world (-5, 17, 12) mm.
    """
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])
    centre = (np.asarray(shape, dtype=np.float64) - 1.0) / 2.0
    affine[:3, 3] = np.array([-5.0, 17.0, 12.0]) - affine[:3, :3] @ centre
    return affine


def _axis_coords(box: Sequence[slice]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Voxel coordinates (float64, 1-D) of the three axes of ``box``, a tuple of three slices with explicit bounds."""
    return tuple(np.arange(s.start, s.stop, dtype=np.float64) for s in box)  # type: ignore[return-value]


def _smooth_noise(
    rng: np.random.Generator,
    coords: Sequence[np.ndarray],
    wavelength: tuple[float, float],
    n_waves: int = 6,
) -> np.ndarray:
    """A smooth random field: a sum of plane waves with random directions, phases and wavelengths.

    Args:
        rng: source of the random wave parameters (drawn before, and independently of, the grid).
        coords: 1-D voxel coordinates ``(x, y, z)`` of the grid to evaluate on; absolute coordinates, so a field drawn
            with the same parameters agrees between a sub-box and the full volume.
        wavelength: ``(shortest, longest)`` wavelength in voxels.
        n_waves: number of plane waves.

    Returns:
        float32 array of shape ``(len(x), len(y), len(z))``, about unit RMS, clipped to ``[-2.5, 2.5]``.
    """
    direction = rng.normal(size=(n_waves, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True) + 1e-12
    wavenumber = 2.0 * np.pi / rng.uniform(wavelength[0], wavelength[1], size=n_waves)
    phase = rng.uniform(0.0, 2.0 * np.pi, size=n_waves)
    x, y, z = coords
    field = np.zeros((len(x), len(y), len(z)), dtype=np.float32)
    for k in range(n_waves):
        kx, ky, kz = direction[k] * wavenumber[k]
        arg_x = (kx * x + phase[k]).astype(np.float32)
        arg_y = (ky * y).astype(np.float32)
        arg_z = (kz * z).astype(np.float32)
        field += np.cos(arg_x[:, None, None] + arg_y[None, :, None] + arg_z[None, None, :])
    field *= np.float32(math.sqrt(2.0 / n_waves))
    return np.clip(field, -_NOISE_CLIP, _NOISE_CLIP, out=field)


def _ellipsoid_radius(coords: Sequence[np.ndarray], centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Normalised ellipsoidal radius ``sqrt(sum_i ((p_i - centre_i) / radii_i)^2)`` on the grid of ``coords``.

    Returns float32 of shape ``(len(x), len(y), len(z))``; values below 1 are inside the ellipsoid.
    """
    sx, sy, sz = (((c - c0) / r) ** 2 for c, c0, r in zip(coords, centre, radii))
    r2 = sx.astype(np.float32)[:, None, None] + sy.astype(np.float32)[None, :, None] + sz.astype(np.float32)[None, None, :]
    return np.sqrt(r2, out=r2)


def _irregular_blob(
    rng: np.random.Generator,
    coords: Sequence[np.ndarray],
    centre: np.ndarray,
    radii: np.ndarray,
    roughness: float,
) -> np.ndarray:
    """Boolean mask of an ellipsoid whose surface is perturbed by low-frequency noise.

    Inside where ``radius < 1 + roughness * noise``, with noise wavelengths of 1.2 to 3 mean radii, so the blob is
    lobulated rather than spiky. Never extends beyond ``radii * (1 + 2.5 * roughness)``. Shape like ``coords``.
    """
    mean_radius = float(np.mean(radii))
    noise = _smooth_noise(rng, coords, (1.2 * mean_radius, 3.0 * mean_radius), n_waves=5)
    return _ellipsoid_radius(coords, centre, radii) < 1.0 + roughness * noise


def _dilate(mask: np.ndarray, iterations: int) -> np.ndarray:
    """Binary dilation with the 6-connected cross, ``iterations`` times (no wrap-around at the array borders)."""
    out = mask.copy()
    for _ in range(iterations):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        grown[:, :, 1:] |= out[:, :, :-1]
        grown[:, :, :-1] |= out[:, :, 1:]
        out = grown
    return out


def _blur(volume: np.ndarray) -> np.ndarray:
    """Separable ``[1, 2, 1] / 4`` smoothing along each axis (zero padding), float32, same shape: partial volume."""
    out = volume
    for axis in range(3):
        src = np.moveaxis(out, axis, 0)
        res = 0.5 * src
        res[1:] += 0.25 * src[:-1]
        res[:-1] += 0.25 * src[1:]
        out = np.moveaxis(res, 0, axis)
    return np.ascontiguousarray(out, dtype=np.float32)


def _brain(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Brain-like ellipsoid with a rough surface.

    Returns:
        ``(depth, centre, semi_axes, tissue)``: ``depth`` float32 ``shape``, the normalised brain radius (below 1 is
        brain, above the cortex depth is cortex); ``centre`` and ``semi_axes`` (3,) float64 in voxels; ``tissue`` int8
        ``shape`` with white matter, grey matter (cortex) and CSF (two ventricles) classes.
    """
    size = np.asarray(shape, dtype=np.float64)
    centre = (size - 1.0) / 2.0 + rng.uniform(-0.02, 0.02, size=3) * size
    semi_axes = size * np.asarray(_BRAIN_FRACTION) * rng.uniform(0.95, 1.03, size=3)
    coords = _axis_coords(tuple(slice(0, n) for n in shape))
    surface = _smooth_noise(rng, coords, (0.8 * semi_axes.min(), 2.0 * semi_axes.max()), n_waves=6)
    depth = _ellipsoid_radius(coords, centre, semi_axes) / (1.0 + _BRAIN_ROUGHNESS * surface)
    cortex = _smooth_noise(rng, coords, (4.0, 12.0), n_waves=6)

    tissue = np.full(shape, _WHITE_MATTER, dtype=np.int8)
    tissue[depth > _CORTEX_DEPTH + 0.025 * cortex] = _GREY_MATTER
    for side in (-1.0, 1.0):
        v_centre = centre + semi_axes * np.array([0.14 * side, -0.05, 0.12]) + rng.normal(0.0, 0.5, size=3)
        v_radii = np.maximum(semi_axes * np.array([0.07, 0.30, 0.13]) * rng.uniform(0.85, 1.15, size=3), 1.0)
        tissue[_irregular_blob(rng, coords, v_centre, v_radii, 0.2)] = _CSF
    tissue[depth >= 1.0] = _BACKGROUND
    return depth, centre, semi_axes, tissue


def _tumour_box(centre: np.ndarray, extent: np.ndarray, shape: Sequence[int]) -> tuple[slice, slice, slice]:
    """Slices of the box ``centre +- extent`` (voxels), clipped to the volume."""
    lo = np.maximum(np.floor(centre - extent).astype(int), 0)
    hi = np.minimum(np.ceil(centre + extent).astype(int) + 1, np.asarray(shape))
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))  # type: ignore[return-value]


def _tumour(
    rng: np.random.Generator,
    depth: np.ndarray,
    brain_centre: np.ndarray,
    brain_axes: np.ndarray,
    scale: float,
) -> tuple[tuple[slice, slice, slice], np.ndarray, np.ndarray, np.ndarray] | None:
    """One attempt at a nested tumour: necrosis inside an enhancing rim (the core) inside oedema.

    The core plus its oedema margin is placed entirely inside the brain; the oedema itself may reach the brain surface
    and is cut there. Construction guarantees the nesting: core = blob | dilate(necrosis, 2), whole tumour =
    (blob | dilate(core, 3)) & brain.

    Args:
        rng: random source.
        depth: normalised brain radius (float32, volume shape); brain where ``< 1``.
        brain_centre, brain_axes: brain ellipsoid centre and semi-axes, (3,) voxels.
        scale: whole-tumour semi-axes as a fraction of the brain's.

    Returns:
        ``(box, whole, core, necrosis)`` with boolean masks of the box's shape, or ``None`` if the draw failed the
        containment check (the caller draws again).
    """
    wt_radii = scale * brain_axes * rng.uniform(0.85, 1.15, size=3)
    core_radii = wt_radii * rng.uniform(0.5, 0.68) * rng.uniform(0.9, 1.1, size=3)
    nec_radii = np.maximum(core_radii * rng.uniform(0.5, 0.7), 0.75)
    growth = 1.0 + _NOISE_CLIP * _TUMOUR_ROUGHNESS

    # Position: uniform in the ball of normalised brain coordinates that keeps the dilated core inside the brain.
    core_reach = float(np.max(core_radii * growth / brain_axes))
    margin = (_OEDEMA_VOXELS + 1.0) / float(brain_axes.min())
    room = max(_TUMOUR_LIMIT - core_reach - margin, 0.0)
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction) + 1e-12
    centre = brain_centre + brain_axes * direction * room * rng.uniform() ** (1.0 / 3.0)

    extent = np.maximum(wt_radii * growth, core_radii * growth + _OEDEMA_VOXELS) + _RIM_VOXELS + 2.0
    box = _tumour_box(centre, extent, depth.shape)
    coords = _axis_coords(box)
    brain = depth[box] < 1.0

    necrosis = _irregular_blob(rng, coords, centre, nec_radii, _TUMOUR_ROUGHNESS)
    necrosis[tuple(int(round(c - s.start)) for c, s in zip(centre, box))] = True
    core = _irregular_blob(rng, coords, centre, core_radii, _TUMOUR_ROUGHNESS) | _dilate(necrosis, _RIM_VOXELS)
    core_margin = _dilate(core, _OEDEMA_VOXELS)
    whole = (_irregular_blob(rng, coords, centre, wt_radii, _TUMOUR_ROUGHNESS) | core_margin) & brain

    inside = depth[box] < _TUMOUR_LIMIT + 0.5 * (1.0 - _TUMOUR_LIMIT)
    touches_box_edge = any(np.take(core_margin, i, axis=a).any() for a in range(3) for i in (0, -1))
    if (core_margin & ~inside).any() or touches_box_edge:
        return None
    return box, whole, core, necrosis


def _demo_case(seed: int, index: int, shape: tuple[int, int, int]) -> tuple[list[np.ndarray], np.ndarray]:
    """Voxel data of one synthetic case.

    Deterministic in ``(seed, index, shape)``: the random stream depends on the seed and the case index only, so case
    ``DEMO_003`` is the same whatever the number of cases generated.

    Returns:
        ``(images, seg)``: four float32 arrays of ``shape`` in :data:`MODALITIES` order (0 outside the brain,
        >= 1 inside) and the uint8 label map of ``shape`` (0, 1 necrosis, 2 oedema, 4 enhancing).
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 0x62726174]))
    depth, brain_centre, brain_axes, tissue = _brain(rng, shape)

    scale = rng.uniform(0.28, 0.42)
    for _ in range(20):
        result = _tumour(rng, depth, brain_centre, brain_axes, scale)
        if result is not None:
            break
        scale *= 0.9
    else:  # pragma: no cover - the placement rule makes this unreachable for shapes >= _MIN_SIZE
        raise RuntimeError(f"could not place a tumour inside the brain of demo case {index} (shape {shape})")
    box, whole, core, necrosis = result

    seg = np.zeros(shape, dtype=np.uint8)
    seg_box = seg[box]
    seg_box[whole] = 2
    seg_box[core] = 4
    seg_box[necrosis] = 1
    tissue_box = tissue[box]
    tissue_box[whole] = _OEDEMA
    tissue_box[core] = _ENHANCING
    tissue_box[necrosis] = _NECROSIS

    images = _render(rng, tissue, depth < 1.0)
    return images, seg


def _render(rng: np.random.Generator, tissue: np.ndarray, brain: np.ndarray) -> list[np.ndarray]:
    """MR-like intensities of a tissue-class map, one float32 volume per modality.

    Per modality: the class means of :data:`_CONTRAST` (jittered per case by +-7 %) with a shared +-6 % tissue
    texture, a partial-volume blur, a smooth multiplicative bias field (about +-15 %) and Gaussian noise; then
    exactly 0 outside ``brain`` and at least 1 inside it.
    """
    shape = tissue.shape
    coords = _axis_coords(tuple(slice(0, n) for n in shape))
    contrast = _CONTRAST * rng.uniform(0.93, 1.07, size=_CONTRAST.shape).astype(np.float32)
    texture = 1.0 + 0.06 * _smooth_noise(rng, coords, (3.0, 10.0), n_waves=12)
    longest = float(max(shape))
    images = []
    for m in range(len(MODALITIES)):
        clean = _blur(contrast[tissue, m] * texture)
        bias = np.exp(0.08 * _smooth_noise(rng, coords, (1.5 * longest, 4.0 * longest), n_waves=3))
        sigma = np.float32(rng.uniform(12.0, 25.0))
        noisy = clean * bias + sigma * rng.standard_normal(shape, dtype=np.float32)
        images.append(np.where(brain, np.maximum(noisy, np.float32(1.0)), np.float32(0.0)).astype(np.float32))
    return images


def _save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    """Write ``array`` with ``affine`` as both qform and sform (scanner space, mm), keeping its dtype."""
    image = nib.Nifti1Image(array, affine)
    image.header.set_xyzt_units("mm", "sec")
    image.header["descrip"] = b"custom_nets synthetic BraTS demo"
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, str(path))


def _demo_file_names(case: str) -> list[str]:
    return [f"{case}_{m}.nii.gz" for m in (*MODALITIES, "seg")]


def _case_is_complete(case_dir: Path) -> bool:
    """True if ``case_dir`` holds all five files of a demo case, none of them empty."""
    return all(is_nonempty_file(case_dir / name) for name in _demo_file_names(case_dir.name))


def _demo_parameters(num_cases: int, shape: tuple[int, int, int], seed: int) -> dict[str, Any]:
    return {"generator_version": _DEMO_GENERATOR_VERSION, "num_cases": num_cases, "shape": list(shape), "seed": seed}


def _demo_marker(parameters: dict[str, Any]) -> dict[str, Any]:
    """Contents of ``dataset.json``: what the folder is, how it was made, and what the files hold."""
    return demo_marker(
        "custom_nets synthetic BraTS demo",
        demo_description(_GENERATOR, "MRI"),
        parameters,
        generator=_GENERATOR,
        spacing_mm=[1.0, 1.0, 1.0],
        modalities=list(MODALITIES),
        labels={str(k): v for k, v in LABELS.items()},
        cases=[_demo_case_name(i) for i in range(parameters["num_cases"])],
    )


_README_TEXT = """SYNTHETIC BraTS-layout demo data (not real MRI, not patient data)

Generated by custom_nets.data.brats.generate_brats_demo (scripts/make_demo_data.py); parameters in dataset.json.
Each case folder holds <case>_{flair,t1,t1ce,t2}.nii.gz (float32, 0 outside the brain) and <case>_seg.nii.gz
(uint8 BraTS labels: 1 necrosis, 2 oedema, 4 enhancing tumour), 1 mm voxels.
A brain-like ellipsoid (white matter, cortex, ventricles) holds one irregular tumour: oedema around a core made of an
enhancing rim around necrosis, each region with its own contrast per modality, plus a smooth bias field and noise.
It exists to exercise the pipeline end to end; scores on it say nothing about real data.
Delete this folder to regenerate it.
"""


def _write_demo_case(folder: Path, case: str, seed: int, index: int, shape: tuple[int, int, int]) -> None:
    """Generate case ``index`` into ``folder``, its files named after ``case``."""
    images, seg = _demo_case(seed, index, shape)
    affine = _demo_affine(shape)
    for name, array in zip(_demo_file_names(case), [*images, seg]):
        _save_nifti(array, affine, folder / name)


def _check_demo_arguments(num_cases: int, shape: Sequence[int], seed: int) -> tuple[int, int, int]:
    """Validate the generator's arguments; returns the shape as a tuple of three ints."""
    check_int("num_cases", num_cases, 1)
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < _MIN_SIZE:
        raise ValueError(f"shape must be three sizes of at least {_MIN_SIZE} voxels, got {shape!r}")
    check_int("seed", seed, 0)
    return shape  # type: ignore[return-value]


def generate_brats_demo(
    out_dir: str | os.PathLike,
    num_cases: int = 8,
    shape: Sequence[int] = (96, 96, 64),
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Generate (or reuse) synthetic BraTS-layout cases: ``out_dir/DEMO_000/DEMO_000_{flair,t1,t1ce,t2,seg}.nii.gz``.

    Every case is a brain-like ellipsoid (white matter, a cortex rim, two CSF ventricles) on an exactly zero
    background, holding one irregular tumour at a random position and size: oedema (label 2) around a tumour core made
    of an enhancing rim (label 4) around necrosis (label 1); all three labels are always present. Each region has its
    own contrast in each modality (oedema bright on FLAIR and T2, the rim bright on T1ce, necrosis dark on T1 and T1ce),
    plus tissue texture, a partial-volume blur, a smooth multiplicative bias field and Gaussian noise.

    Images are float32 of ``shape`` (roughly 0..1000 in the brain, exactly 0 outside it, so nonzero normalisation
    works), the segmentation uint8; all files of a case share one affine: 1 mm voxels, ``diag(-1, -1, 1)`` axes and a
    nonzero origin.

    Deterministic: the same ``seed`` and ``shape`` give the same voxel data (case ``i`` depends on ``(seed, i, shape)``
    only). Each case is written into a hidden temporary folder and renamed into place, so an interrupted run never
    leaves a half-written case, and a rerun completes what is missing. ``dataset.json`` (parameters, labels, case list)
    and ``README.txt`` mark the folder as synthetic demo data.

    Args:
        out_dir: folder to write into (created if needed).
        num_cases: number of cases, named ``DEMO_000`` ... .
        shape: volume size ``(x, y, z)`` in voxels, each at least 24.
        seed: random seed.
        overwrite: regenerate even if the folder already holds demo data; previous ``DEMO_*`` case folders are deleted
            (nothing else in the folder is touched).

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: invalid ``num_cases``, ``shape`` or ``seed``.
        DatasetError: ``out_dir`` is a file, or (without ``overwrite``) holds demo data made with other parameters or
            ``DEMO_*`` folders without a marker.
    """
    shape = _check_demo_arguments(num_cases, shape, seed)
    parameters = _demo_parameters(int(num_cases), shape, int(seed))
    return generate_case_folders(
        Path(out_dir).expanduser(),
        parameters,
        overwrite,
        names=[_demo_case_name(i) for i in range(int(num_cases))],
        prefix=DEMO_CASE_PREFIX,
        is_complete=_case_is_complete,
        write=lambda folder, index, case: _write_demo_case(folder, case, int(seed), index, shape),
        items="BraTS demo cases",
        generator=_GENERATOR,
        marker=_demo_marker(parameters),
        readme=_README_TEXT,
        check_marker_on_overwrite=True,
        overwrite_hint="overwrite=True (--overwrite)",
    )
