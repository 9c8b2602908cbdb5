"""2D RGB lesion datasets: Kvasir-SEG (colon polyps) and ISIC 2017 (skin lesions).

Layouts
-------
Kvasir-SEG (and its demo)::

    dataset_dir/images/<stem>.jpg     RGB endoscopy frames, variable sizes
    dataset_dir/masks/<stem>.jpg      masks with the same stem; JPEG, so *not strictly binary* (threshold at 127)

ISIC 2017 (images and masks in one folder, in two folders passed separately, or -- as unzipped from the challenge and
in the demo -- in two sub-folders of ``dataset_dir`` that are found automatically)::

    ISIC-2017_Training_Data/ISIC_0000000.jpg                          RGB dermoscopy images
    ISIC-2017_Training_Part1_GroundTruth/ISIC_0000000_segmentation.png  masks, 0 / 255

Image files are ``.jpg``, ``.jpeg`` or ``.png`` (any letter case). ISIC images must be named ``ISIC_<id>`` with no
further underscore, so the challenge's ``ISIC_<id>_superpixels.png`` files are ignored.

Public API
----------
- :func:`generate_kvasir_demo`, :func:`generate_isic_demo`: deterministic synthetic demo data in these layouts.
- :func:`find_kvasir_cases`, :func:`find_isic_cases`: folder -> datalist ``[{"case": stem, "image": path,
  "label": path}]`` (absolute paths, sorted by case), with a :class:`~custom_nets.data.errors.DatasetError` naming the
  path and the problem for a missing folder, no images, an image without a mask (when masks are required), an empty
  (0-byte) file or two files with one stem.
- :func:`kvasir_datalist`, :func:`isic_datalist`: what bundle configs call; ``"demo"`` means the generated demo data
  (never a silent fallback: any other ``dataset_dir`` is used as given). Splits reuse
  :func:`custom_nets.data.brats.split_cases` (seeded fraction split or k-fold).
- :func:`pil_to_rgb`, :func:`pil_to_luminance`: picklable ``converter`` functions for MONAI's ``PILReader``.
- :func:`layout_datalist`, :func:`inference_datalist`: one config value ``layout`` (``"kvasir"`` or ``"isic"``)
  picks the datalist function; inference reads a layout folder's images only (never its masks), or any folder.

Loading with MONAI (verified in ``tests/test_polyp_skin_data.py``)
--------------------------------------------------------------------
MONAI's ``PILReader`` swaps the first two axes by default (``reverse_indexing=True``), giving ``(C, W, H)`` arrays;
``reverse_indexing=False`` keeps numpy/PIL order, so the tensors are ``(C, H, W)`` and a ``spatial_size`` of
``(192, 256)`` means 192 rows by 256 columns. The reader's ``spatial_shape`` metadata stays ``(W, H)`` either way,
so writing back must not resample from it (``resample=False``) and must not swap axes (``reverse_indexing=False``)::

    LoadImaged(keys="image", reader="PILReader", reverse_indexing=False, converter=pil_to_rgb,
               ensure_channel_first=True, image_only=True)                  # (3, H, W), 0..255
    LoadImaged(keys="label", reader="PILReader", reverse_indexing=False, converter=pil_to_luminance,
               ensure_channel_first=True, image_only=True)                  # (1, H, W), 0..255 (RGB JPEG masks too)
    ScaleIntensityRanged(keys="image", a_min=0, a_max=255, b_min=0, b_max=1, clip=True)   # float [0, 1]
    AsDiscreted(keys="label", threshold=128)                                # {0, 1}: 8-bit value > 127
    Resized(keys="image", spatial_size=SIZE, mode="bilinear", anti_aliasing=True)
    Resized(keys="label", spatial_size=SIZE, mode="nearest-exact")
    EnsureTyped(keys=["image", "label"], dtype=torch.float32)

with ``SIZE = (256, 256)`` for Kvasir-SEG (:data:`KVASIR_SIZE`) and ``(192, 256)`` for ISIC 2017 (:data:`ISIC_SIZE`,
the images' 3:4 aspect). In a bundle config the converters are ``"$custom_nets.data.polyp_skin.pil_to_rgb"`` and
``"$custom_nets.data.polyp_skin.pil_to_luminance"``. For DDANet append the grayscale target after the chain:
``AppendGrayscaled(keys="label", image_key="image")`` (:mod:`custom_nets.transforms.grayscale`).

Back to the original size and to disk (inference)::

    Invertd(keys="pred", transform=<the chain above>, orig_keys="image", nearest_interp=False)
    Activationsd(keys="pred", sigmoid=True), AsDiscreted(keys="pred", threshold=0.5)
    SaveImaged(keys="pred", output_ext=".png", output_dtype=numpy.uint8, scale=255, resample=False,
               separate_folder=False, writer="PILWriter").set_options(write_kwargs={"reverse_indexing": False})

A mask loaded with the chain (without resizing) and written this way is identical to the thresholded original file.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .brats import split_cases
from .common import (
    check_folder,
    check_int,
    check_nonempty_file,
    datalist_for_role,
    demo_marker,
    is_demo,
    is_hidden,
    is_nonempty_file,
    prepare_demo_dir,
    raise_problems,
    visible_subfolders,
    write_file_atomic,
)
from .errors import DatasetError
from .images import find_images

__all__ = [
    "IMAGE_EXTENSIONS",
    "ISIC_SIZE",
    "KVASIR_SIZE",
    "LAYOUTS",
    "find_isic_cases",
    "find_kvasir_cases",
    "generate_isic_demo",
    "generate_kvasir_demo",
    "inference_datalist",
    "isic_datalist",
    "kvasir_datalist",
    "layout_datalist",
    "pil_to_luminance",
    "pil_to_rgb",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
"""Accepted image and mask file extensions (compared case-insensitively)."""

KVASIR_SIZE = (256, 256)
"""Default network input size (rows, columns) for Kvasir-SEG."""

ISIC_SIZE = (192, 256)
"""Default network input size (rows, columns) for ISIC 2017 (3:4, the images' usual aspect)."""

_ISIC_IMAGE = re.compile(r"^(ISIC_[A-Za-z0-9]+)\.(jpe?g|png)$", re.IGNORECASE)
_ISIC_MASK = re.compile(r"^(ISIC_[A-Za-z0-9]+)_segmentation\.png$", re.IGNORECASE)
_ISIC_IMAGE_DIR = "ISIC-2017_Training_Data"
_ISIC_MASK_DIR = "ISIC-2017_Training_Part1_GroundTruth"
_KVASIR_IMAGE_DIR = "images"
_KVASIR_MASK_DIR = "masks"


def pil_to_rgb(image: Image.Image) -> Image.Image:
    """``PILReader`` converter: any PIL image (RGBA, palette, grayscale) as 3-channel RGB."""
    return image if image.mode == "RGB" else image.convert("RGB")


def pil_to_luminance(image: Image.Image) -> Image.Image:
    """``PILReader`` converter: any PIL image as one 8-bit channel ("L"); RGB masks (Kvasir-SEG JPEGs) become gray."""
    return image if image.mode == "L" else image.convert("L")


# ----------------------------------------------------------------------------------------------------------------------
# Reading folders
# ----------------------------------------------------------------------------------------------------------------------


def _is_image_file(path: Path) -> bool:
    return path.is_file() and not is_hidden(path.name) and path.suffix.lower() in IMAGE_EXTENSIONS


def _file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be an image (empty or unreadable), or ``None``."""
    return check_nonempty_file(path, "an image")


def _collect(files: Sequence[Path], key: Callable[[str], str | None], problems: list[str]) -> dict[str, Path]:
    """Map case stem -> file for the ``files`` whose name ``key`` accepts; two files with one stem is a problem."""
    found: dict[str, Path] = {}
    for path in sorted(files):
        stem = key(path.name)
        if stem is None:
            continue
        if stem in found:
            problems.append(f"files {found[stem]} and {path} have the same case name {stem!r}; expected exactly one")
            continue
        found[stem] = path
    return found


def _pair(
    images: dict[str, Path],
    masks: dict[str, Path],
    require_label: bool,
    mask_hint: str,
    problems: list[str],
) -> list[dict[str, Any]]:
    """Datalist entries pairing each image with its mask; missing masks and empty files are added to ``problems``."""
    entries: list[dict[str, Any]] = []
    for stem in sorted(images):
        entry: dict[str, Any] = {"case": stem, "image": os.path.abspath(images[stem])}
        case_problems = [p for p in [_file_problem(images[stem])] if p]
        if stem in masks:
            problem = _file_problem(masks[stem])
            if problem:
                case_problems.append(problem)
            entry["label"] = os.path.abspath(masks[stem])
        elif require_label:
            case_problems.append(
                f"image {images[stem]} has no mask: expected {mask_hint.format(stem=stem)} (pass require_label=False, "
                "or role 'infer', for unlabelled images)"
            )
        problems += case_problems
        if not case_problems:
            entries.append(entry)
    orphans = sorted(set(masks) - set(images))
    if orphans:
        logger.warning("ignoring %d mask(s) without an image, e.g. %s", len(orphans), masks[orphans[0]])
    return entries


def _stem_if_image(name: str) -> str | None:
    return Path(name).stem if Path(name).suffix.lower() in IMAGE_EXTENSIONS else None


def _isic_image_stem(name: str) -> str | None:
    match = _ISIC_IMAGE.match(name)
    return match.group(1) if match else None


def _isic_mask_stem(name: str) -> str | None:
    match = _ISIC_MASK.match(name)
    return match.group(1) if match else None


def _image_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if _is_image_file(p)]


def _kvasir_layout(root: Path) -> str:
    return (
        f"expected the Kvasir-SEG layout {root}{os.sep}{_KVASIR_IMAGE_DIR}{os.sep}<name>.jpg and "
        f"{root}{os.sep}{_KVASIR_MASK_DIR}{os.sep}<name>.jpg (same name)"
    )


def find_kvasir_cases(dataset_dir: str | os.PathLike, require_label: bool = True) -> list[dict[str, Any]]:
    """Read a Kvasir-SEG-layout folder (``images/`` + ``masks/``, same stems) into a datalist.

    Args:
        dataset_dir: the folder holding ``images`` and ``masks``.
        require_label: every image must have a mask; if False, a missing ``masks`` folder or mask is allowed and such
            entries have no ``"label"`` key.

    Returns:
        ``[{"case": stem, "image": path, "label": path}, ...]`` sorted by stem, absolute paths.

    Raises:
        DatasetError: missing folder, no images, an image without a mask (when required), an empty file, or two
            files with one stem; every problem is listed at once.
    """
    root = Path(dataset_dir).expanduser()
    check_folder(root, "dataset folder", _kvasir_layout(root))
    image_dir, mask_dir = root / _KVASIR_IMAGE_DIR, root / _KVASIR_MASK_DIR
    check_folder(image_dir, "image folder", _kvasir_layout(root))
    if require_label or mask_dir.exists():
        check_folder(mask_dir, "mask folder", _kvasir_layout(root))
    problems: list[str] = []
    images = _collect(_image_files(image_dir), _stem_if_image, problems)
    if not images and not problems:
        raise DatasetError(
            f"image folder {image_dir} contains no images ({', '.join(IMAGE_EXTENSIONS)}); {_kvasir_layout(root)}",
            image_dir,
        )
    masks = _collect(_image_files(mask_dir), _stem_if_image, problems) if mask_dir.is_dir() else {}
    entries = _pair(images, masks, require_label, f"{mask_dir}{os.sep}{{stem}}.jpg", problems)
    raise_problems(root, problems)
    return entries


def _isic_layout(root: Path) -> str:
    return (
        f"expected ISIC_<id>.jpg images and ISIC_<id>_segmentation.png masks, either together in {root} or in two "
        f"sub-folders of it (e.g. {_ISIC_IMAGE_DIR} and {_ISIC_MASK_DIR}), or pass mask_dir"
    )


def _isic_folders(root: Path, mask_dir: Path | None, require_label: bool) -> tuple[Path, Path | None]:
    """The ISIC image folder and the mask folder (``None``: no masks anywhere, an error if masks are required)."""
    if mask_dir is not None:
        check_folder(mask_dir, "mask folder", _isic_layout(root))
        return root, mask_dir
    top = [p.name for p in _image_files(root)]
    if any(_isic_image_stem(name) for name in top):
        return root, root
    subfolders = visible_subfolders(root)
    with_images = [d for d in subfolders if any(_isic_image_stem(p.name) for p in _image_files(d))]
    with_masks = [d for d in subfolders if any(_isic_mask_stem(p.name) for p in _image_files(d))]
    if not with_images:
        raise DatasetError(f"dataset folder {root} contains no ISIC_<id> images; {_isic_layout(root)}", root)
    if len(with_images) > 1:
        names = ", ".join(d.name for d in with_images)
        raise DatasetError(
            f"dataset folder {root} has ISIC images in several sub-folders ({names}); expected one, or point "
            "dataset_dir at the image folder and pass mask_dir",
            root,
        )
    if len(with_masks) > 1:
        names = ", ".join(d.name for d in with_masks)
        raise DatasetError(
            f"dataset folder {root} has ISIC masks in several sub-folders ({names}); expected one, or pass mask_dir",
            root,
        )
    if with_masks:
        return with_images[0], with_masks[0]
    # no masks anywhere: fine for unlabelled images (the image folder is searched, finding none)
    return with_images[0], None if require_label else with_images[0]


def find_isic_cases(
    dataset_dir: str | os.PathLike,
    mask_dir: str | os.PathLike | None = None,
    require_label: bool = True,
) -> list[dict[str, Any]]:
    """Read ISIC-2017-layout images (``ISIC_<id>.jpg``) and masks (``ISIC_<id>_segmentation.png``) into a datalist.

    The images are those directly in ``dataset_dir``; if there are none, the one sub-folder holding ISIC images is
    used (the challenge's ``ISIC-2017_Training_Data``). Masks are looked up in ``mask_dir`` if given, else next to
    the images (one-folder layout), else in the one sub-folder of ``dataset_dir`` holding ISIC masks (the challenge's
    ``ISIC-2017_Training_Part1_GroundTruth``).

    Args:
        dataset_dir: the image folder, or a folder whose sub-folders hold the images and the masks.
        mask_dir: the mask folder, when it is not found as described above.
        require_label: every image must have a mask; if False, entries without one have no ``"label"`` key.

    Returns:
        ``[{"case": "ISIC_<id>", "image": path, "label": path}, ...]`` sorted by case, absolute paths.

    Raises:
        DatasetError: missing folder, no ISIC images, ambiguous sub-folders, an image without a mask (when required),
            an empty file, or two images with one id.
    """
    root = Path(dataset_dir).expanduser()
    check_folder(root, "dataset folder", _isic_layout(root))
    image_dir, masks_in = _isic_folders(root, None if mask_dir is None else Path(mask_dir).expanduser(), require_label)
    if masks_in is None:
        raise DatasetError(
            f"dataset folder {root} has ISIC images in {image_dir} but no ISIC_<id>_segmentation.png masks anywhere "
            f"(pass mask_dir, or require_label=False / role 'infer' for unlabelled images); {_isic_layout(root)}",
            root,
        )
    problems: list[str] = []
    images = _collect(_image_files(image_dir), _isic_image_stem, problems)
    if not images and not problems:
        raise DatasetError(f"image folder {image_dir} contains no ISIC_<id> images; {_isic_layout(root)}", image_dir)
    masks = _collect(_image_files(masks_in), _isic_mask_stem, problems)
    entries = _pair(images, masks, require_label, f"{masks_in}{os.sep}{{stem}}_segmentation.png", problems)
    raise_problems(root, problems)
    return entries


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


class _DemoSpec:
    """What distinguishes the two demo layouts: folders, file names, the case generator and how masks are saved."""

    def __init__(
        self,
        name: str,
        image_dir: str,
        mask_dir: str,
        case_name: Callable[[int], str],
        mask_name: Callable[[str], str],
        make_case: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
        mask_save: dict[str, Any],
        readme: str,
        generator: str,
    ) -> None:
        self.name = name
        self.image_dir = image_dir
        self.mask_dir = mask_dir
        self.case_name = case_name
        self.mask_name = mask_name
        self.make_case = make_case
        self.mask_save = mask_save
        self.readme = readme
        self.generator = generator  # dotted name of the public generator, for messages

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
        "SYNTHETIC demo data made by custom_nets.data.polyp_skin: not real images, not patient data. It exercises the "
        "pipelines; it says nothing about a model's accuracy on real images.",
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


# ----------------------------------------------------------------------------------------------------------------------
# Bundle datalists
# ----------------------------------------------------------------------------------------------------------------------

def _datalist(
    find: Callable[[Path, bool], list[dict[str, Any]]],
    generate: Callable[[str | os.PathLike], Path],
    dataset_dir: str | os.PathLike | None,
    demo_dir: str | os.PathLike | None,
    role: str,
    split_kwargs: dict[str, Any],
) -> list[dict[str, Any]]:
    """Shared body of the datalist builders: demo or real folder, then the role's subset (split by case)."""
    return datalist_for_role(
        dataset_dir, demo_dir, role,
        find=find, generate=generate, split=split_cases, split_kwargs=split_kwargs,
        what="synthetic demo data", log=logger,
    )  # fmt: skip


def kvasir_datalist(
    dataset_dir: str | os.PathLike | None,
    demo_dir: str | os.PathLike | None,
    role: str = "train",
    **split_kwargs: Any,
) -> list[dict[str, Any]]:
    """The Kvasir-SEG datalist a bundle config asks for.

    Args:
        dataset_dir: Kvasir-SEG-layout folder, or ``"demo"`` / ``""`` / ``None`` for the demo data (generated into
            ``demo_dir`` with default parameters on first use, reused afterwards). A real folder's errors propagate;
            there is never a fallback to demo data.
        demo_dir: where the demo data lives (needed only for the demo).
        role: ``"train"`` / ``"val"``: that side of :func:`~custom_nets.data.brats.split_cases`; ``"all"``: every
            labelled image; ``"infer"``: every image, with a ``"label"`` only where a mask exists.
        **split_kwargs: ``val_fraction``, ``seed``, ``num_folds``, ``fold`` for ``"train"`` / ``"val"``.

    Raises:
        DatasetError: the dataset is missing or malformed (see :func:`find_kvasir_cases`).
        ValueError: unknown ``role``, or the demo without a ``demo_dir``.
    """
    return _datalist(
        lambda folder, require: find_kvasir_cases(folder, require_label=require),
        generate_kvasir_demo, dataset_dir, demo_dir, role, split_kwargs,
    )  # fmt: skip


def isic_datalist(
    dataset_dir: str | os.PathLike | None,
    demo_dir: str | os.PathLike | None,
    role: str = "train",
    mask_dir: str | os.PathLike | None = None,
    **split_kwargs: Any,
) -> list[dict[str, Any]]:
    """The ISIC 2017 datalist a bundle config asks for; like :func:`kvasir_datalist`, plus ``mask_dir``.

    ``mask_dir`` (ignored for the demo) is passed to :func:`find_isic_cases` for masks kept outside ``dataset_dir``.
    """
    masks = None if is_demo(dataset_dir) or mask_dir in (None, "") else mask_dir
    return _datalist(
        lambda folder, require: find_isic_cases(folder, mask_dir=masks, require_label=require),
        generate_isic_demo, dataset_dir, demo_dir, role, split_kwargs,
    )  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# Choosing the layout from one config value (the polyp / skin-lesion bundles)
# ----------------------------------------------------------------------------------------------------------------------

LAYOUTS = ("kvasir", "isic")
"""Values of a bundle's ``layout``: ``"kvasir"`` (Kvasir-SEG) or ``"isic"`` (ISIC 2017)."""


def _layout_key(layout: str) -> str:
    key = str(layout).strip().lower()
    if key not in LAYOUTS:
        raise ValueError(f"unknown dataset layout {layout!r}; valid layouts are {', '.join(LAYOUTS)}")
    return key


def layout_datalist(layout: str) -> Callable[..., list[dict[str, Any]]]:
    """The datalist function of ``layout``: :func:`kvasir_datalist` or :func:`isic_datalist`.

    Bundle configs call ``layout_datalist(@layout)(@dataset_dir, demo_dir=..., role=...)``, so that one value switches
    the layout. Raises ``ValueError`` naming the valid layouts for any other value (letter case is ignored).
    """
    return kvasir_datalist if _layout_key(layout) == "kvasir" else isic_datalist


def _has_isic_images(folder: Path) -> bool:
    """ISIC_<id> images directly in ``folder`` or in one of its sub-folders."""
    folders = [folder, *(p for p in folder.iterdir() if p.is_dir() and not is_hidden(p.name))]
    return any(_isic_image_stem(p.name) for f in folders for p in _image_files(f))


def inference_datalist(
    dataset_dir: str | os.PathLike | None, demo_dir: str | os.PathLike | None, layout: str = "kvasir"
) -> list[dict[str, Any]]:
    """The images to segment: ``[{"case": stem, "image": path}, ...]`` (a ``"label"`` too where a mask is known).

    * ``"demo"`` (or ``""`` / ``None``): every demo image of ``layout`` (generated into ``demo_dir`` if needed);
    * a folder in the dataset layout (Kvasir-SEG: it has an ``images`` sub-folder; ISIC 2017: it or one of its
      sub-folders holds ``ISIC_<id>`` images): that layout's images only, so masks sharing an image's stem
      (``masks/<stem>.jpg``) and ISIC superpixel files are never segmented; masks are not required;
    * any other folder: every ``.png`` / ``.jpg`` / ``.jpeg`` / ``.tif`` under it, recursively
      (:func:`custom_nets.data.images.find_images`; files ending in ``_mask``, ``_seg``, ``_segmentation`` or
      ``_label`` are skipped).

    Raises:
        DatasetError: a missing folder, a folder without images, or two images with the same stem (their masks would
            overwrite each other).
        ValueError: unknown ``layout``.
    """
    key = _layout_key(layout)
    if is_demo(dataset_dir):
        return layout_datalist(key)(dataset_dir, demo_dir, role="infer")
    root = Path(dataset_dir).expanduser()  # type: ignore[arg-type]
    if key == "kvasir" and (root / _KVASIR_IMAGE_DIR).is_dir():
        return find_kvasir_cases(root, require_label=False)
    if key == "isic" and root.is_dir() and _has_isic_images(root):
        return find_isic_cases(root, require_label=False)
    entries = find_images(root)
    seen: dict[str, str] = {}
    for entry in entries:
        stem = Path(entry["image"]).stem
        if stem in seen:
            raise DatasetError(
                f"images {seen[stem]} and {entry['image']} have the same name stem {stem!r}, so their masks would "
                "overwrite each other; rename one or segment them from separate folders",
                Path(entry["image"]),
            )
        seen[stem] = entry["image"]
    return entries
