"""Finding the cases of an input folder for batch inference.

Rules (documented for users in ``docs/batch_inference.md``):

- Image files: ``.nii``, ``.nii.gz``, ``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd`` for 3D bundles; ``.png``, ``.jpg``,
  ``.jpeg``, ``.tif``, ``.tiff``, ``.bmp`` for 2D bundles. A folder holding DICOM files (``.dcm`` files, or any files
  that start with the DICOM preamble) is one case per ``SeriesInstanceUID`` (3D bundles), the series' files kept in
  :attr:`Source.files` (for the reader and the DICOM SEG writer); an object that is no image (SR, SEG) is a case that
  fails with one line.
- The input folder is searched recursively. Hidden files and folders (name starting with ``.``), ``__MACOSX``, the
  output folder (when it lies inside the input folder) and the output folders of earlier runs (folders with a
  ``summary.csv`` written by batch inference) are ignored, and so are ground-truth files: names ending in
  ``_seg``, ``_label``, ``_labels``, ``_mask``, ``_gt`` or ``_segmentation`` (also with ``-`` instead of ``_``).
- A dataset folder (with ``dataset.json``, nnU-Net v2 / Decathlon) segments its test images (``imagesTs`` or its
  ``test`` list; its training images when it has none), as the bundles' ``inference.json`` does.
- nnU-Net naming, for every bundle: the images of one folder named ``<case>_0000.<ext>``, ``<case>_0001.<ext>`` ...
  are the channel files of ``<case>`` when every such group holds exactly the model's channel files (one ``_0000``
  file for an RGB model), the rule of the data layer (``custom_nets.data.dataset``, ``inference.json``'s datalist).
- Single-channel bundles, and bundles without ``input_channel_suffixes`` in their metadata: every other image file
  and every DICOM series is one case, named after the file (without extension) or the series folder.
- Multi-channel bundles with ``input_channel_suffixes`` (BraTS: ``flair``/``t2f``, ``t1``/``t1n``, ``t1ce``/``t1c``,
  ``t2``/``t2w``): the images of one folder whose names end in ``_<suffix>`` or ``-<suffix>`` (any letter case) are
  grouped by the name before the suffix: ``<case>_flair.nii.gz`` ... side by side in one flat folder give one case per
  ``<case>``. Images named just ``<suffix>`` (``flair.nii.gz``, or a DICOM series folder ``flair/``) belong to the
  case named after their folder. A group without some modality is a failed case whose error names the missing
  modality; two files for one modality too. Images whose names match no suffix are single-file cases that must hold
  every channel (a 4D NIfTI or a vector-valued NRRD/MHA); reading tells when they do not.
- Case names are made safe as file names (:func:`sanitize_case_name`) and unique: a name used by two cases in
  different folders gets the folder path in front (``sub_dir_case``), then ``-2``, ``-3`` ... if still needed.
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from custom_nets.file_types import (
    NIFTI_ENDINGS,
    PICTURE_ENDINGS,
    VOLUME_ENDINGS,
    ends_with_token,
    file_ending,
    is_label_name,
)

from .errors import SetupError

__all__ = [
    "Case",
    "InputSpec",
    "Source",
    "discover_cases",
    "image_extension",
    "is_label_name",
    "output_extension",
    "OUTPUT_TYPES",
    "sanitize_case_name",
    "set_output_type",
    "strip_extension",
]

logger = logging.getLogger(__name__)

_IGNORED_FOLDERS = ("__MACOSX",)
_DICOM_PREAMBLE_OFFSET = 128
_MAX_NAME_BYTES = 150


@dataclass(frozen=True)
class InputSpec:
    """What a bundle expects as input: from the model's task (``custom_nets.data.Task``), with the file-name suffixes
    of the bundle's metadata (``input_channel_suffixes``); bundles without a task: their metadata's
    ``network_data_format.inputs.image``.

    Attributes:
        spatial_dims: 2 or 3.
        num_channels: input channels of the network.
        channel_names: one display name per channel (``channel_def``), e.g. ``("FLAIR", "T1", "T1ce", "T2")``.
        channel_suffixes: per channel, the file-name suffixes that identify it (``input_channel_suffixes``), or
            ``None`` when the channels of a case come in one file.
    """

    spatial_dims: int = 3
    num_channels: int = 1
    channel_names: tuple[str, ...] = ()
    channel_suffixes: tuple[tuple[str, ...], ...] | None = None

    @property
    def in_channels(self) -> int:
        """The network's input channels (as ``custom_nets.data.Task.in_channels``, for the data layer's grouping)."""
        return self.num_channels

    def channel_name(self, index: int) -> str:
        return self.channel_names[index] if index < len(self.channel_names) else f"channel {index}"

    @property
    def groups_by_suffix(self) -> bool:
        return self.num_channels > 1 and bool(self.channel_suffixes)


@dataclass(frozen=True)
class Source:
    """One input image: a file, or a DICOM series (its folder and its files).

    Attributes:
        path: the file, or the folder of a DICOM series.
        kind: ``"nifti"``, ``"itk"`` (NRRD, MetaImage), ``"dicom"`` or ``"2d"`` (PNG, JPEG, TIFF, BMP).
        files: the files of a DICOM series (any order); empty otherwise.
        series: for a folder with several DICOM series, the number of this one (1, 2, ...; ``"unreadable"`` for
            files whose header could not be read).
    """

    path: Path
    kind: str
    files: tuple[Path, ...] = ()
    series: str = ""

    @property
    def name(self) -> str:
        """The file name without extension, or the DICOM folder name (``<folder>_series<n>`` for several series)."""
        if self.kind == "dicom":
            return f"{self.path.name}_series{self.series}" if self.series else self.path.name
        return strip_extension(self.path.name)


@dataclass
class Case:
    """One case to segment.

    Attributes:
        name: safe, unique name; the output is ``<name><output_ext>``.
        sources: one source per channel (in channel order), or a single source holding every channel.
        output_ext: ``.nii.gz``, ``.nrrd``, ``.mha``, ``.png`` or ``.dcm`` (DICOM SEG, :func:`set_output_type`).
        error: set when the case cannot be run as discovered (missing modality); the runner reports it as failed.
    """

    name: str
    sources: tuple[Source, ...]
    output_ext: str
    error: str | None = None
    folder: Path | None = field(default=None, repr=False)

    @property
    def output_name(self) -> str:
        return f"{self.name}{self.output_ext}"

    def describe(self) -> str:
        """The input path(s), for log lines."""
        return ", ".join(str(s.path) for s in self.sources) if self.sources else str(self.folder or self.name)


# ----------------------------------------------------------------------------------------------------------------------
# Names
# ----------------------------------------------------------------------------------------------------------------------


def image_extension(name: str, spatial_dims: int = 3) -> str | None:
    """The recognised image extension of ``name`` (lower case, e.g. ``".nii.gz"``) for a 3D or 2D bundle, or
    ``None``."""
    return file_ending(name, VOLUME_ENDINGS if spatial_dims == 3 else PICTURE_ENDINGS)


def strip_extension(name: str) -> str:
    """``case_flair.nii.gz`` -> ``case_flair``; names without a known image extension lose their last suffix only."""
    ext = file_ending(name)
    if ext:
        return name[: -len(ext)]
    return name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name


def output_extension(source: Source) -> str:
    """Output extension for a case whose first input is ``source``: NRRD and MetaImage keep their format."""
    if source.kind == "2d":
        return ".png"
    if source.kind == "itk":
        ext = image_extension(source.path.name, 3)
        return {".nrrd": ".nrrd", ".nhdr": ".nrrd", ".mha": ".mha", ".mhd": ".mha"}.get(ext or "", ".nii.gz")
    return ".nii.gz"


OUTPUT_TYPES = {"nifti": ".nii.gz", "nrrd": ".nrrd", "dicom-seg": ".dcm"}
"""``--output-type`` choices and the extension each writes (``dicom-seg``: a DICOM Segmentation, DICOM inputs only)."""


def set_output_type(cases: Iterable[Case], output_type: str | None) -> None:
    """Make every 3D case write ``output_type`` (:data:`OUTPUT_TYPES`; ``None``: the input's kind, NIfTI for DICOM).

    A case that cannot be written so fails on its own (one line in ``summary.csv``, the batch goes on): ``dicom-seg``
    for an input that is no DICOM series (the SEG references the series' instances), any type for a 2D picture.
    """
    if not output_type:
        return
    for case in cases:
        first = case.sources[0] if case.sources else None
        if first is not None and first.kind == "2d":
            problem = f"--output-type {output_type} is for 3D images; 2D label maps are written as PNG"
        elif first is not None and output_type == "dicom-seg" and first.kind != "dicom":
            problem = ("--output-type dicom-seg needs a DICOM series input (the SEG references its instances); "
                       "use nifti or nrrd for this case")
        else:
            case.output_ext = OUTPUT_TYPES[output_type]
            continue
        case.error = case.error or problem  # the runner names the input


_UNSAFE_CHARACTERS = re.compile(r'[\x00-\x1f\x7f/\\<>:"|?*]')


def sanitize_case_name(name: str) -> str:
    """A file-name-safe version of ``name``: no path separators, no ``..``, no leading dot, at most 150 bytes.

    Spaces and non-ASCII letters are kept (Unicode normalised to NFC); control characters and ``/ \\ < > : " | ? *``
    become ``_``. An empty result becomes ``"case"``.
    """
    name = unicodedata.normalize("NFC", str(name))
    name = _UNSAFE_CHARACTERS.sub("_", name).strip()
    while ".." in name:
        name = name.replace("..", "_")
    name = name.lstrip(".").strip()
    encoded = name.encode("utf-8")
    if len(encoded) > _MAX_NAME_BYTES:
        name = encoded[:_MAX_NAME_BYTES].decode("utf-8", errors="ignore").rstrip()
    return name or "case"


# ----------------------------------------------------------------------------------------------------------------------
# Walking the input folder
# ----------------------------------------------------------------------------------------------------------------------


@dataclass
class _Item:
    """An image found in the input folder, with the folder in which it is grouped with its sibling modalities."""

    source: Source
    group_folder: Path


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name in _IGNORED_FOLDERS


def _looks_like_dicom(path: Path) -> bool:
    if path.suffix.lower() == ".dcm":
        return True
    if path.name.upper() == "DICOMDIR":
        return False
    try:
        with open(path, "rb") as f:
            f.seek(_DICOM_PREAMBLE_OFFSET)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def _dicom_series(folder: Path, files: Sequence[Path]) -> list[Source]:
    """Group the DICOM files of one folder by ``SeriesInstanceUID`` (headers only; unreadable files stay together)."""
    import pydicom

    by_series: dict[str, list[Path]] = defaultdict(list)
    for path in files:
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
            uid = str(getattr(header, "SeriesInstanceUID", "") or "")
        except Exception:  # noqa: BLE001 - reported when the series is read
            uid = ""
        by_series[uid].append(path)
    unreadable = by_series.pop("", [])
    if not by_series:
        return [Source(folder, "dicom", tuple(unreadable))]
    if len(by_series) == 1:
        (only,) = by_series.values()
        return [Source(folder, "dicom", tuple(only + unreadable))]
    # several series in one folder: one case each, named <folder>_<n> in the order of their first file
    ordered = sorted(by_series.values(), key=lambda paths: sorted(paths)[0])
    sources = [Source(folder, "dicom", tuple(paths), series=str(i + 1)) for i, paths in enumerate(ordered)]
    if unreadable:
        sources.append(Source(folder, "dicom", tuple(unreadable), series="unreadable"))
    return sources


SUMMARY_HEADER = "case,status,seconds,error"
"""How the ``summary.csv`` of batch inference starts: a folder holding one is an output folder, never input."""


def _is_output_folder(folder: Path) -> bool:
    try:
        with open(folder / "summary.csv", encoding="utf-8", errors="replace") as f:
            return f.readline().startswith(SUMMARY_HEADER)
    except OSError:
        return False


def _walk(input_dir: Path, spatial_dims: int, exclude: Sequence[Path]) -> list[_Item]:
    excluded = {p.resolve() for p in exclude}
    items: list[_Item] = []
    for root, dirs, files in os.walk(input_dir):
        folder = Path(root)
        dirs[:] = sorted(d for d in dirs if not _is_hidden(d) and (folder / d).resolve() not in excluded)
        for d in [d for d in dirs if _is_output_folder(folder / d)]:
            logger.info(f"ignoring {folder / d}: the output folder of an earlier run (it has a summary.csv)")
            dirs.remove(d)
        dicom_files: list[Path] = []
        for name in sorted(files):
            if _is_hidden(name):
                continue
            path = folder / name
            ext = image_extension(name, spatial_dims)
            if ext is not None:
                if is_label_name(strip_extension(name)):
                    logger.debug(f"ignoring {path}: looks like a ground-truth label file")
                    continue
                items.append(_Item(_file_source(path, spatial_dims), folder))
            elif spatial_dims == 3 and _looks_like_dicom(path):
                dicom_files.append(path)
        if dicom_files:
            series = _dicom_series(folder, dicom_files)
            for source in series:
                items.append(_Item(source, folder.parent if folder != input_dir else folder))
    return items


def _file_source(path: Path, spatial_dims: int) -> Source:
    """An image file as a :class:`Source` of the reader its extension needs."""
    kind = "2d" if spatial_dims == 2 else "nifti" if image_extension(path.name, 3) in NIFTI_ENDINGS else "itk"
    return Source(path, kind)


def _suffix_table(spec: InputSpec) -> list[tuple[str, int]]:
    """``(suffix, channel)`` pairs, longest suffix first (so ``t1ce`` is tried before ``t1``)."""
    pairs = [(s.lower(), c) for c, suffixes in enumerate(spec.channel_suffixes or ()) for s in suffixes]
    return sorted(pairs, key=lambda pair: -len(pair[0]))


def _match_channel(name: str, table: Sequence[tuple[str, int]]) -> tuple[str, int] | None:
    for suffix, channel in table:
        before = ends_with_token(name, suffix)
        if before is not None:
            return before, channel
    return None


def _nnunet_cases(items: Sequence[_Item], spec: InputSpec) -> tuple[list[tuple[str, Path, Case]], list[_Item]]:
    """Cases of the folders in nnU-Net naming (``<case>_0000.<ext>`` ...) by the data layer's rule, and the other
    items (the data layer decides per folder, so discovery and ``inference.json`` group a folder alike)."""
    from custom_nets.data.dataset import _plain_folder_cases

    by_folder: dict[Path, dict[str, Source]] = defaultdict(dict)
    for item in items:
        if item.source.kind != "dicom":
            by_folder[item.source.path.parent][str(item.source.path)] = item.source
    raw: list[tuple[str, Path, Case]] = []
    grouped: set[str] = set()
    for folder, sources in by_folder.items():
        for entry in _plain_folder_cases(folder, spec):
            files = [entry["image"]] if isinstance(entry["image"], str) else list(entry["image"])
            if entry["case"] == strip_extension(Path(files[0]).name) or not all(f in sources for f in files):
                continue  # not grouped: one file per case, below
            case = Case("", tuple(sources[f] for f in files), output_extension(sources[files[0]]))
            raw.append((entry["case"], folder, case))
            grouped.update(files)
    return raw, [item for item in items if str(item.source.path) not in grouped]


def _group_cases(items: Sequence[_Item], spec: InputSpec) -> list[tuple[str, Path, Case]]:
    """Cases before naming: ``(raw name, folder, case)``."""
    raw, items = _nnunet_cases(items, spec)
    if not spec.groups_by_suffix:
        for item in items:
            src = item.source
            raw.append((src.name, src.path.parent, Case("", (src,), output_extension(src))))
        return raw

    table = _suffix_table(spec)
    groups: dict[tuple[Path, str], dict[int, list[Source]]] = defaultdict(lambda: defaultdict(list))
    for item in items:
        match = _match_channel(item.source.name, table)
        if match is None:
            src = item.source
            raw.append((src.name, src.path.parent, Case("", (src,), output_extension(src))))
            continue
        key, channel = match
        groups[(item.group_folder, key)][channel].append(item.source)

    for (folder, key), channels in groups.items():
        name = key or folder.name
        first = next(s for c in sorted(channels) for s in channels[c])
        case = Case("", (), output_extension(first), folder=folder)
        problems = []
        for c in range(spec.num_channels):
            found = channels.get(c, [])
            suffixes = (spec.channel_suffixes or ())[c] if c < len(spec.channel_suffixes or ()) else ()
            if not found:
                example = f"{key}_{suffixes[0]}" if key else suffixes[0] if suffixes else "?"
                alternatives = " or ".join(f"_{s}" for s in suffixes)
                problems.append(
                    f"missing modality {spec.channel_name(c)} (expected a file ending in {alternatives}, "
                    f"e.g. {example}{_example_extension(first)})"
                )
            elif len(found) > 1:
                listed = ", ".join(str(s.path.name) for s in found)
                problems.append(f"{len(found)} files for modality {spec.channel_name(c)}: {listed}")
        if problems:
            case.error = f"{folder}: case {name}: " + "; ".join(problems)
            case.sources = tuple(s for c in sorted(channels) for s in channels[c])
        else:
            case.sources = tuple(channels[c][0] for c in range(spec.num_channels))
        raw.append((name, folder, case))
    return raw


def _example_extension(source: Source) -> str:
    if source.kind == "dicom":
        return " (a DICOM series folder)"
    return image_extension(source.path.name, 2 if source.kind == "2d" else 3) or ""


def _unique_names(raw: Sequence[tuple[str, Path, Case]], input_dir: Path) -> list[Case]:
    names = [sanitize_case_name(name) for name, _, _ in raw]
    counts: dict[str, int] = defaultdict(int)
    for n in names:
        counts[n.casefold()] += 1
    for i, (name, folder, _) in enumerate(raw):
        if counts[names[i].casefold()] > 1:
            try:
                relative = folder.relative_to(input_dir)
            except ValueError:
                relative = Path(folder.name)
            parts = [p for p in relative.parts if p not in ("", ".")]
            if parts and parts[-1] == name:
                parts = parts[:-1]
            if parts:
                names[i] = sanitize_case_name("_".join([*parts, name]))
    seen: dict[str, int] = {}
    cases = []
    for (name, _, case), unique in zip(raw, names):
        key = unique.casefold()
        if key in seen:
            seen[key] += 1
            new = f"{unique}-{seen[key]}"
            logger.warning(f"two cases would be named {unique!r}; naming the one from {case.describe()} {new!r}")
            unique = new
        else:
            seen[key] = 1
        case.name = unique
        cases.append(case)
    return sorted(cases, key=lambda c: c.name)


def discover_cases(input_dir: str | os.PathLike, spec: InputSpec, exclude: Iterable[str | os.PathLike] = ()) -> list[Case]:
    """The cases of ``input_dir`` for a bundle that expects ``spec``, sorted by name (see the module docstring).

    Args:
        input_dir: the folder to search (recursively).
        spec: the bundle's input description.
        exclude: folders to skip (the output folder when it lies inside ``input_dir``).

    Returns:
        Cases with unique, file-name-safe names; cases that cannot run as found (missing modality) carry ``error``.
    """
    input_dir = Path(input_dir)
    if (input_dir / "dataset.json").is_file():
        return _unique_names(_dataset_cases(input_dir, spec), input_dir)
    items = _walk(input_dir, spec.spatial_dims, [Path(p) for p in exclude])
    return _unique_names(_group_cases(items, spec), input_dir)


def _dataset_cases(folder: Path, spec: InputSpec) -> list[tuple[str, Path, Case]]:
    """The test images of a dataset folder (``imagesTs`` or ``test``, else its training images) as cases.

    The same choice as ``custom_nets.data.inference_datalist``, without its all-or-nothing header check: here a bad
    image fails its own case.
    """
    from custom_nets.data import DatasetError, read_dataset

    try:
        dataset = read_dataset(folder)
    except DatasetError as error:
        raise SetupError(str(error)) from None
    raw = []
    for entry in dataset.test or dataset.training:
        files = [entry["image"]] if isinstance(entry["image"], str) else list(entry["image"])
        sources = [_file_source(Path(f), spec.spatial_dims) for f in files]
        case = Case("", tuple(sources), output_extension(sources[0]), folder=Path(files[0]).parent)
        if len(files) > 1 and len(files) != spec.num_channels:
            case.error = f"{folder}: case {entry['case']}: {len(files)} channel files, the model takes {spec.num_channels}"
        raw.append((str(entry["case"]), Path(files[0]).parent, case))
    return raw
