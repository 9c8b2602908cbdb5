"""LGG MRI slices (Kaggle ``kaggle_3m``: ``<patient>/<patient>_<n>.tif`` + ``_mask.tif``) to the canonical layout.

Every slice is a case ``<patient>_<n>``: its RGB TIFF (pre-contrast, FLAIR, post-contrast as R, G, B) becomes one
lossless ``<case>_0000.png``, its mask a 0/1 label PNG (``> 127`` for 0/255 masks, as
:func:`custom_nets.data.lgg.foreground_fraction` counts). ``splits_final.json`` holds 5 folds grouped by patient, so
the slices of one patient are never split. Discovery is :func:`custom_nets.data.lgg.find_lgg_slices`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..data.common import is_hidden, visible_subfolders
from ..data.lgg import _SLICE_RE, _read_mask, find_lgg_slices
from ..data.polyp_skin import pil_to_rgb
from .core import Entry, Layout, save_png

__all__ = ["LAYOUT", "RGB_CHANNELS"]

RGB_CHANNELS = {"0": "R", "1": "G", "2": "B"}
"""``channel_names`` of an RGB image stored as one ``_0000.png`` (nnU-Net's convention)."""
_LOOKED_AT = 5  # patient folders looked at by detect()


def _detect(folder: Path) -> bool:
    """A sub-folder holding ``<x>_<n>_mask.tif`` (among the first few, by name)."""
    for patient_dir in visible_subfolders(folder)[:_LOOKED_AT]:
        for path in patient_dir.iterdir():
            match = _SLICE_RE.match(path.name)
            if match and match["mask"] and not is_hidden(path.name):
                return True
    return False


def _find(src: Path, scratch: Path | None) -> list[Entry]:
    return [
        {"case": f"{e['patient']}_{e['slice']}", "image": e["image"], "label": e["label"], "group": e["patient"]}
        for e in find_lgg_slices(src, require_mask=True)
    ]


def _write_case(entry: Entry, images_dir: Path, labels_dir: Path | None) -> str | None:
    try:
        with Image.open(entry["image"]) as image:
            rgb = np.asarray(pil_to_rgb(image))
    except (OSError, ValueError) as err:
        return f"file {entry['image']} cannot be read as an RGB TIFF ({err})"
    if labels_dir is not None:
        mask = _read_mask(entry["label"])
        if mask.shape != rgb.shape[:2]:
            return f"mask {entry['label']} is {mask.shape} but its image {entry['image']} is {rgb.shape[:2]}"
        save_png(mask.astype(np.uint8), labels_dir / f"{entry['case']}.png")
    save_png(rgb, images_dir / f"{entry['case']}_0000.png")
    return None


LAYOUT = Layout(
    name="lgg",
    title="LGG kaggle_3m",
    description=(
        "Lower-grade glioma MRI slices (Buda et al. 2019): the R, G, B channels of each image are the pre-contrast, "
        "FLAIR and post-contrast sequences; label 1 tumour. One case per slice, named <patient>_<n>; "
        "splits_final.json keeps the slices of one patient together."
    ),
    converted={"channel_names": RGB_CHANNELS, "labels": {"background": 0, "tumour": 1}, "file_ending": ".png"},
    in_place={"channel_names": RGB_CHANNELS, "labels": {"background": 0, "tumour": 255}},
    detect=_detect,
    find=_find,
    write_case=_write_case,
    group_unit="patient",
    group_of_case=lambda case: case.rsplit("_", 1)[0],
)
