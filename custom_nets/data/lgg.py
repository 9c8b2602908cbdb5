"""LGG MRI slice datasets: synthetic demo patients in the Kaggle layout, class weights.

Layout (Kaggle "lgg-mri-segmentation", folder ``kaggle_3m``; Buda et al., Computers in Biology and Medicine 2019)::

    dataset_dir/
        <patient>/<patient>_<n>.tif        256x256x3 uint8: pre-contrast, FLAIR, post-contrast (as R, G, B)
        <patient>/<patient>_<n>_mask.tif   256x256 uint8 tumour mask, 0 or 255

with patient folders such as ``TCGA_CS_4941_19960909`` and slice numbers ``n = 1, 2, ...`` (not zero-padded, so
discovery sorts them numerically). Plain files next to the patient folders (``data.csv``, ``README.md``) are
ignored. Many slices have an all-zero mask (no tumour on that slice).

Public API:

- :func:`generate_lgg_demo` writes deterministic synthetic patients in that layout (the lgg demo of
  :func:`custom_nets.data.demo.make_demo` is converted from them by :mod:`custom_nets.convert.lgg`, which also reads
  real folders: :func:`custom_nets.convert.lgg.find_lgg_slices`).
- :func:`foreground_fraction` and :func:`positive_class_weight` give the tumour-pixel fraction of a set of masks and
  the matching positive-class weight ``(1 - f) / f`` for a weighted cross-entropy (``BCEWithLogitsLoss(pos_weight)``,
  see :func:`custom_nets.losses.segmentation.segmentation_loss`).

Recommended MONAI transform chain
---------------------------------
MONAI reads the slices as they are; nothing custom is needed (verified in ``tests/data/test_lgg.py``)::

    LoadImaged(keys=["image", "label"], reader="PILReader", image_only=True)
    EnsureChannelFirstd(keys=["image", "label"])            # image (3, W, H), label (1, W, H)
    ScaleIntensityRanged(keys="image", a_min=0, a_max=255, b_min=0.0, b_max=1.0, clip=True)   # float32 in [0, 1]
    AsDiscreted(keys="label", threshold=0.5)                # {0, 1} float32, for 0/255 and 0/1 masks alike

For inference use ``keys="image"`` only. Give ``reader="PILReader"`` explicitly: MONAI's automatic choice by file
extension does not give ``.tif`` to the PIL reader (it falls to ITK if installed, which happens to load the same
arrays, but PIL is the dependency-free, predictable choice).

*Orientation.* ``PILReader`` swaps the first two axes by default (``reverse_indexing=True``, the ITK/NIfTI "x first"
convention), so in memory a slice is ``(C, W, H)``: the transpose of ``numpy.asarray(PIL.Image.open(path))``, for
images and masks alike (so they stay aligned; the LGG slices are square, so the shapes do not even change). MONAI's
``PILWriter`` swaps them back by default, so predictions saved with::

    SaveImaged(keys="pred", writer="PILWriter", output_ext=".tif", output_dtype=np.uint8, scale=255,
               resample=False, output_postfix="mask", separate_folder=False)

(after ``AsDiscreted(keys="pred", threshold=0.5)`` on the sigmoid) have the original orientation of the input
``.tif``, as 0/255 masks like the dataset's own. Do not mix conventions: loading with ``reverse_indexing=False`` gives
``(C, H, W)`` but then ``PILWriter`` (whose ``write`` swaps axes unless told otherwise, an option ``SaveImaged`` does
not expose) writes transposed masks.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .common import check_int, demo_description, demo_marker, generate_case_folders, is_nonempty_file
from .errors import DatasetError

__all__ = [
    "CHANNELS",
    "generate_lgg_demo",
    "foreground_fraction",
    "positive_class_weight",
]


CHANNELS = ("pre-contrast", "flair", "post-contrast")
"""The three MR sequences stored as the R, G, B channels of every LGG slice, in that order."""


# ----------------------------------------------------------------------------------------------------------------------
# Synthetic demo data
# ----------------------------------------------------------------------------------------------------------------------

DEMO_PATIENT_PREFIX = "DEMO_LGG_"
_DEMO_GENERATOR_VERSION = 1
_GENERATOR = "custom_nets.data.lgg.generate_lgg_demo"
_MIN_SIZE = 32
_MIN_SLICES = 2

# Mean intensity (0..255) of each tissue class (rows) in each channel (columns: pre-contrast, FLAIR, post-contrast).
# Lower-grade gliomas are bright on FLAIR, slightly dark on pre-contrast T1 and mostly non-enhancing.
_WHITE_MATTER, _GREY_MATTER, _CSF, _LESION = range(4)
_CONTRAST = np.array(
    [
        [150.0, 92.0, 140.0],
        [112.0, 118.0, 112.0],
        [45.0, 40.0, 50.0],
        [96.0, 215.0, 128.0],
    ],
    dtype=np.float32,
)


def _demo_patient_name(index: int) -> str:
    return f"{DEMO_PATIENT_PREFIX}{index:03d}"


def _image_name(patient: str, n: int) -> str:
    return f"{patient}_{n}.tif"


def _mask_name(patient: str, n: int) -> str:
    return f"{patient}_{n}_mask.tif"


class _WaveField:
    """A smooth random 3-D field (a sum of plane waves) evaluated one slice at a time; about unit RMS."""

    def __init__(self, rng: np.random.Generator, wavelength: tuple[float, float], n_waves: int = 6) -> None:
        direction = rng.normal(size=(n_waves, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True) + 1e-12
        self.k = direction * (2.0 * np.pi / rng.uniform(wavelength[0], wavelength[1], size=n_waves))[:, None]
        self.phase = rng.uniform(0.0, 2.0 * np.pi, size=n_waves)
        self.scale = math.sqrt(2.0 / n_waves)

    def __call__(self, yy: np.ndarray, xx: np.ndarray, z: float) -> np.ndarray:
        """The field on the grid ``(yy, xx)`` (2-D, pixels) at depth ``z`` (pixels), float32 of the grid's shape."""
        out = np.zeros(yy.shape, dtype=np.float32)
        for (ky, kx, kz), phase in zip(self.k, self.phase):
            out += np.cos(ky * yy + kx * xx + (kz * z + phase)).astype(np.float32)
        return out * np.float32(self.scale)


def _angular_profile(rng: np.random.Generator, roughness: float, n_harmonics: int = 4) -> np.ndarray:
    """Random rows ``(order, amplitude, phase)``, shape ``(n_harmonics, 3)``, of a radius perturbation.

    The outline of :func:`_blob_depth` is ``1 + sum_k amplitude_k cos(order_k theta + phase_k)``.
    """
    orders = np.arange(2, 2 + n_harmonics, dtype=np.float64)
    amplitudes = roughness * rng.uniform(0.3, 1.0, size=n_harmonics) / orders
    phases = rng.uniform(0.0, 2.0 * np.pi, size=n_harmonics)
    return np.stack([orders, amplitudes, phases], axis=1)


def _blob_depth(
    yy: np.ndarray, xx: np.ndarray, centre: tuple[float, float], radii: tuple[float, float], profile: np.ndarray
) -> np.ndarray:
    """Signed distance-like depth (pixels) inside an ellipse with a lobulated outline: positive inside, 0 on the edge.

    ``depth = r_mean * (1 + sum_k a_k cos(k theta + p_k) - rho)`` with ``rho`` the normalised elliptical radius.
    """
    dy = (yy - centre[0]) / radii[0]
    dx = (xx - centre[1]) / radii[1]
    rho = np.sqrt(dy * dy + dx * dx)
    theta = np.arctan2(dy, dx)
    outline = np.ones_like(rho)
    for order, amplitude, phase in profile:
        outline += amplitude * np.cos(order * theta + phase)
    return (0.5 * (radii[0] + radii[1]) * (outline - rho)).astype(np.float32)


def _demo_patient(seed: int, index: int, n_slices: int, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pixel data of one synthetic patient: ``n_slices`` pairs ``(image, mask)``.

    ``image`` is uint8 ``(size, size, 3)`` (pre-contrast, FLAIR, post-contrast), ``mask`` uint8 ``(size, size)``.

    Deterministic in ``(seed, index, n_slices, size)``; the random stream depends on ``(seed, index)`` only.

    The patient is a stack of axial slices through a brain-like ellipsoid (white matter, a cortex rim, two ventricles,
    textured, noisy, exactly 0 outside the head) that narrows towards the first and last slice. A lobulated lesion
    spans a contiguous block of about half of the slices in the middle of the stack, largest at its centre; it is bright
    on FLAIR (channel 1), darker on pre-contrast and faintly enhancing on post-contrast. Masks are 255 on the lesion,
    0 elsewhere (all 0 on the slices without lesion).
    """
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 0x4C4747]))
    yy, xx = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32), indexing="ij")
    slice_step = size / 32.0  # pixels between slices: the stack is about as deep as the brain is wide
    mid = (n_slices - 1) / 2.0

    jitter = rng.uniform(-0.03, 0.03, size=2) * size
    brain_centre = ((size - 1) / 2.0 + jitter[0], (size - 1) / 2.0 + jitter[1])
    brain_radii = (size * rng.uniform(0.38, 0.43), size * rng.uniform(0.31, 0.36))
    brain_profile = _angular_profile(rng, 0.06)
    cortex_field = _WaveField(rng, (4.0, 14.0))
    texture_field = _WaveField(rng, (3.0, 10.0))
    bias_fields = [_WaveField(rng, (1.5 * size, 4.0 * size), n_waves=3) for _ in CHANNELS]
    contrast = _CONTRAST * rng.uniform(0.93, 1.07, size=_CONTRAST.shape).astype(np.float32)
    noise_sigma = rng.uniform(3.0, 6.0, size=len(CHANNELS)).astype(np.float32)

    # lesion: a contiguous block of about half the slices, centred within the middle of the stack
    n_lesion = min(max(int(round(n_slices * rng.uniform(0.42, 0.58))), 1), n_slices)
    slack = n_slices - n_lesion
    first = min(max(slack // 2 + int(rng.integers(-1, 2)), 0), slack)
    lesion_radius = size * rng.uniform(0.08, 0.14)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    offset = rng.uniform(0.15, 0.45)
    lesion_centre = (
        brain_centre[0] + offset * brain_radii[0] * math.sin(angle),
        brain_centre[1] + offset * brain_radii[1] * math.cos(angle),
    )
    lesion_profile = _angular_profile(rng, 0.35)
    lesion_drift = rng.normal(0.0, 0.6, size=2)  # pixels per slice

    slices = []
    for k in range(n_slices):
        z = (k - mid) / (mid + 1.0)  # in (-1, 1): position in the stack
        shrink = math.sqrt(max(1.0 - 0.85 * z * z, 0.05))
        radii = (brain_radii[0] * shrink, brain_radii[1] * shrink)
        depth = _blob_depth(yy, xx, brain_centre, radii, brain_profile)
        brain = depth > 0.0
        rel_depth = depth / np.float32(0.5 * (radii[0] + radii[1]))  # 0 at the surface, about 1 at the centre

        tissue = np.full((size, size), _WHITE_MATTER, dtype=np.int8)
        tissue[rel_depth < 0.16 + 0.04 * cortex_field(yy, xx, k * slice_step)] = _GREY_MATTER
        for side in (-1.0, 1.0):
            v_centre = (brain_centre[0] - 0.05 * radii[0], brain_centre[1] + side * 0.16 * radii[1])
            v_radii = (max(0.28 * radii[0] * (1.0 - abs(z)), 0.5), max(0.07 * radii[1], 0.5))
            tissue[_blob_depth(yy, xx, v_centre, v_radii, brain_profile) > 0.0] = _CSF

        lesion = np.zeros((size, size), dtype=np.float32)  # partial-volume lesion fraction in [0, 1]
        if first <= k < first + n_lesion:
            t = (k - first + 0.5) / n_lesion * 2.0 - 1.0  # in (-1, 1) across the lesion's slices
            r = max(lesion_radius * math.sqrt(1.0 - t * t), 2.5)
            shift = lesion_drift * (k - first)
            centre = (lesion_centre[0] + shift[0], lesion_centre[1] + shift[1])
            lesion_depth = _blob_depth(yy, xx, centre, (r, r * 1.15), lesion_profile)
            lesion = np.clip(lesion_depth / 1.5 + 0.5, 0.0, 1.0) * (rel_depth > 0.08)
        mask = (lesion >= 0.5).astype(np.uint8) * np.uint8(255)

        texture = 1.0 + 0.05 * texture_field(yy, xx, k * slice_step)
        image = np.zeros((size, size, len(CHANNELS)), dtype=np.uint8)
        for c in range(len(CHANNELS)):
            healthy = contrast[tissue, c]
            clean = (healthy + lesion * (contrast[_LESION, c] - healthy)) * texture
            bias = np.exp(0.08 * bias_fields[c](yy, xx, k * slice_step))
            noisy = clean * bias + noise_sigma[c] * rng.standard_normal((size, size), dtype=np.float32)
            image[..., c] = np.where(brain, np.clip(np.rint(noisy), 1.0, 255.0), 0.0).astype(np.uint8)
        slices.append((image, mask))
    return slices


def _write_tiff(array: np.ndarray, path: Path) -> None:
    """Write a uint8 ``(H, W, 3)`` image (RGB) or ``(H, W)`` mask (8-bit greyscale) as an uncompressed TIFF."""
    # PIL infers the mode from the uint8 array: "RGB" for (H, W, 3), "L" for (H, W)
    Image.fromarray(np.ascontiguousarray(array, dtype=np.uint8)).save(path, format="TIFF")


def _patient_is_complete(patient_dir: Path, n_slices: int) -> bool:
    """True if ``patient_dir`` holds every image and mask of a demo patient with ``n_slices`` slices, none empty."""
    patient = patient_dir.name
    return all(
        is_nonempty_file(patient_dir / name)
        for n in range(1, n_slices + 1)
        for name in (_image_name(patient, n), _mask_name(patient, n))
    )


def _demo_parameters(num_patients: int, slices_per_patient: int, size: int, seed: int) -> dict[str, Any]:
    return {
        "generator_version": _DEMO_GENERATOR_VERSION,
        "num_patients": num_patients,
        "slices_per_patient": slices_per_patient,
        "size": size,
        "seed": seed,
    }


def _demo_marker(parameters: dict[str, Any]) -> dict[str, Any]:
    """Contents of ``dataset.json``: what the folder is, how it was made, and what the files hold."""
    return demo_marker(
        "custom_nets synthetic LGG slice demo",
        demo_description(_GENERATOR, "MRI"),
        parameters,
        generator=_GENERATOR,
        channels=list(CHANNELS),
        mask_values={"0": "background", "255": "tumour"},
        patients=[_demo_patient_name(i) for i in range(parameters["num_patients"])],
    )


_README_TEXT = """SYNTHETIC LGG-slice demo data (not real MRI, not patient data)

Generated by custom_nets.data.lgg.generate_lgg_demo; parameters in dataset.json.
Layout as Kaggle lgg-mri-segmentation/kaggle_3m: one folder per patient holding <patient>_<n>.tif (uint8 HxWx3:
pre-contrast, FLAIR, post-contrast) and <patient>_<n>_mask.tif (uint8 HxW, 0 background, 255 tumour).
Each patient is a stack of slices through a brain-like ellipsoid; about half of the slices show a lobulated lesion,
brightest on FLAIR; the other slices have empty masks, as in the real data.
It exists to exercise the pipeline end to end; scores on it say nothing about real data.
Delete this folder to regenerate it.
"""


def _write_demo_patient(folder: Path, patient: str, slices: Sequence[tuple[np.ndarray, np.ndarray]]) -> None:
    """Write one patient's slices into ``folder``, the files named after ``patient``."""
    for n, (image, mask) in enumerate(slices, start=1):
        _write_tiff(image, folder / _image_name(patient, n))
        _write_tiff(mask, folder / _mask_name(patient, n))


def generate_lgg_demo(
    out_dir: str | os.PathLike,
    num_patients: int = 6,
    slices_per_patient: int = 12,
    size: int = 128,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Generate (or reuse) synthetic patients in the LGG ``kaggle_3m`` layout.

    Writes ``out_dir/DEMO_LGG_000/DEMO_LGG_000_<n>.tif`` (uint8 ``(size, size, 3)`` RGB: pre-contrast, FLAIR,
    post-contrast) and ``DEMO_LGG_000_<n>_mask.tif`` (uint8 ``(size, size)`` greyscale, 0 or 255) for
    ``n = 1 .. slices_per_patient``, plus ``dataset.json`` (parameters) and ``README.txt`` marking the folder as
    synthetic. Each patient is a stack of slices through a textured, noisy brain-like ellipsoid on a black background,
    every channel with its own tissue contrasts; a lobulated lesion, brightest on FLAIR, spans a contiguous block of
    about half of the slices (its mask marks it), the other slices have empty masks, as in the real data.

    Deterministic: the same arguments give the same pixels (patient ``i`` depends on ``(seed, i)`` and the sizes only).
    Each patient is written into a hidden temporary folder and renamed into place, so an interrupted run never leaves
    a half-written patient and a rerun completes what is missing; a complete folder made with the same parameters is
    reused as it is.

    Args:
        out_dir: folder to write into (created if needed).
        num_patients: number of patients, named ``DEMO_LGG_000`` ... .
        slices_per_patient: slices per patient (at least 2).
        size: slice height and width in pixels (at least 32; 128 by default, the real slices are 256).
        seed: random seed (non-negative).
        overwrite: regenerate even if the folder already holds demo data; previous ``DEMO_LGG_*`` patient folders are
            deleted (nothing else in the folder is touched).

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: invalid ``num_patients``, ``slices_per_patient``, ``size`` or ``seed``.
        DatasetError: ``out_dir`` is a file, or (without ``overwrite``) holds demo data made with other parameters,
            ``DEMO_LGG_*`` folders without a marker, or a ``dataset.json`` that is not an LGG demo marker.
    """
    num_patients = check_int("num_patients", num_patients, 1)
    slices_per_patient = check_int("slices_per_patient", slices_per_patient, _MIN_SLICES)
    size = check_int("size", size, _MIN_SIZE)
    seed = check_int("seed", seed, 0)
    parameters = _demo_parameters(num_patients, slices_per_patient, size, seed)
    return generate_case_folders(
        Path(out_dir).expanduser(),
        parameters,
        overwrite,
        names=[_demo_patient_name(i) for i in range(num_patients)],
        prefix=DEMO_PATIENT_PREFIX,
        is_complete=lambda folder: _patient_is_complete(folder, slices_per_patient),
        write=lambda folder, index, patient: _write_demo_patient(
            folder, patient, _demo_patient(seed, index, slices_per_patient, size)
        ),
        items="LGG demo patients",
        generator=_GENERATOR,
        marker=_demo_marker(parameters),
        readme=_README_TEXT,
        what="LGG demo data",
        check_generator=True,
    )



# ----------------------------------------------------------------------------------------------------------------------
# Class balance
# ----------------------------------------------------------------------------------------------------------------------


def _read_mask(path: str | os.PathLike) -> np.ndarray:
    """A mask as a boolean ``(H, W)`` array: ``> 127`` for 0..255 masks, ``> 0`` for 0/1 (or boolean) masks.

    Multi-channel masks count a pixel as tumour if any channel does.
    """
    try:
        with Image.open(path) as image:
            array = np.asarray(image)
    except (OSError, ValueError) as err:
        raise DatasetError(
            f"mask {path} cannot be read ({err}); expected a single-channel 0/255 mask image", path
        ) from err
    if array.ndim == 3:
        array = array.max(axis=-1)
    if array.dtype == bool:
        return array
    return array > (127 if array.max(initial=0) > 1 else 0)


def foreground_fraction(items: Sequence[Mapping[str, Any]], label_key: str = "label") -> float:
    """Fraction of tumour pixels over all masks of ``items`` (pixels counted, so every slice weighs by its size).

    A pixel is tumour if its mask value is ``> 127`` (0/255 masks, as in the LGG data) or ``> 0`` in masks whose
    values are only 0 and 1. Pass the *training* list, so that no validation information leaks into the weight.

    Args:
        items: datalist entries holding a mask path under ``label_key``.
        label_key: key of the mask path.

    Returns:
        ``tumour pixels / all pixels``, in ``[0, 1]``.

    Raises:
        ValueError: ``items`` is empty or an entry has no ``label_key``.
        DatasetError: a mask cannot be read (the message names it).
    """
    if len(items) == 0:
        raise ValueError("foreground_fraction needs at least one datalist entry with a mask, got none")
    positive = 0
    total = 0
    for item in items:
        if label_key not in item:
            raise ValueError(f"datalist entry {dict(item)} has no {label_key!r} key (a mask path)")
        mask = _read_mask(item[label_key])
        positive += int(np.count_nonzero(mask))
        total += int(mask.size)
    return positive / total if total else 0.0


def positive_class_weight(items: Sequence[Mapping[str, Any]], label_key: str = "label") -> float:
    """Weight of the tumour class for a weighted cross-entropy: ``(1 - f) / f``, ``f`` = :func:`foreground_fraction`.

    The ratio of background to tumour pixels, so that both classes contribute equally to a weighted binary
    cross-entropy: use it as ``BCEWithLogitsLoss(pos_weight=...)`` (single sigmoid output) or as the tumour entry of
    ``CrossEntropyLoss(weight=[1, w])`` (two softmax outputs); ``segmentation_loss("wce", pos_weight=w)`` does
    either. Compute it on the training slices only.

    Raises:
        DatasetError: no mask has any tumour pixel (the weight would be infinite), or every pixel is tumour (it would
            be 0); the message names the number of masks and the first one.
        ValueError / DatasetError: as :func:`foreground_fraction`.
    """
    fraction = foreground_fraction(items, label_key)
    first = items[0][label_key]
    if fraction <= 0.0:
        raise DatasetError(
            f"none of the {len(items)} masks ({first}, ...) has a tumour pixel (value > 127, or > 0 for 0/1 masks), "
            "so the positive-class weight (1 - f) / f is infinite; expected a training set with at least one tumour "
            "slice (check the masks, the split, or pass the training list rather than an empty-mask subset)",
            first,
        )
    if fraction >= 1.0:
        raise DatasetError(
            f"every pixel of the {len(items)} masks ({first}, ...) is tumour, so the positive-class weight "
            "(1 - f) / f is 0; expected masks with background (are the masks inverted?)",
            first,
        )
    return (1.0 - fraction) / fraction
