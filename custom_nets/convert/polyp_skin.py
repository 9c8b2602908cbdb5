"""Kvasir-SEG (``images/*.jpg`` + ``masks/*.jpg``) and ISIC 2017 (``ISIC_<id>.jpg`` +
``ISIC_<id>_segmentation.png``) to the canonical layout.

Each image becomes one lossless RGB ``<case>_0000.png`` at its original size (the bundles resize); each mask a 0/1
label PNG thresholded at ``> 127`` on its luminance (Kvasir-SEG masks are lossy RGB JPEGs, not strictly 0/255).
Images without a mask go to ``imagesTs``. Discovery is :func:`find_kvasir_cases` / :func:`find_isic_cases`: folder ->
``[{"case": stem, "image": path, "label": path}]`` (absolute paths, sorted by case), with a
:class:`~custom_nets.data.errors.DatasetError` naming the path and the problem for a missing folder, no images, an
image without a mask (when masks are required), an empty (0-byte) file or two files with one stem.

Kvasir-SEG's JPEG masks are no label map (values 1..254 along every edge, often three channels), so
:func:`custom_nets.convert.describe` converts such a folder once into ``<folder>/.canonical`` rather than reading it
in place; ISIC's 0/255 PNG masks are read in place.

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

Loading with MONAI (verified in ``tests/data/test_polyp_skin_data.py``)
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
the images' 3:4 aspect). In a bundle config the converters are ``"$custom_nets.convert.polyp_skin.pil_to_rgb"`` and
``"$custom_nets.convert.polyp_skin.pil_to_luminance"``. For DDANet append the grayscale target after the chain:
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
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..data.common import check_folder, check_nonempty_file, is_hidden, raise_problems, visible_subfolders
from ..data.errors import DatasetError
from ..data.polyp_skin import _ISIC_IMAGE_DIR, _ISIC_MASK_DIR, _KVASIR_IMAGE_DIR, _KVASIR_MASK_DIR
from .core import Entry, Layout, listing_fingerprint, save_png

__all__ = [
    "IMAGE_EXTENSIONS", "ISIC", "ISIC_SIZE", "KVASIR", "KVASIR_SIZE", "MASK_THRESHOLD", "RGB_CHANNELS",
    "find_isic_cases", "find_kvasir_cases", "pil_to_luminance", "pil_to_rgb",
]

logger = logging.getLogger(__name__)

RGB_CHANNELS = {"0": "R", "1": "G", "2": "B"}
"""``channel_names`` of an RGB image stored as one ``_0000.png`` (nnU-Net's convention)."""

MASK_THRESHOLD = 127
"""An 8-bit mask value above this is foreground."""

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
"""Accepted image and mask file extensions (compared case-insensitively)."""

KVASIR_SIZE = (256, 256)
"""Default network input size (rows, columns) for Kvasir-SEG."""

ISIC_SIZE = (192, 256)
"""Default network input size (rows, columns) for ISIC 2017 (3:4, the images' usual aspect)."""

_ISIC_IMAGE = re.compile(r"^(ISIC_[A-Za-z0-9]+)\.(jpe?g|png)$", re.IGNORECASE)
_ISIC_MASK = re.compile(r"^(ISIC_[A-Za-z0-9]+)_segmentation\.png$", re.IGNORECASE)


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
                f"image {images[stem]} has no mask: expected {mask_hint.format(stem=stem)} (pass require_label=False "
                "for unlabelled images)"
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
            f"(pass mask_dir, or require_label=False for unlabelled images); {_isic_layout(root)}",
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


def _has_isic_images(folder: Path) -> bool:
    """ISIC_<id> images directly in ``folder`` or in one of its sub-folders."""
    folders = [folder, *(p for p in folder.iterdir() if p.is_dir() and not is_hidden(p.name))]
    return any(_isic_image_stem(p.name) for f in folders for p in _image_files(f))


def _write_case(entry: Entry, images_dir: Path, labels_dir: Path | None) -> str | None:
    try:
        with Image.open(entry["image"]) as image:
            rgb = np.asarray(pil_to_rgb(image))
        mask = None
        if labels_dir is not None:
            with Image.open(entry["label"]) as image:
                mask = np.asarray(pil_to_luminance(image)) > MASK_THRESHOLD
    except (OSError, ValueError) as err:
        return f"case {entry['case']}: cannot read its image or mask ({err})"
    if mask is not None:
        if mask.shape != rgb.shape[:2]:
            return f"mask {entry['label']} is {mask.shape} pixels but its image {entry['image']} is {rgb.shape[:2]}"
        save_png(mask.astype(np.uint8), labels_dir / f"{entry['case']}.png")  # type: ignore[operator]
    save_png(rgb, images_dir / f"{entry['case']}_0000.png")
    return None


KVASIR = Layout(
    name="kvasir",
    title="Kvasir-SEG",
    description="Colonoscopy frames (Jha et al., Kvasir-SEG, MMM 2020), RGB at their original sizes; label 1 polyp.",
    converted={"channel_names": RGB_CHANNELS, "labels": {"background": 0, "polyp": 1}, "file_ending": ".png"},
    # not readable in place: the masks are lossy (often RGB) JPEGs, whose values 1..255 are no label map
    in_place=None,
    detect=lambda folder: (folder / _KVASIR_IMAGE_DIR).is_dir() and (folder / _KVASIR_MASK_DIR).is_dir(),
    find=lambda src, scratch: find_kvasir_cases(src, require_label=False),
    write_case=_write_case,
    cache_key=lambda src: f"kvasir-{listing_fingerprint(src / _KVASIR_IMAGE_DIR, src / _KVASIR_MASK_DIR)}",
)

ISIC = Layout(
    name="isic",
    title="ISIC 2017",
    description="Dermoscopy images (ISIC 2017 challenge, part 1), RGB at their original sizes; label 1 lesion.",
    converted={"channel_names": RGB_CHANNELS, "labels": {"background": 0, "lesion": 1}, "file_ending": ".png"},
    in_place={"channel_names": RGB_CHANNELS, "labels": {"background": 0, "lesion": 255}},
    detect=_has_isic_images,
    find=lambda src, scratch: find_isic_cases(src, require_label=False),
    write_case=_write_case,
)
