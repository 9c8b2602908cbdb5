"""UW-Madison GI tract (Kaggle 2022: ``train.csv`` run-length masks + 16-bit PNG slices) to the canonical layout.

Every labelled slice is a 2.5D case named by its competition id (``case123_day20_slice_0066``): three channels, the
slices at offsets -2, 0, +2 within its case-day (clamped at the ends,
:func:`custom_nets.data.uwmadison.neighbour_slices`, what the 2.5D GI bundles feed their networks), each the original
16-bit PNG hard-linked (or copied) as ``_0000.png``, ``_0001.png``, ``_0002.png``. The three run-length masks become
one label map, 1 large bowel, 2 small bowel, 3 stomach; where organs overlap the later one wins (stomach over small
bowel over large bowel), the rule of :func:`custom_nets.transforms.multilabel.multilabel_to_label_map` that today's GI
inference applies to its outputs. ``splits_final.json`` keeps all days of a case in one fold. Discovery and
run-length decoding are :func:`custom_nets.data.uwmadison.find_uwmadison_slices`.

The masks cannot be read in place, so :func:`custom_nets.convert.describe` converts such a folder once into
``<folder>/.canonical/uwmadison-<hash of train.csv>`` (a changed CSV gets a new folder, as the mask cache does).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.uwmadison import (
    _CSV_NAME,
    _IMAGE_SUBDIR,
    CLASSES,
    _csv_fingerprint,
    find_uwmadison_slices,
    neighbour_slices,
)
from ..transforms.multilabel import multilabel_to_label_map
from .core import Entry, Layout, link_or_copy, save_png

__all__ = ["LAYOUT", "OFFSETS"]

OFFSETS = (-2, 0, 2)
"""Slice offsets of the three channels of a converted case."""


def _find(src: Path, scratch: Path | None) -> list[Entry]:
    items = find_uwmadison_slices(src, require_labels=True, cache_dir=scratch)
    return [
        {"case": item["id"], "image": item["image"], "label": item["label"], "group": item["case"]}
        for item in neighbour_slices(items, OFFSETS)
    ]


def _write_case(entry: Entry, images_dir: Path, labels_dir: Path | None) -> str | None:
    for c, path in enumerate(entry["image"]):
        link_or_copy(path, images_dir / f"{entry['case']}_{c:04d}.png")
    if labels_dir is not None:
        with Image.open(entry["label"]) as image:  # (H, W, 3) 0/1, written by find_uwmadison_slices
            channels = torch.from_numpy(np.asarray(image).transpose(2, 0, 1).copy())
        save_png(multilabel_to_label_map(channels).numpy(), labels_dir / f"{entry['case']}.png")
    return None


LAYOUT = Layout(
    name="uwmadison",
    title="UW-Madison GI tract",
    description=(
        "Abdominal MRI slices (UW-Madison GI Tract Image Segmentation, Kaggle 2022) as 2.5D cases: channels are the "
        "16-bit slices at offsets -2, 0, +2 within the case-day (clamped at the ends); labels 1 large bowel, "
        "2 small bowel, 3 stomach (where organs overlap, the later one wins). splits_final.json keeps the days of a "
        "case together."
    ),
    converted={
        "channel_names": {str(c): f"MRI slice {o:+d}" if o else "MRI slice 0" for c, o in enumerate(OFFSETS)},
        "labels": {"background": 0, **{name: i + 1 for i, name in enumerate(CLASSES)}},
        "file_ending": ".png",
    },
    detect=lambda folder: (folder / _CSV_NAME).is_file() and (folder / _IMAGE_SUBDIR).is_dir(),
    find=_find,
    write_case=_write_case,
    group_unit="case",
    group_of_case=lambda case: case.split("_day", 1)[0],
    cache_key=lambda src: f"uwmadison-{_csv_fingerprint(src / _CSV_NAME)}",
)
