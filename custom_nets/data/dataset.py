"""One dataset layout for every bundle: a folder with ``dataset.json``, as nnU-Net v2 and the Decathlon define it.

Layout (nnU-Net v2)::

    DATASET/dataset.json
    DATASET/imagesTr/<case>_0000.<ext> [<case>_0001.<ext> ...]   one file per channel (an RGB PNG: one _0000.png)
    DATASET/labelsTr/<case>.<ext>                                  integer label map, background 0
    DATASET/imagesTs/<case>_0000.<ext> ...                         optional, unlabelled
    DATASET/splits_final.json                                      optional: [{"train": [...], "val": [...]}, ...]

``dataset.json`` v2: ``channel_names`` (index -> name), ``labels`` (name -> value, or name -> list of values: a
*region*), ``file_ending``, optional ``regions_class_order``. The Decathlon / v1 form is read too: ``modality``,
``labels`` value -> name, ``training: [{"image", "label"}]`` (an image may be a 4D NIfTI or a list of per-channel
files; an entry may carry our ``group`` key, e.g. a patient id, for grouped splits and per-patient metrics, and any
other keys, which reach the datalist unchanged) and ``test``. A v2 file may hold such a ``training`` list too.

A folder without ``dataset.json`` that holds a public layout (BraTS, LGG, Kvasir-SEG, ISIC, UW-Madison) is described
in place by :mod:`custom_nets.convert`, so the same code path reads it.

What the networks learn is a :class:`Task`: the input channels, and one sigmoid output channel per foreground label
(or per region). Every bundle trains sigmoid channels: several of the published losses here are sigmoid-only (UNet
3+'s CGM, DDANet's), and nnU-Net's regions need them anyway. Plain labels decode by the most probable channel above
0.5; nested regions are written outermost first (nnU-Net's ``regions_class_order``).

Public API: :func:`open_dataset` (what training configs call), :func:`inference_datalist`, :func:`trained_task`,
:func:`prepare_task`, :class:`Task`, :class:`Dataset`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from ..file_types import FILE_ENDINGS, NIFTI_ENDINGS, PICTURE_ENDINGS, file_ending, is_label_name, strip_ending
from ..files import write_text_atomic
from .common import is_demo, is_hidden, raise_problems, split_groups
from .errors import DatasetError

__all__ = [
    "DATASET_JSON",
    "Declaration",
    "DemoDataset",
    "SPLITS_JSON",
    "TASK_FILE",
    "Dataset",
    "Task",
    "check_task",
    "demo_task",
    "inference_datalist",
    "open_dataset",
    "prepare_task",
    "read_dataset",
    "trained_task",
]

logger = logging.getLogger(__name__)

DATASET_JSON = "dataset.json"
SPLITS_JSON = "splits_final.json"
# written beside the checkpoints by training: what inference, export and MONAI Label need to use the model
TASK_FILE = "task.json"

_CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
_RGB_NAMES = ("r", "g", "b")
# geometry tolerance between a case's channels and its label: spacing / origin / direction
_GEOMETRY_ATOL = 1e-3


# ----------------------------------------------------------------------------------------------------------------------
# Task: what a network learns from a dataset
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Declaration:
    """What a ``dataset.json`` declares: channels in, labels (or regions) out, and the value each output writes.

    The fields :class:`Task` (which adds the images' geometry) and :class:`Dataset` (which adds the cases) share.

    Attributes:
        name: the dataset's name.
        channel_names: one name per input channel (``("FLAIR", "T1", "T1ce", "T2")``, ``("R", "G", "B")``).
        label_names: one name per output channel (a foreground label or a region).
        regions: per output channel, the label values it covers (``((1,), (2,))`` for plain labels).
        output_values: per output channel, the value it writes in the label map.
    """

    name: str
    channel_names: tuple[str, ...]
    label_names: tuple[str, ...]
    regions: tuple[tuple[int, ...], ...]
    output_values: tuple[int, ...]

    @property
    def in_channels(self) -> int:
        return len(self.channel_names)

    @property
    def out_channels(self) -> int:
        return len(self.regions)

    @property
    def has_regions(self) -> bool:
        """True when an output channel covers several values or values are shared (nnU-Net regions)."""
        values = [v for region in self.regions for v in region]
        return len(values) != len(set(values)) or any(len(r) > 1 for r in self.regions)

    @property
    def region_values(self) -> list[list[int]]:
        """:attr:`regions` as lists (for configs and JSON)."""
        return [list(r) for r in self.regions]

    @property
    def label_values(self) -> dict[str, str]:
        """``{"<value>": "<name>"}`` of the label map inference writes (metadata's ``channel_def`` convention)."""
        return {str(v): n for v, n in sorted(zip(self.output_values, self.label_names))}


@dataclass(frozen=True)
class Task(Declaration):
    """Channels in, sigmoid channels out, and how the outputs become a label map: a :class:`Declaration` and the
    geometry of its images.

    Attributes:
        spatial_dims: 2 or 3, the dimensionality of the images.
        spacing: the target voxel spacing in RAS axis order (the median of the training images), or ``None`` for
            images without physical spacing (PNG).
    """

    spatial_dims: int
    spacing: tuple[float, ...] | None = None

    @property
    def pixdim(self) -> list[float]:
        """The spacing for MONAI's ``Spacingd``: 0 (keep the image's own) where the task has none."""
        return list(self.spacing) if self.spacing else [0.0] * self.spatial_dims

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "channel_names": list(self.channel_names),
            "label_names": list(self.label_names),
            "regions": self.region_values,
            "output_values": list(self.output_values),
            "spatial_dims": self.spatial_dims,
            "spacing": list(self.spacing) if self.spacing else None,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Task":
        return cls(
            name=str(d["name"]),
            channel_names=tuple(str(c) for c in d["channel_names"]),
            label_names=tuple(str(n) for n in d["label_names"]),
            regions=tuple(tuple(int(v) for v in r) for r in d["regions"]),
            output_values=tuple(int(v) for v in d["output_values"]),
            spatial_dims=int(d["spatial_dims"]),
            spacing=tuple(float(s) for s in d["spacing"]) if d.get("spacing") else None,
        )

    def difference(self, other: "Task") -> str | None:
        """What differs between two tasks in what a network sees (channels, labels), or ``None``."""
        if self.channel_names != other.channel_names:
            return f"input channels {list(other.channel_names)} instead of {list(self.channel_names)}"
        if (self.label_names, self.regions) != (other.label_names, other.regions):
            return (
                f"labels {dict(zip(other.label_names, other.region_values))} instead of "
                f"{dict(zip(self.label_names, self.region_values))}"
            )
        if self.spatial_dims != other.spatial_dims:
            return f"{other.spatial_dims}D images instead of {self.spatial_dims}D"
        return None


def _parse_value(value: Any, where: str) -> tuple[int, ...]:
    values = value if isinstance(value, (list, tuple)) else [value]
    try:
        out = tuple(int(v) for v in values)
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: label value {value!r} is not an integer or a list of integers") from None
    if not out:
        raise DatasetError(f"{where}: a label has an empty list of values")
    return out


def _labels(meta: Mapping[str, Any], where: str) -> tuple[list[str], list[tuple[int, ...]]]:
    """``(names, values)`` of the foreground labels/regions in file order; v2 (name -> value) or v1 (value -> name)."""
    labels = meta.get("labels")
    if not isinstance(labels, Mapping) or not labels:
        raise DatasetError(f"{where}: 'labels' is missing or empty; expected e.g. {{\"background\": 0, \"tumour\": 1}}")
    v1 = all(re.fullmatch(r"-?\d+", str(k)) for k in labels) and all(isinstance(v, str) for v in labels.values())
    pairs = [(str(v), _parse_value(k, where)) for k, v in labels.items()] if v1 else [
        (str(k), _parse_value(v, where)) for k, v in labels.items()
    ]
    if not any(values == (0,) for _, values in pairs):
        raise DatasetError(f"{where}: 'labels' declares no background (value 0)")
    fg = [(n, v) for n, v in pairs if v != (0,)]
    if not fg:
        raise DatasetError(f"{where}: 'labels' declares only the background; expected at least one foreground label")
    if any(0 in v for _, v in fg):
        raise DatasetError(f"{where}: a foreground label or region includes the background value 0")
    return [n for n, _ in fg], [v for _, v in fg]


def _output_values(regions: Sequence[tuple[int, ...]], order: Any, where: str) -> tuple[int, ...]:
    """The value each output channel writes: ``regions_class_order``, a plain label's value, or a region's own value."""
    if order is not None:
        values = _parse_value(order, f"{where}: regions_class_order")
        if len(values) != len(regions):
            raise DatasetError(
                f"{where}: regions_class_order has {len(values)} entries for {len(regions)} regions; expected one "
                "output value per region, in the order of 'labels'"
            )
        return values
    out = []
    for region in regions:
        own = set(region) - {v for other in regions if set(other) < set(region) for v in other}
        if len(region) == 1:
            out.append(region[0])
        elif len(own) == 1:
            out.append(own.pop())
        else:
            raise DatasetError(
                f"{where}: cannot tell which value region {list(region)} writes in the output label map; add "
                "'regions_class_order' (one output value per region, as nnU-Net)"
            )
    return tuple(out)


def _channel_names(meta: Mapping[str, Any], where: str) -> tuple[str, ...]:
    names = meta.get("channel_names", meta.get("modality"))
    if not isinstance(names, Mapping) or not names:
        raise DatasetError(f"{where}: 'channel_names' (or Decathlon 'modality') is missing; expected e.g. {{\"0\": \"CT\"}}")
    try:
        ordered = sorted(names.items(), key=lambda kv: int(kv[0]))
    except ValueError:
        raise DatasetError(f"{where}: 'channel_names' keys must be channel indices 0, 1, ...") from None
    if [int(k) for k, _ in ordered] != list(range(len(ordered))):
        raise DatasetError(f"{where}: 'channel_names' keys must be 0..{len(ordered) - 1}, got {list(names)}")
    return tuple(str(v) for _, v in ordered)


def is_rgb(channel_names: Sequence[str]) -> bool:
    """An RGB image in one file (nnU-Net: channel names R, G, B with one ``_0000.png``)."""
    return tuple(c.lower() for c in channel_names) == _RGB_NAMES


# ----------------------------------------------------------------------------------------------------------------------
# Reading a dataset folder
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset(Declaration):
    """A read dataset: its :class:`Declaration` and its cases (``{"case", "image", "label", "group"}`` dicts, absolute
    paths; the group is the patient where ``dataset.json``'s ``training`` list names one, else the case).

    ``image`` is one path (a 4D NIfTI, an RGB PNG, a single channel) or a list of per-channel paths, as MONAI's
    ``LoadImaged`` takes them.
    """

    root: Path
    file_ending: str
    training: list[dict[str, Any]]
    test: list[dict[str, Any]] = field(default_factory=list)
    splits: list[dict[str, list[str]]] | None = None

    @cached_property
    def task(self) -> Task:
        """The declaration with the dimensionality and median spacing of the cases (their headers, read once)."""
        dims, spacing = _dims_and_spacing(self.training or self.test)
        declared = {f.name: getattr(self, f.name) for f in fields(Declaration)}
        return Task(**declared, spatial_dims=dims, spacing=spacing)

    def declared_values(self) -> set[int]:
        return {0} | {v for r in self.regions for v in r}

    def split(self, val_fraction: float = 0.2, seed: int = 0, num_folds: int | None = None, fold: int | str = 0,
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``(train, val)`` cases: fold ``fold`` of ``splits_final.json`` when the dataset has one, else a seeded,
        grouped split (``val_fraction``, or ``num_folds``-fold cross-validation). ``fold="all"`` trains on every case
        and validates on every case (nnU-Net's ``-f all``)."""
        cases = self.training
        if str(fold).lower() == "all":
            return list(cases), list(cases)
        if self.splits:
            index = int(fold)
            if not 0 <= index < len(self.splits):
                raise DatasetError(f"{self.root / SPLITS_JSON} has {len(self.splits)} folds; fold {fold} does not exist")
            by_name = {c["case"]: c for c in cases}
            chosen = self.splits[index]
            unknown = [n for n in chosen.get("train", []) + chosen.get("val", []) if n not in by_name]
            if unknown:
                raise DatasetError(f"{self.root / SPLITS_JSON}: fold {index} names cases not in the dataset: {unknown[:5]}")
            return [by_name[n] for n in chosen["train"]], [by_name[n] for n in chosen["val"]]
        if len(cases) == 1:
            logger.warning("dataset %s has one training case: it is used for training and validation", self.root)
            return list(cases), list(cases)
        return split_groups(cases, lambda c: c["group"], val_fraction=val_fraction, seed=seed,
                            num_folds=num_folds, fold=int(fold))


def _resolve(root: Path, path: str) -> str:
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (root / p).resolve())


def _scan_images(folder: Path, ending: str, channels: int, rgb: bool) -> tuple[dict[str, list[str]], list[str]]:
    """``{case: [channel files]}`` of an ``images*`` folder in nnU-Net naming, and the problems found."""
    found: dict[str, dict[int, str]] = {}
    problems: list[str] = []
    for p in sorted(folder.iterdir()):
        if is_hidden(p.name) or not p.is_file():
            continue
        if not p.name.lower().endswith(ending):
            problems.append(f"file {p} does not end in the dataset's file_ending {ending!r}")
            continue
        match = _CHANNEL_SUFFIX.match(p.name[: -len(ending)])
        if not match:
            problems.append(f"file {p} is not named <case>_<XXXX>{ending} (XXXX: the channel index, 0000 ...)")
            continue
        found.setdefault(match["case"], {})[int(match["channel"])] = str(p)
    files_per_case = 1 if rgb else channels
    cases: dict[str, list[str]] = {}
    for case, by_channel in sorted(found.items()):
        missing = [i for i in range(files_per_case) if i not in by_channel]
        extra = [i for i in by_channel if i >= files_per_case]
        if missing:
            names = ", ".join(f"{case}_{i:04d}{ending}" for i in missing)
            problems.append(f"case {case} in {folder} has no channel file {names}")
        elif extra:
            problems.append(f"case {case} in {folder} has channel files beyond the {files_per_case} declared: {extra}")
        else:
            cases[case] = [by_channel[i] for i in range(files_per_case)]
    return cases, problems


def _image_entry(files: Sequence[str]) -> str | list[str]:
    return files[0] if len(files) == 1 else list(files)


def read_dataset(path: str | os.PathLike) -> Dataset:
    """Read a dataset folder (``dataset.json``) or a public layout described in place; no image is opened.

    Raises:
        DatasetError: one line per problem, each naming the file (missing field, case without a channel or label,
            unknown layout ...).
    """
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist (or is not a folder); expected a folder with "
                           f"{DATASET_JSON} (nnU-Net v2 / Decathlon layout), see docs/own_data.md", root)
    from custom_nets import convert  # public layouts, described in place

    meta_path = root / DATASET_JSON
    layout = convert.detect(root)  # None when dataset.json describes a dataset
    if layout is None and meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as err:
            raise DatasetError(f"{meta_path} cannot be read as JSON ({err})", meta_path) from None
        if not isinstance(meta, Mapping):
            raise DatasetError(f"{meta_path} is not a JSON object", meta_path)
        where = str(meta_path)
    else:
        if layout is None:
            raise DatasetError(
                f"dataset folder {root} has no {DATASET_JSON} and is not a known public layout (BraTS, LGG kaggle_3m, "
                "Kvasir-SEG, ISIC 2017, UW-Madison); see docs/own_data.md for the expected layout", root)
        meta = convert.describe(root, layout)
        where = f"{root} ({layout} layout)"
        logger.info("reading %s as the %s layout", root, layout)
    return parse_dataset(meta, root, where)


def parse_dataset(meta: Mapping[str, Any], root: Path, where: str) -> Dataset:
    """A :class:`Dataset` from the content of a ``dataset.json`` whose relative paths are relative to ``root``."""
    channels = _channel_names(meta, where)
    names, regions = _labels(meta, where)
    output_values = _output_values(regions, meta.get("regions_class_order"), where)
    rgb = is_rgb(channels)
    problems: list[str] = []
    training: list[dict[str, Any]] = []
    test: list[dict[str, Any]] = []
    if isinstance(meta.get("training"), list) and meta["training"]:
        for i, entry in enumerate(meta["training"]):
            if not isinstance(entry, Mapping) or "image" not in entry or "label" not in entry:
                problems.append(f"{where}: training entry {i} needs 'image' and 'label'")
                continue
            image = entry["image"]
            files = [_resolve(root, f) for f in (image if isinstance(image, list) else [image])]
            case = str(entry.get("case") or _case_name(files[0]))
            extra = {k: v for k, v in entry.items() if k not in ("image", "label", "case", "group")}
            training.append({**extra, "case": case, "image": _image_entry(files),
                             "label": _resolve(root, entry["label"]), "group": str(entry.get("group", case))})
        for entry in meta.get("test", []) or []:
            image = entry.get("image", entry) if isinstance(entry, Mapping) else entry
            files = [_resolve(root, f) for f in (image if isinstance(image, list) else [image])]
            case = entry.get("case") if isinstance(entry, Mapping) else None
            test.append({"case": str(case or _case_name(files[0])), "image": _image_entry(files)})
        ending = meta.get("file_ending") or file_ending(training[0]["label"] if training else "") or ""
    else:
        ending = meta.get("file_ending")
        if not isinstance(ending, str) or not ending.startswith("."):
            raise DatasetError(f"{where}: 'file_ending' is missing; expected e.g. \".nii.gz\" or \".png\"")
        images_tr, labels_tr = root / "imagesTr", root / "labelsTr"
        for folder in (images_tr, labels_tr):
            if not folder.is_dir():
                problems.append(f"folder {folder} is missing; expected the nnU-Net layout imagesTr/ + labelsTr/")
        if not problems:
            cases, found = _scan_images(images_tr, ending, len(channels), rgb)
            problems += found
            for case, files in cases.items():
                label = labels_tr / f"{case}{ending}"
                if not label.is_file():
                    problems.append(f"case {case} has no label file {label}")
                    continue
                training.append({"case": case, "image": _image_entry(files), "label": str(label), "group": case})
            stray = sorted({strip_ending(p.name) for p in labels_tr.iterdir() if not is_hidden(p.name)} - set(cases))
            problems += [f"label {labels_tr / (s + ending)} has no image in {images_tr}" for s in stray
                         if not any(s in p for p in problems)]
        if (root / "imagesTs").is_dir():
            cases, found = _scan_images(root / "imagesTs", ending, len(channels), rgb)
            problems += found
            test = [{"case": c, "image": _image_entry(f)} for c, f in cases.items()]
    if not training and not problems:
        problems.append(f"{where}: no training cases found")
    splits = None
    splits_path = root / SPLITS_JSON
    if splits_path.is_file():
        try:
            splits = json.loads(splits_path.read_text())
            if not isinstance(splits, list) or not all(isinstance(s, Mapping) and "train" in s and "val" in s
                                                       for s in splits):
                raise ValueError("expected a list of {\"train\": [...], \"val\": [...]} folds")
        except ValueError as err:
            problems.append(f"{splits_path} cannot be used ({err})")
    raise_problems(root, problems)
    return Dataset(str(meta.get("name") or root.name), channels, tuple(names), tuple(regions), output_values,
                   root=root, file_ending=ending, training=training, test=test, splits=splits)


def _case_name(path: str) -> str:
    stem = strip_ending(Path(path).name)
    match = _CHANNEL_SUFFIX.match(stem)
    return match["case"] if match else stem


# ----------------------------------------------------------------------------------------------------------------------
# Headers and integrity
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """What an image file says about itself without its voxels (NIfTI, PIL) or with them (other ITK formats)."""

    shape: tuple[int, ...]  # spatial shape
    channels: int
    affine: np.ndarray | None  # 4x4 for volumes; None for plain 2D images


def read_header(path: str) -> Header:
    """Shape, channels and affine of an image file; ``DatasetError`` naming the file when it cannot be read."""
    ending = file_ending(path) or ""
    try:
        if ending in NIFTI_ENDINGS:
            import nibabel as nib

            img = nib.load(path)
            shape = tuple(int(s) for s in img.shape)
            if len(shape) < 3:  # MONAI's NIfTI writer cannot write such images back on their grid
                raise DatasetError(f"file {path} is a 2D NIfTI image; save 2D images as PNG, or as NIfTI volumes "
                                   "with one slice (H x W x 1)", path)
            channels = int(np.prod(shape[3:])) if len(shape) > 3 else 1
            return Header(shape[:3], channels, np.asarray(img.affine, dtype=float))
        if ending in PICTURE_ENDINGS:
            from PIL import Image

            with Image.open(path) as im:
                bands = len(im.getbands())
                return Header((im.size[0], im.size[1]), bands, None)
        from monai.data import ITKReader  # NRRD, MetaImage: the RAS affine LoadImaged gives training

        reader = ITKReader()
        data, meta = reader.get_data(reader.read(path))
        shape = tuple(int(s) for s in meta["spatial_shape"])
        channels = int(data.shape[-1]) if data.ndim > len(shape) else 1
        return Header(shape, channels, np.asarray(meta["affine"], dtype=float))
    except DatasetError:
        raise
    except Exception as err:  # noqa: BLE001 - any reader failure is one line about this file
        raise DatasetError(f"file {path} cannot be read as an image ({type(err).__name__}: {err})", path) from None


def ras_spacing(affine: np.ndarray) -> tuple[float, ...]:
    """Voxel spacing along the RAS axes (what ``Orientationd("RAS")`` then ``Spacingd`` see) from an affine."""
    import nibabel as nib

    n = affine.shape[0] - 1
    zooms = np.sqrt((affine[:n, :n] ** 2).sum(axis=0))
    ornt = nib.orientations.io_orientation(affine)
    out = [0.0] * n
    for axis, (ras_axis, _) in enumerate(ornt):
        out[int(ras_axis)] = float(zooms[axis])
    return tuple(round(s, 6) for s in out)


def _dims_and_spacing(cases: Sequence[Mapping[str, Any]]) -> tuple[int, tuple[float, ...] | None]:
    """Image dimensionality, and the median RAS spacing of the cases (``None`` for 2D images without geometry)."""
    if not cases:
        return 3, None
    spacings = []
    dims = None
    for case in cases:
        first = case["image"] if isinstance(case["image"], str) else case["image"][0]
        header = read_header(first)
        dims = len(header.shape)
        if header.affine is None:
            return dims, None
        spacings.append(ras_spacing(header.affine)[:dims] if dims == 3 else ras_spacing(header.affine)[:2])
    return int(dims or 3), tuple(float(s) for s in np.median(np.asarray(spacings), axis=0))


def _same_geometry(a: Header, b: Header) -> bool:
    if a.shape != b.shape:
        return False
    if a.affine is None or b.affine is None:
        return True
    return bool(np.allclose(a.affine, b.affine, atol=_GEOMETRY_ATOL * max(1.0, float(np.abs(a.affine).max()))))


def check_dataset(dataset: Dataset, spatial_dims: int | None = None, check_values: bool = True,
                  progress: bool = True) -> None:
    """nnU-Net's ``verify_dataset_integrity`` for this layout: every problem one line naming the file.

    Checks each training case: every file readable, channel count, image and label of the same shape and geometry
    (affine within tolerance), label values declared in ``labels`` (reads the label maps; ``check_values=False``
    skips that), and the dimensionality the bundle needs (``spatial_dims``: a 3D bundle refuses 2D images).
    """
    problems: list[str] = []
    dims_seen: set[int] = set()
    declared = dataset.declared_values()
    rgb = is_rgb(dataset.channel_names)
    cases = dataset.training
    iterator: Any = cases
    if progress and len(cases) > 20:
        from tqdm import tqdm

        iterator = tqdm(cases, desc=f"checking {dataset.root.name}", unit="case", leave=False)
    for case in iterator:
        files = [case["image"]] if isinstance(case["image"], str) else list(case["image"])
        try:
            headers = [read_header(f) for f in files]
            label = read_header(case["label"])
        except DatasetError as err:
            problems.append(str(err))
            continue
        channels = sum(h.channels for h in headers)
        if channels != len(dataset.channel_names):
            problems.append(f"case {case['case']}: image {files[0]} has {channels} channel(s); dataset.json declares "
                            f"{len(dataset.channel_names)} ({', '.join(dataset.channel_names)})"
                            + (" (an RGB image must be one 3-channel file)" if rgb else ""))
        dims_seen.add(len(headers[0].shape))
        for f, h in zip(files, headers):
            if not _same_geometry(h, label):
                problems.append(f"case {case['case']}: image {f} (shape {list(h.shape)}) and label {case['label']} "
                                f"(shape {list(label.shape)}) differ in shape or geometry")
                break
        if label.channels != 1:
            problems.append(f"case {case['case']}: label {case['label']} has {label.channels} channels; expected one "
                            "integer label map")
        elif check_values:
            values = _label_values(case["label"])
            undeclared = sorted(values - declared)
            if undeclared:
                problems.append(f"case {case['case']}: label {case['label']} holds value(s) {undeclared[:10]} not "
                                f"declared in dataset.json 'labels' ({sorted(declared)})")
    if spatial_dims == 3 and 2 in dims_seen:
        problems.append(f"dataset {dataset.root} holds 2D images; this bundle segments 3D volumes (use a 2D bundle)")
    if spatial_dims == 2 and 3 in dims_seen:
        problems.append(f"dataset {dataset.root} holds 3D volumes; this 2D bundle trains on 2D images (PNG, TIFF, "
                        "...): use a 3D bundle, or segment volumes slice by slice with its inference_volume.json")
    if len(dims_seen) > 1:
        problems.append(f"dataset {dataset.root} mixes 2D and 3D images")
    raise_problems(dataset.root, problems)


def read_array(path: str) -> np.ndarray:
    """The voxels of an image file (NIfTI with nibabel, 2D images with PIL, other formats with ITK)."""
    ending = file_ending(path) or ""
    if ending in NIFTI_ENDINGS:
        import nibabel as nib

        return np.asanyarray(nib.load(path).dataobj)
    if ending in PICTURE_ENDINGS:
        from PIL import Image

        with Image.open(path) as im:
            return np.asarray(im)
    import itk

    return itk.array_view_from_image(itk.imread(path)).copy()


def _label_values(path: str) -> set[int]:
    try:
        values = np.unique(read_array(path))
    except Exception as err:  # noqa: BLE001
        raise DatasetError(f"label {path} cannot be read ({type(err).__name__}: {err})", path) from None
    if not np.all(np.equal(np.mod(values, 1), 0)):
        raise DatasetError(f"label {path} holds non-integer values; expected an integer label map", path)
    return {int(v) for v in values}


# ----------------------------------------------------------------------------------------------------------------------
# What the bundle configs call
# ----------------------------------------------------------------------------------------------------------------------


def _demo_folder(demo: str, demo_dir: str | os.PathLike | None) -> Path:
    if demo_dir is None or not str(demo_dir).strip():
        raise ValueError("dataset_dir is 'demo' but no demo_dir was given to hold the generated demo data")
    from .demo import make_demo

    folder = make_demo(demo, demo_dir)
    logger.info("dataset_dir is 'demo': using the synthetic %s demo data in %s", demo, folder)
    return Path(folder)


def open_dataset(dataset_dir: str | os.PathLike | None, demo: str, demo_dir: str | os.PathLike | None = None,
                 spatial_dims: int | None = None, check: bool = True,
                 model_dir: str | os.PathLike | None = None) -> Dataset | DemoDataset:
    """The dataset a training or evaluation config uses: ``"demo"`` (generated when its cases are first used) or a folder; checked.

    Args:
        dataset_dir: a dataset folder (``dataset.json``, or a public layout), or ``"demo"``.
        demo: the demo task of the bundle (``"brats"``, ``"lgg"`` ...), used when ``dataset_dir`` is ``"demo"``.
        demo_dir: where the demo data is generated.
        spatial_dims: the dimensionality the bundle's network needs (3: 2D data is refused).
        check: run :func:`check_dataset` (nothing is written by a run that fails it).
        model_dir: the checkpoint folder of the run; for ``"demo"``, the task of its model (``task.json``) is the
            task until the demo's cases are read (:class:`DemoDataset`).
    """
    if is_demo(dataset_dir):
        return DemoDataset(demo, demo_dir, spatial_dims, check, model_dir)
    dataset = read_dataset(Path(str(dataset_dir)))
    if check:
        check_dataset(dataset, spatial_dims=spatial_dims)
    return dataset


class DemoDataset:
    """A bundle's demo :class:`Dataset`, generated when its cases are first needed.

    :attr:`task` generates nothing: it is the task of the model in ``model_dir`` (:func:`trained_task`: its
    ``task.json``, else the demo task), so a config evaluated as a whole writes no demo files unless it uses the
    cases. MONAI Label runs ``train.json``'s root id with its own datalists (``train#dataset#data``,
    ``validate#dataset#data``, which replace the only expressions that read the cases) to train the model it serves,
    which may be of another task than the demo. Any other attribute (``training``, ``split``, ``root`` ...)
    generates (or reuses) the demo in ``demo_dir``, reads and checks it, and is the read :class:`Dataset`'s; a demo
    that does not fit a task already handed out is refused (:func:`check_task`'s line).
    """

    def __init__(self, demo: str, demo_dir: str | os.PathLike | None, spatial_dims: int | None = None,
                 check: bool = True, model_dir: str | os.PathLike | None = None) -> None:
        self.demo, self.demo_dir, self.spatial_dims, self.check = demo, demo_dir, spatial_dims, check
        self.model_dir = model_dir
        self._task: Task | None = None
        self._dataset: Dataset | None = None

    @property
    def task(self) -> Task:
        if self._dataset is not None:
            return self._dataset.task
        if self._task is None:
            self._task = trained_task(self.model_dir, self.demo) if self.model_dir else demo_task(self.demo)
        return self._task

    def _read(self) -> Dataset:
        if self._dataset is None:
            dataset = read_dataset(_demo_folder(self.demo, self.demo_dir))
            if self.check:
                check_dataset(dataset, spatial_dims=self.spatial_dims)
            if self._task is not None and self.model_dir:  # a model's task was handed out
                try:
                    check_task(self._task, dataset)
                except DatasetError as err:
                    raise DatasetError(f"{err}: train the demo with another ckpt_dir, or delete "
                                       f"{Path(self.model_dir) / TASK_FILE}", dataset.root) from None
            self._dataset = dataset
        return self._dataset

    def __getattr__(self, name: str) -> Any:  # only for what the instance lacks: the read dataset's attributes
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._read(), name)


def trained_task(ckpt_dir: str | os.PathLike, demo: str) -> Task:
    """The task of the model in ``ckpt_dir`` (its ``task.json``, written by training), else the demo task's."""
    path = Path(ckpt_dir) / TASK_FILE
    if path.is_file():
        try:
            return Task.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise DatasetError(f"{path} cannot be read ({err}); retrain, or delete it to use the bundle's default "
                               "task", path) from None
    return demo_task(demo)


def demo_task(demo: str) -> Task:
    """The task of a demo data set (``"brats"``, ``"lgg"`` ...) at its default size, without generating it."""
    from .demo import DEMO_TASKS

    meta = DEMO_TASKS[demo]
    names, regions = _labels(meta, f"demo task {demo}")
    spacing = meta.get("spacing")
    return Task(str(meta["name"]), _channel_names(meta, demo), tuple(names), tuple(regions),
                _output_values(regions, meta.get("regions_class_order"), demo), int(meta["spatial_dims"]),
                tuple(spacing) if spacing else None)


def prepare_task(task: Task, ckpt_dir: str | os.PathLike, resume: Any = True) -> Task:
    """Write ``task.json`` beside the checkpoints at the start of training; refuse to resume a different task.

    A ``checkpoint_last.pt`` trained on other channels or labels cannot continue on this dataset: one line says what
    differs and how to start afresh.
    """
    from custom_nets.flags import as_flag

    folder = Path(ckpt_dir)
    path = folder / TASK_FILE
    if path.is_file() and (folder / "checkpoint_last.pt").is_file() and as_flag(resume, "resume"):
        previous = trained_task(folder, "")
        diff = previous.difference(task)
        if diff:
            raise DatasetError(f"the checkpoint in {folder} was trained on {previous.name!r}; this dataset has {diff}. "
                               "Pass --resume false (or another --ckpt_dir) to train afresh", path)
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(task.to_dict(), indent=2) + "\n")
    return task


def check_task(task: Task, dataset: Dataset) -> Task:
    """``DatasetError`` when a model's ``task`` does not fit ``dataset`` (channels or labels differ)."""
    diff = task.difference(dataset.task)
    if diff:
        raise DatasetError(f"the model was trained on {task.name!r}; dataset {dataset.root} has {diff}", dataset.root)
    return task


def _plain_folder_cases(folder: Path, task: Task, recursive: bool = False) -> list[dict[str, Any]]:
    """Cases of a folder of images (with ``recursive``, its sub-folders too): nnU-Net ``<case>_0000 .. _XXXX`` channel
    files grouped when every group holds exactly the model's channel files, else one file per case. Hidden entries
    and masks stored beside their images (``*_mask``, ``*_seg`` ...) are not inputs; two cases of the same name are
    refused (their outputs would overwrite each other). Batch inference applies it per folder, as its discovery walks
    the tree with rules of its own (case folders, earlier outputs)."""

    files = sorted(
        p for p in (folder.rglob("*") if recursive else folder.iterdir())
        if p.is_file() and file_ending(p.name) and not any(is_hidden(part) for part in p.relative_to(folder).parts)
        and not is_label_name(strip_ending(p.name))
    )  # fmt: skip
    grouped: dict[str, dict[int, str]] = {}
    for p in files:
        match = _CHANNEL_SUFFIX.match(strip_ending(p.name))
        if match:
            grouped.setdefault(match["case"], {})[int(match["channel"])] = str(p)
    per_case = 1 if is_rgb(task.channel_names) else task.in_channels
    if grouped and sum(map(len, grouped.values())) == len(files) and all(
            sorted(g) == list(range(per_case)) for g in grouped.values()):
        return [{"case": c, "image": _image_entry([g[i] for i in sorted(g)])} for c, g in sorted(grouped.items())]
    cases = [{"case": strip_ending(p.name), "image": str(p)} for p in files]
    seen: dict[str, str] = {}
    problems = []
    for case in cases:
        if case["case"] in seen:
            problems.append(f"files {seen[case['case']]} and {case['image']} are both case {case['case']!r}; rename "
                            "one (outputs are named after the case)")
        seen.setdefault(case["case"], case["image"])
    raise_problems(folder, problems, what="input folder")
    return cases


def inference_datalist(dataset_dir: str | os.PathLike | None, task: Task, demo: str,
                       demo_dir: str | os.PathLike | None = None, isolate: bool = False) -> list[dict[str, Any]]:
    """The images ``inference.json`` segments: a dataset's ``imagesTs`` (or ``test``; its training images when it has
    no test set), or every image of a plain folder (``<case>_0000`` naming, or one file per case).

    ``isolate``: a case whose header is unreadable or does not fit the task keeps its place with an ``"error"`` (one
    line naming the file) instead of refusing the folder; :class:`custom_nets.isolation.IsolatedCases` fails it alone,
    without reading it."""
    from custom_nets.inference.io import CaseError, check_size  # batch inference's size limits: one set

    folder = _demo_folder(demo, demo_dir) if is_demo(dataset_dir) else Path(str(dataset_dir)).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"input folder {folder} does not exist (or is not a folder)", folder)
    if (folder / DATASET_JSON).is_file() or _is_public_layout(folder):
        dataset = read_dataset(folder)
        cases = dataset.test or [{"case": c["case"], "image": c["image"]} for c in dataset.training]
    else:
        cases = _plain_folder_cases(folder, task, recursive=True)
    if not cases:
        raise DatasetError(f"input folder {folder} holds no image ({', '.join(FILE_ENDINGS)})", folder)
    problems = []
    for case in cases:
        files = [case["image"]] if isinstance(case["image"], str) else case["image"]
        try:
            headers = [read_header(f) for f in files]
            for f, header in zip(files, headers):  # no voxel is allocated for an implausible header
                check_size(header.shape, header.channels, f)
            channels = sum(header.channels for header in headers)
        except (DatasetError, CaseError) as err:
            problem = str(err)
        else:
            problem = None if channels == task.in_channels else (
                f"case {case['case']}: {files[0]} has {channels} channel(s); the model expects "
                f"{task.in_channels} ({', '.join(task.channel_names)})")
        if problem and isolate:
            case["error"] = problem
        elif problem:
            problems.append(problem)
    raise_problems(folder, problems, what="input folder")
    return cases


def _is_public_layout(folder: Path) -> bool:
    from custom_nets import convert

    return convert.detect(folder) is not None
