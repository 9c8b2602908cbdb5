"""BraTS 2020/2021 (``<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz``) and 2023 (``<case>-{t2f,t1n,t1c,t2w,seg}``)
to the canonical layout.

Channels ``_0000`` FLAIR, ``_0001`` T1, ``_0002`` T1ce, ``_0003`` T2 are hard-linked (copied across file systems;
``.nii`` files are compressed to ``.nii.gz``). Labels are rewritten in BraTS 2023 values, 1 necrotic / non-enhancing
core, 2 oedema, 3 enhancing (2020/2021's 4 becomes 3), with the segmentation's own affine and header; the regions
tumour core (1, 3), whole tumour (1, 2, 3) and enhancing tumour (3) are declared in ``dataset.json``. Cases without a
segmentation (validation sets) go to ``imagesTs``. Discovery is :func:`custom_nets.data.brats.find_brats_cases`.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from ..data.brats import _BRATS2023_CODES, _is_nifti, find_brats_cases
from ..data.common import is_hidden, visible_subfolders
from .core import Entry, Layout, link_or_copy

__all__ = ["LAYOUT"]

CHANNEL_NAMES = {"0": "FLAIR", "1": "T1", "2": "T1ce", "3": "T2"}
_TO_2023 = np.array([0, 1, 2, 3, 3], dtype=np.uint8)  # old value -> BraTS 2023 value (4 -> 3)
_LOOKED_AT = 5  # case folders looked at by detect()


def _detect(folder: Path) -> bool:
    """A sub-folder holding ``*_flair.nii[.gz]`` or ``*-t2f.nii[.gz]`` (among the first few, by name)."""
    suffixes = ("_flair", f"-{_BRATS2023_CODES['flair']}")
    for case_dir in visible_subfolders(folder)[:_LOOKED_AT]:
        for path in case_dir.iterdir():
            name = path.name.lower()
            if not is_hidden(name) and _is_nifti(name) and name.split(".nii")[0].endswith(suffixes):
                return True
    return False


def _write_image(src: str, dst: Path) -> None:
    if src.lower().endswith(".nii.gz"):
        link_or_copy(src, dst)
    else:
        nib.save(nib.load(src), str(dst))  # .nii -> .nii.gz: one file_ending for the whole dataset


def _write_case(entry: Entry, images_dir: Path, labels_dir: Path | None) -> str | None:
    case = entry["case"]
    try:
        shapes = {path: nib.load(path).shape for path in entry["image"]}
        if labels_dir is not None:
            seg = nib.load(entry["label"])
            if any(shape != seg.shape for shape in shapes.values()):
                return f"case {case}: segmentation {entry['label']} is {seg.shape} but the images are {shapes}"
            data = np.asanyarray(seg.dataobj)
            values = np.unique(data)
            bad = [v for v in values.tolist() if v not in (0, 1, 2, 3, 4)]
            if bad or (3 in values and 4 in values):
                return (
                    f"segmentation {entry['label']} holds the values {values.tolist()}; expected BraTS labels 0, 1, 2 "
                    "and 4 (2020/2021) or 3 (2023)"
                )
            out = nib.Nifti1Image(_TO_2023[data.astype(np.intp)], seg.affine, seg.header)
            out.set_data_dtype(np.uint8)
            nib.save(out, str(labels_dir / f"{case}.nii.gz"))
    except Exception as err:  # nibabel raises many types for a damaged file
        return f"case {case}: cannot read its NIfTI files ({type(err).__name__}: {err})"
    for c, path in enumerate(entry["image"]):
        _write_image(path, images_dir / f"{case}_{c:04d}.nii.gz")
    return None


def _find(src: Path, scratch: Path | None) -> list[Entry]:
    return find_brats_cases(src, require_label=False)


LAYOUT = Layout(
    name="brats",
    title="BraTS 2020/2021/2023",
    description=(
        "Brain tumour MRI, channels FLAIR, T1, T1ce, T2; labels in BraTS 2023 values: 1 necrotic / non-enhancing "
        "tumour core, 2 peritumoral oedema, 3 enhancing tumour (BraTS 2020/2021's 4), trained as the regions tumour "
        "core (1, 3), whole tumour (1, 2, 3) and enhancing tumour (3)."
    ),
    converted={
        "channel_names": CHANNEL_NAMES,
        "labels": {"background": 0, "tumor core": [1, 3], "whole tumor": [1, 2, 3], "enhancing tumor": 3},
        "regions_class_order": [1, 2, 3],
        "file_ending": ".nii.gz",
    },
    in_place={
        "channel_names": CHANNEL_NAMES,
        # 2020/2021 enhancing tumour is 4, 2023's is 3: the regions cover both
        "labels": {"background": 0, "tumor core": [1, 3, 4], "whole tumor": [1, 2, 3, 4], "enhancing tumor": [3, 4]},
        "regions_class_order": [1, 2, 3],
    },
    detect=_detect,
    find=_find,
    write_case=_write_case,
)
