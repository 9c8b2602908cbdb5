"""Synthetic Kvasir-SEG (colon polyps) and ISIC 2017 (skin lesions) demo data in the public layouts (the kvasir and
isic demos of :func:`custom_nets.data.demo.make_demo` are converted from them by :mod:`custom_nets.convert.polyp_skin`,
which also reads real folders of these layouts).

Public API: :func:`generate_kvasir_demo`, :func:`generate_isic_demo`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .common import check_int, demo_description, demo_marker, is_hidden, is_nonempty_file, prepare_demo_dir
from ..files import write_file_atomic

__all__ = ["generate_isic_demo", "generate_kvasir_demo"]

logger = logging.getLogger(__name__)

_ISIC_IMAGE_DIR = "ISIC-2017_Training_Data"
_ISIC_MASK_DIR = "ISIC-2017_Training_Part1_GroundTruth"
_KVASIR_IMAGE_DIR = "images"
_KVASIR_MASK_DIR = "masks"


# ----------------------------------------------------------------------------------------------------------------------
# Synthetic demo data
# ----------------------------------------------------------------------------------------------------------------------

_DEMO_GENERATOR_VERSION = 1


def _smooth_field(
    rng: np.random.Generator, shape: tuple[int, int], wavelength: tuple[float, float], n_waves: int = 6
) -> np.ndarray:
    """A smooth random 2D field (sum of plane waves), float32 ``shape``, about unit RMS."""
    rows = np.arange(shape[0], dtype=np.float32)[:, None]
    cols = np.arange(shape[1], dtype=np.float32)[None, :]
    angle = rng.uniform(0.0, 2.0 * np.pi, size=n_waves)
    k = 2.0 * np.pi / rng.uniform(wavelength[0], wavelength[1], size=n_waves)
    phase = rng.uniform(0.0, 2.0 * np.pi, size=n_waves)
    field = np.zeros(shape, dtype=np.float32)
    for i in range(n_waves):
        k_row, k_col = np.float32(k[i] * np.cos(angle[i])), np.float32(k[i] * np.sin(angle[i]))
        field += np.cos(k_row * rows + k_col * cols + np.float32(phase[i]))
    return field * np.float32(math.sqrt(2.0 / n_waves))


def _blob(
    rng: np.random.Generator, shape: tuple[int, int], centre: Sequence[float], radius: float, roughness: float
) -> np.ndarray:
    """Signed distance-like field of an irregular blob: ``< 0`` inside. Radius varies with angle by low harmonics."""
    rows = np.arange(shape[0], dtype=np.float32)[:, None] - np.float32(centre[0])
    cols = np.arange(shape[1], dtype=np.float32)[None, :] - np.float32(centre[1])
    theta = np.arctan2(rows, cols)
    stretch = rng.uniform(0.75, 1.25)
    r = np.sqrt((rows * stretch) ** 2 + (cols / stretch) ** 2)
    boundary = np.ones_like(theta)
    for harmonic in (2, 3, 4, 5):
        boundary += np.float32(roughness * rng.uniform(0.2, 1.0) / harmonic) * np.cos(
            harmonic * theta + np.float32(rng.uniform(0, 2 * np.pi))
        )
    return r - np.float32(radius) * boundary


def _kvasir_demo_case(seed: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic endoscopy frame ``(H, W, 3)`` uint8 and its polyp mask ``(H, W)`` bool; sizes 180..260 px."""
    rng = np.random.default_rng([seed, index, 1])
    shape = (int(rng.integers(180, 261)), int(rng.integers(180, 261)))
    h, w = shape
    texture = _smooth_field(rng, shape, (6.0, 20.0), 8)
    folds = _smooth_field(rng, shape, (40.0, 120.0), 4)
    rows = (np.arange(h, dtype=np.float32)[:, None] - h / 2) / (h / 2)
    cols = (np.arange(w, dtype=np.float32)[None, :] - w / 2) / (w / 2)
    vignette = np.clip(1.1 - 0.45 * (rows**2 + cols**2), 0.25, 1.0)
    base = np.array([0.78, 0.36, 0.30], dtype=np.float32) * np.float32(rng.uniform(0.9, 1.1))
    shade = (1.0 + 0.06 * texture + 0.10 * folds) * vignette
    image = base[None, None, :] * shade[..., None]

    radius = rng.uniform(0.12, 0.28) * min(h, w)
    margin = radius * 1.4
    centre = (rng.uniform(margin, h - margin), rng.uniform(margin, w - margin))
    dist = _blob(rng, shape, centre, radius, roughness=0.35)
    mask = dist < 0
    # polyp: a paler dome (brightest at its centre) with a soft rim of about 3 px
    alpha = np.clip(0.5 - dist / 3.0, 0.0, 1.0)[..., None]
    height = np.sqrt(np.clip(-dist / np.float32(radius), 0.0, 1.0))
    polyp = np.array([0.92, 0.52, 0.42], dtype=np.float32)[None, None, :] * (
        (0.8 + 0.35 * height)[..., None] * (1.0 + 0.05 * texture[..., None])
    )
    image = image * (1.0 - alpha) + polyp * vignette[..., None] * alpha
    # a few specular highlights
    for _ in range(int(rng.integers(2, 6))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r2 = (np.arange(h)[:, None] - cy) ** 2 + (np.arange(w)[None, :] - cx) ** 2
        spot = np.exp(-r2 / rng.uniform(2.0, 8.0))
        image = image + spot[..., None].astype(np.float32) * 0.8
    image = image + rng.normal(0.0, 0.015, size=image.shape).astype(np.float32)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), mask


def _isic_demo_case(seed: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic dermoscopy image ``(H, W, 3)`` uint8 and its lesion mask ``(H, W)`` bool, about 3:4."""
    rng = np.random.default_rng([seed, index, 2])
    h = int(rng.integers(150, 211))
    w = int(round(h * 4.0 / 3.0 * rng.uniform(0.95, 1.05)))
    shape = (h, w)
    skin = np.array([0.86, 0.66, 0.55], dtype=np.float32) * np.float32(rng.uniform(0.85, 1.05))
    texture = _smooth_field(rng, shape, (4.0, 14.0), 8)
    image = skin[None, None, :] * (1.0 + 0.04 * texture)[..., None]

    radius = rng.uniform(0.18, 0.32) * min(h, w)
    centre = (h / 2 + rng.uniform(-0.1, 0.1) * h, w / 2 + rng.uniform(-0.1, 0.1) * w)
    dist = _blob(rng, shape, centre, radius, roughness=0.6)
    mask = dist < 0
    mottle = _smooth_field(rng, shape, (8.0, 30.0), 6)
    lesion = np.array([0.42, 0.27, 0.18], dtype=np.float32) * np.float32(rng.uniform(0.8, 1.2))
    lesion_rgb = lesion[None, None, :] * (1.0 + 0.18 * mottle)[..., None]
    alpha = np.clip(0.5 - dist / 2.0, 0.0, 1.0)[..., None]
    image = image * (1.0 - alpha) + lesion_rgb * alpha
    # a few dark hairs: thin line segments
    rows = np.arange(h, dtype=np.float32)[:, None]
    cols = np.arange(w, dtype=np.float32)[None, :]
    for _ in range(int(rng.integers(0, 4))):
        angle = rng.uniform(0, np.pi)
        offset = rng.uniform(-0.4, 0.4) * min(h, w)
        d = np.abs((rows - h / 2) * np.cos(angle) - (cols - w / 2) * np.sin(angle) - offset)
        hair = np.exp(-(d**2) / 0.5)[..., None]
        image = image * (1.0 - 0.7 * hair)
    image = image + rng.normal(0.0, 0.01, size=image.shape).astype(np.float32)
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), mask


def _save_atomic(image: Image.Image, path: Path, **save_kwargs: Any) -> None:
    """Save a PIL image through a hidden temporary file and a rename: readers never see a partial file."""
    write_file_atomic(path, lambda tmp: image.save(tmp, **save_kwargs))


@dataclass(frozen=True)
class _DemoSpec:
    """What distinguishes the two demo layouts: folders, file names, the case generator and how masks are saved."""

    name: str
    image_dir: str
    mask_dir: str
    case_name: Callable[[int], str]
    mask_name: Callable[[str], str]
    make_case: Callable[[int, int], tuple[np.ndarray, np.ndarray]]
    mask_save: dict[str, Any]
    readme: str
    generator: str  # dotted name of the public generator, for messages

    def files(self, out_dir: Path, index: int) -> tuple[Path, Path]:
        case = self.case_name(index)
        return out_dir / self.image_dir / f"{case}.jpg", out_dir / self.mask_dir / self.mask_name(case)


_KVASIR_DEMO = _DemoSpec(
    name="kvasir",
    image_dir=_KVASIR_IMAGE_DIR,
    mask_dir=_KVASIR_MASK_DIR,
    case_name=lambda i: f"DEMO_{i:03d}",
    mask_name=lambda case: f"{case}.jpg",
    make_case=_kvasir_demo_case,
    generator="custom_nets.data.polyp_skin.generate_kvasir_demo",
    mask_save={"format": "JPEG", "quality": 75},  # lossy on purpose: exercises the threshold at 127
    readme="""SYNTHETIC Kvasir-SEG-layout demo data (not real endoscopy, not patient data)

Generated by custom_nets.data.polyp_skin.generate_kvasir_demo; parameters in dataset.json.
images/DEMO_###.jpg: reddish textured mucosa (vignetting, highlights) with one irregular polyp-like blob,
sizes 180-260 px per side. masks/DEMO_###.jpg: the blob, saved as lossy JPEG, so values near the edge are not
exactly 0/255 -- threshold at 127, as for real Kvasir-SEG masks.
It exercises the pipeline; scores on it say nothing about real data. Delete this folder to regenerate it.
""",
)

_ISIC_DEMO = _DemoSpec(
    name="isic2017",
    image_dir=_ISIC_IMAGE_DIR,
    mask_dir=_ISIC_MASK_DIR,
    case_name=lambda i: f"ISIC_DEMO{i:03d}",
    mask_name=lambda case: f"{case}_segmentation.png",
    make_case=_isic_demo_case,
    generator="custom_nets.data.polyp_skin.generate_isic_demo",
    mask_save={"format": "PNG"},
    readme=f"""SYNTHETIC ISIC-2017-layout demo data (not real dermoscopy, not patient data)

Generated by custom_nets.data.polyp_skin.generate_isic_demo; parameters in dataset.json.
{_ISIC_IMAGE_DIR}/ISIC_DEMO###.jpg: skin-toned textured background with one darker irregular lesion and a few hairs,
about 3:4, 150-210 rows. {_ISIC_MASK_DIR}/ISIC_DEMO###_segmentation.png: the lesion, 0/255.
It exercises the pipeline; scores on it say nothing about real data. Delete this folder to regenerate it.
""",
)


def _generate_demo(spec: _DemoSpec, out_dir: str | os.PathLike, num_images: int, seed: int, overwrite: bool) -> Path:
    """Shared body of the demo generators: validate, check/write the marker, write missing cases atomically."""
    num_images = check_int("num_images", num_images, 1)
    seed = check_int("seed", seed, 0)
    root = Path(out_dir).expanduser()
    parameters = {
        "generator_version": _DEMO_GENERATOR_VERSION, "layout": spec.name, "num_images": num_images, "seed": seed,
    }  # fmt: skip
    folders = [root / spec.image_dir, root / spec.mask_dir]
    files = [spec.files(root, index) for index in range(num_images)]
    marker = demo_marker(
        f"custom_nets synthetic {spec.name} demo",
        demo_description(spec.generator),
        parameters,
        cases=[spec.case_name(i) for i in range(num_images)],
    )
    reuse = prepare_demo_dir(
        root, parameters, overwrite,
        generator=spec.generator,
        marker=marker,
        readme=spec.readme,
        # any visible file in the image or mask folder: without a marker, it may be a real dataset
        existing=lambda: [f for f in folders if f.is_dir() and any(not is_hidden(p.name) for p in f.iterdir())],
        is_complete=lambda: all(is_nonempty_file(path) for pair in files for path in pair),
        replace_on_overwrite=False,  # overwrite rewrites every file in place
        partial_folders=folders,
    )  # fmt: skip
    if reuse:
        return root
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)

    written = 0
    for index, (image_path, mask_path) in enumerate(files):
        if not overwrite and is_nonempty_file(image_path) and is_nonempty_file(mask_path):
            continue
        image, mask = spec.make_case(seed, index)
        # the mask first: a case counts as present only when both files exist, and the image is written last
        _save_atomic(Image.fromarray(mask.astype(np.uint8) * 255, mode="L"), mask_path, **spec.mask_save)
        _save_atomic(Image.fromarray(image, mode="RGB"), image_path, format="JPEG", quality=92)
        written += 1
    if written:
        logger.info("generated %d synthetic %s demo images in %s", written, spec.name, root)
    return root


def generate_kvasir_demo(
    out_dir: str | os.PathLike, num_images: int = 16, seed: int = 0, overwrite: bool = False
) -> Path:
    """Generate (or reuse) synthetic Kvasir-SEG-layout data: ``out_dir/images/DEMO_###.jpg`` + ``masks/DEMO_###.jpg``.

    Each image is reddish textured "mucosa" (vignetting, specular highlights, noise) holding one irregular, paler
    polyp-like blob; image sizes vary from 180 to 260 px per side. Masks are the blob, saved as lossy JPEG (quality
    75), so -- like real Kvasir-SEG masks -- they are not strictly 0/255 and need the threshold at 127.

    Deterministic: image ``i`` depends on ``(seed, i)`` only (pixel-identical across runs). Files are written through
    temporary names and renamed into place; an existing folder with the same parameters is reused and completed if
    files are missing.

    Args:
        out_dir: folder to write into (created if needed).
        num_images: number of images, named ``DEMO_000`` ...
        seed: random seed.
        overwrite: regenerate every file (and the marker) even if present.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: invalid ``num_images`` or ``seed``.
        DatasetError: ``out_dir`` is a file, holds demo data with other parameters, or holds other files in ``images``
            / ``masks`` without a demo marker (without ``overwrite``).
    """
    return _generate_demo(_KVASIR_DEMO, out_dir, num_images, seed, overwrite)


def generate_isic_demo(
    out_dir: str | os.PathLike, num_images: int = 16, seed: int = 0, overwrite: bool = False
) -> Path:
    """Generate (or reuse) synthetic ISIC-2017-layout data in the challenge's two sub-folders.

    ``out_dir/ISIC-2017_Training_Data/ISIC_DEMO###.jpg`` (skin-toned textured background, one darker irregular,
    mottled lesion, a few hairs; about 3:4, 150-210 rows) and
    ``out_dir/ISIC-2017_Training_Part1_GroundTruth/ISIC_DEMO###_segmentation.png`` (the lesion, exactly 0/255).

    Deterministic, atomic and reusable exactly like :func:`generate_kvasir_demo` (same arguments, returns and errors).
    """
    return _generate_demo(_ISIC_DEMO, out_dir, num_images, seed, overwrite)
