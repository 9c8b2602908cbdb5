"""Kvasir-SEG (``images/*.jpg`` + ``masks/*.jpg``) and ISIC 2017 (``ISIC_<id>.jpg`` +
``ISIC_<id>_segmentation.png``) to the canonical layout.

Each image becomes one lossless RGB ``<case>_0000.png`` at its original size (the bundles resize); each mask a 0/1
label PNG thresholded at ``> 127`` on its luminance (Kvasir-SEG masks are lossy RGB JPEGs, not strictly 0/255).
Images without a mask go to ``imagesTs``. Discovery is :func:`custom_nets.data.polyp_skin.find_kvasir_cases` /
:func:`~custom_nets.data.polyp_skin.find_isic_cases`.

Kvasir-SEG's JPEG masks are no label map (values 1..254 along every edge, often three channels), so
:func:`custom_nets.convert.describe` converts such a folder once into ``<folder>/.canonical`` rather than reading it
in place; ISIC's 0/255 PNG masks are read in place.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..data.polyp_skin import (
    _KVASIR_IMAGE_DIR,
    _KVASIR_MASK_DIR,
    _has_isic_images,
    find_isic_cases,
    find_kvasir_cases,
    pil_to_luminance,
    pil_to_rgb,
)
from .core import Entry, Layout, listing_fingerprint, save_png
from .lgg import RGB_CHANNELS

__all__ = ["ISIC", "KVASIR", "MASK_THRESHOLD"]

MASK_THRESHOLD = 127
"""An 8-bit mask value above this is foreground."""


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
