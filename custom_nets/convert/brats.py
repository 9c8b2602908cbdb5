"""BraTS 2020/2021 (``<case>/<case>_{flair,t1,t1ce,t2,seg}.nii.gz``) and 2023 (``<case>-{t2f,t1n,t1c,t2w,seg}``)
to the canonical layout.

Channels ``_0000`` FLAIR, ``_0001`` T1, ``_0002`` T1ce, ``_0003`` T2 are hard-linked (copied across file systems;
``.nii`` files are compressed to ``.nii.gz``). Labels are rewritten in BraTS 2023 values, 1 necrotic / non-enhancing
core, 2 oedema, 3 enhancing (2020/2021's 4 becomes 3), with the segmentation's own affine and header; the regions
tumour core (1, 3), whole tumour (1, 2, 3) and enhancing tumour (3) are declared in ``dataset.json``. Cases without a
segmentation (validation sets) go to ``imagesTs``. Discovery is :func:`find_brats_cases`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..data.brats import MODALITIES
from ..data.common import check_folder, check_nonempty_file, is_hidden, read_subfolders, visible_subfolders
from ..data.errors import DatasetError
from ..file_types import NIFTI_ENDINGS
from .core import Entry, Layout, link_or_copy

__all__ = ["LAYOUT", "find_brats_cases"]

logger = logging.getLogger(__name__)

CHANNEL_NAMES = {"0": "FLAIR", "1": "T1", "2": "T1ce", "3": "T2"}
_TO_2023 = np.array([0, 1, 2, 3, 3], dtype=np.uint8)  # old value -> BraTS 2023 value (4 -> 3)
_LOOKED_AT = 5  # case folders looked at by detect()

# BraTS 2023 file-name codes of the four modalities and the segmentation.
_BRATS2023_CODES = {"flair": "t2f", "t1": "t1n", "t1ce": "t1c", "t2": "t2w", "seg": "seg"}

# ----------------------------------------------------------------------------------------------------------------------
# Reading BraTS-layout folders (discovery)
# ----------------------------------------------------------------------------------------------------------------------


def _is_nifti(name: str) -> bool:
    return name.lower().endswith(NIFTI_ENDINGS)


def _candidate_names(case: str, modality: str) -> list[str]:
    """Exact file names accepted for ``modality`` (or ``"seg"``) of ``case``, in order of preference."""
    code = _BRATS2023_CODES[modality]
    return [f"{case}{sep}{tag}{ext}" for sep, tag in (("_", modality), ("-", code)) for ext in NIFTI_ENDINGS]


def _match_file(case: str, modality: str, files: Sequence[str]) -> tuple[list[str], list[str]]:
    """Files of a case folder that are the ``modality`` image (or ``"seg"``).

    Exact names (``<case>_<modality>`` or the BraTS 2023 ``<case>-<code>``, ``.nii.gz`` or ``.nii``, any letter case)
    win; otherwise any file ending in ``_<modality>.nii[.gz]`` or ``-<code>.nii[.gz]`` (for folders renamed after
    their files). Returns ``(matches, names looked for)``; more than one match is ambiguous.
    """
    wanted = _candidate_names(case, modality)
    lower = {name.lower(): name for name in files}
    exact = [lower[w.lower()] for w in wanted if w.lower() in lower]
    if exact:
        return exact, wanted
    suffixes = tuple(name[len(case):].lower() for name in wanted)
    return sorted(name for name in files if name.lower().endswith(suffixes)), wanted


def _check_file(path: Path) -> str | None:
    """A problem with a NIfTI file that would make loading it fail (empty, not gzip), or ``None`` if it looks fine."""
    problem = check_nonempty_file(path, "a NIfTI image")
    if problem is not None:
        return problem
    try:
        size = path.stat().st_size
        if path.name.lower().endswith(".gz"):
            with open(path, "rb") as f:
                if f.read(2) != b"\x1f\x8b":
                    return f"file {path} is not gzip-compressed although it ends in .gz; expected a .nii.gz file"
        elif size < 348:
            return f"file {path} is {size} bytes, shorter than a NIfTI header (348 bytes); expected a NIfTI image"
    except OSError as err:
        return f"file {path} cannot be read ({err}); expected a readable NIfTI image"
    return None


def _read_case(case_dir: Path, files: Sequence[str], require_label: bool) -> tuple[dict[str, Any] | None, list[str]]:
    """Datalist entry of one case folder, or ``(None, problems)`` describing every missing, ambiguous or bad file."""
    case = case_dir.name
    problems: list[str] = []
    found: dict[str, Path] = {}
    for modality in (*MODALITIES, "seg"):
        matches, wanted = _match_file(case, modality, files)
        if len(matches) > 1:
            problems.append(
                f"case folder {case_dir} has more than one {modality} file ({', '.join(matches)}); expected exactly one"
            )
        elif matches:
            found[modality] = case_dir / matches[0]
        elif modality != "seg" or require_label:
            what = "segmentation (seg)" if modality == "seg" else f"{modality} image"
            hint = " (pass require_label=False for unlabelled cases)" if modality == "seg" else ""
            problems.append(
                f"case folder {case_dir} is missing the {what}: looked for {', '.join(wanted)}{hint}; "
                f"found {', '.join(sorted(files)) or 'no NIfTI files'}"
            )
    for path in found.values():
        problem = _check_file(path)
        if problem:
            problems.append(problem)
    if problems:
        return None, problems
    entry: dict[str, Any] = {"case": case, "image": [os.path.abspath(found[m]) for m in MODALITIES]}
    if "seg" in found:
        entry["label"] = os.path.abspath(found["seg"])
    return entry, []


def _expected_layout(dataset_dir: Path) -> str:
    return (
        f"expected one folder per case, {dataset_dir}{os.sep}<case>{os.sep}<case>_{{flair,t1,t1ce,t2,seg}}.nii.gz "
        "(BraTS 2023: <case>-{t2f,t1n,t1c,t2w,seg}.nii.gz)"
    )


def find_brats_cases(dataset_dir: str | os.PathLike, require_label: bool = True) -> list[dict[str, Any]]:
    """Read a BraTS-layout folder (the demo data, or real BraTS 2020/2021/2023) into a datalist.

    One sub-folder per case, holding ``<case>_{flair,t1,t1ce,t2,seg}.nii.gz`` (BraTS 2023: ``<case>-{t2f,t1n,t1c,t2w,
    seg}``; ``.nii`` works too; if no file carries the folder's exact name, a single file ending in the modality
    suffix is accepted). Hidden entries and plain files (e.g. BraTS 2020's ``name_mapping.csv``) are ignored; folders
    without any NIfTI file are skipped with a warning. Every problem in every case is reported at once.

    Args:
        dataset_dir: the dataset folder.
        require_label: every case must have a segmentation; if False, cases without one have no ``"label"`` key.

    Returns:
        Entries sorted by case name: ``{"case": name, "image": [flair, t1, t1ce, t2] (absolute paths, str),
        "label": seg path (str)}``.

    Raises:
        DatasetError: the folder does not exist or is not a folder; it has no case folders; a case misses a modality
            (or its segmentation when ``require_label``), has two candidates for one, or a file is empty or not a
            valid NIfTI container. The message names the folder or file, what is missing, and the names looked for.
    """
    root = Path(dataset_dir).expanduser()
    check_folder(root, "dataset folder", _expected_layout(root))

    def read(case_dir: Path, files: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
        entry, problems = _read_case(case_dir, files, require_label)
        return ([entry] if entry is not None else []), problems

    entries = read_subfolders(root, _is_nifti, read, "NIfTI (.nii / .nii.gz) files")
    if not entries:
        loose = [p.name for p in root.iterdir() if p.is_file() and _is_nifti(p.name)]
        hint = (
            f"; it holds NIfTI files directly ({loose[0]}, ...): point dataset_dir at the folder that contains the case "
            "folders" if loose else ""
        )
        raise DatasetError(
            f"dataset folder {root} contains no case folders with NIfTI files{hint}; {_expected_layout(root)}", root
        )
    return entries


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
