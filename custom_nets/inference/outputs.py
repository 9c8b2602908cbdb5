"""The optional outputs of batch inference: probabilities, TTA uncertainty and per-label statistics.

- **Probabilities** (``--save-probabilities``): the bundle's per-channel sigmoid probabilities (one channel per label
  or region of the model's task) after its ``Invertd``, so on the input's grid; ``<case>_probabilities.nii.gz``
  (3D: float32, channels in the 4th dimension, as MONAI's ``NibabelWriter`` writes a channel-first array; NIfTI-1 has
  no float16 type) or ``<case>_probabilities.npz`` (float16, ``(C, *spatial)`` in the array order the bundle gets;
  the default for 2D). ``OUTPUT_DIR/probabilities.json`` names the channels.
- **Uncertainty** (``--uncertainty``): :class:`PassAgreement` follows the flip-TTA passes one at a time: the per-voxel
  standard deviation over the passes of each channel's probability (Welford's running update, exactly 0 where every
  pass gives the same value), reduced over the channels by their maximum (a voxel is as uncertain as its least
  certain label), and two per-case scores for ``summary.csv``: the mean of that map inside the union of the passes'
  foreground, and the passes' mean pairwise Dice.
- **Statistics** (``--statistics``): :func:`label_statistics`: per label value, voxel count, volume (mm^3) or area
  (mm^2, or pixels when the pixel size is unknown), mean and standard deviation of every input channel inside the
  label (the image as read, on the input's grid), connected components (``scipy.ndimage.label``, face connectivity)
  and the largest one's size.

Files are written by MONAI's ``NibabelWriter`` (NIfTI) and numpy (``.npz``), each staged under a temporary name
(:class:`StagedFiles`) and renamed only once the label map of the case is written, so a case that fails leaves none
of its files.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from custom_nets.files import partial_path, write_text_atomic

from .errors import CaseError

__all__ = ["CHANNELS_FILE", "PassAgreement", "StagedFiles", "channel_description", "extra_output_paths",
           "label_statistics", "plain_tensor", "statistics_columns", "write_probabilities", "write_uncertainty"]

CHANNELS_FILE = "probabilities.json"
"""Run-level sidecar written with ``--save-probabilities``: what each probability channel is."""
PROBABILITY_FORMATS = ("nifti", "npz")


# ----------------------------------------------------------------------------------------------------------------------
# Names
# ----------------------------------------------------------------------------------------------------------------------


def probability_format(requested: str | None, spatial_dims: int) -> str | None:
    """``"auto"`` -> ``"nifti"`` (3D) or ``"npz"`` (2D); a NIfTI of a 2D bundle is refused (ValueError)."""
    if requested is None:
        return None
    if requested == "auto":
        return "nifti" if spatial_dims == 3 else "npz"
    if requested not in PROBABILITY_FORMATS:
        raise ValueError(f"unknown probability format {requested!r} (nifti or npz)")
    if requested == "nifti" and spatial_dims != 3:
        raise ValueError("--save-probabilities nifti is for 3D bundles; a 2D bundle writes .npz")
    return requested


def extra_output_paths(output_dir: Path, case_name: str, spatial_dims: int, probabilities: str | None = None,
                       uncertainty: bool = False, statistics: bool = False) -> dict[str, Path]:
    """The optional output files of one case: ``{"probabilities" | "uncertainty" | "statistics": path}``."""
    paths = {}
    if probabilities:
        ext = ".nii.gz" if probabilities == "nifti" else ".npz"
        paths["probabilities"] = output_dir / f"{case_name}_probabilities{ext}"
    if uncertainty:
        paths["uncertainty"] = output_dir / f"{case_name}_uncertainty{'.nii.gz' if spatial_dims == 3 else '.npz'}"
    if statistics:
        paths["statistics"] = output_dir / f"{case_name}_statistics.json"
    for path in paths.values():
        if path.resolve().parent != output_dir.resolve():
            raise CaseError(f"unsafe case name {case_name!r}")
    return paths


def channel_description(task: Any, label_values: Mapping[int, str]) -> list[dict[str, Any]]:
    """One entry per output channel: its name, the label values it covers and the value it writes in the label map."""
    if task is None:
        return [{"index": i, "name": name, "label_values": [value], "writes": value}
                for i, (value, name) in enumerate(sorted(label_values.items()))]
    return [{"index": i, "name": str(name), "label_values": [int(v) for v in region], "writes": int(value)}
            for i, (name, region, value) in enumerate(zip(task.label_names, task.regions, task.output_values))]


def write_channels_file(path: Path, channels: Sequence[Mapping[str, Any]], threshold: float, fmt: str,
                        uncertainty: bool) -> None:
    """``probabilities.json``: what the channels of every ``<case>_probabilities.*`` of the folder are."""
    regions = any(len(c["label_values"]) > 1 for c in channels)
    info = {
        "channels": list(channels),
        "activation": "sigmoid, one per channel (independent: the channels do not sum to one)",
        "threshold": threshold,
        "label_rule": ("regions: each channel above the threshold writes its value, outer regions first, a region "
                       "only inside the regions containing it" if regions else
                       "labels: the most probable channel where it is above the threshold, else 0"),
        "files": ("<case>_probabilities.nii.gz: float32, x, y, z, channel (4th dimension), the input's affine"
                  if fmt == "nifti" else
                  "<case>_probabilities.npz: 'probabilities' float16 (channel, *spatial) in the array order of the "
                  "input as read, 'affine', 'channel_names', 'label_values', 'writes'"),
    }
    if uncertainty:
        info["uncertainty"] = ("<case>_uncertainty.*: per voxel, the largest over the channels of the standard "
                               "deviation of the channel's probability over the flip-TTA passes (0: all passes agree)")
    write_text_atomic(path, json.dumps(info, indent=2))


# ----------------------------------------------------------------------------------------------------------------------
# Uncertainty
# ----------------------------------------------------------------------------------------------------------------------


def plain_tensor(tensor: Any) -> torch.Tensor:
    """A plain CPU tensor (MetaTensor metadata dropped)."""
    tensor = tensor.as_tensor() if hasattr(tensor, "as_tensor") else torch.as_tensor(tensor)
    return tensor.detach().cpu()


class PassAgreement:
    """How far the test-time-augmentation passes agree, voxel by voxel, fed one pass at a time.

    The per-channel mean and sum of squared deviations follow Welford's update (Welford 1962, "Note on a method for
    calculating corrected sums of squares and products", Technometrics 4(3)): where every pass gives a voxel the same
    probability the deviation is exactly 0, so the map is exactly 0 there (no cancellation as in E[p^2] - E[p]^2).
    Each pass's foreground (probability above ``threshold``) is kept as packed bits for the pairwise Dice.

    Args:
        threshold: the bundle's label threshold (foreground of one pass: probability above it).
    """

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = float(threshold)
        self.count = 0
        self._mean: torch.Tensor | None = None
        self._m2: torch.Tensor | None = None
        self._masks: list[np.ndarray] = []  # per pass: (C, packed bytes)
        self._size = 0

    def add(self, probabilities: Any) -> None:
        """One pass's ``(C, *spatial)`` probabilities (not kept; the caller may change them afterwards)."""
        p = plain_tensor(probabilities).float()
        self.count += 1
        if self._mean is None:
            self._mean, self._m2 = p.clone(), torch.zeros_like(p)
        else:
            delta = p - self._mean
            self._mean += delta / self.count
            delta *= p - self._mean
            self._m2 += delta
            del delta
        on = (p > self.threshold).reshape(p.shape[0], -1).numpy()
        self._size = on.shape[1]
        self._masks.append(np.packbits(on, axis=1))

    def uncertainty(self) -> torch.Tensor:
        """``(1, *spatial)``: max over channels of the standard deviation over the passes (0 with one pass)."""
        if self._m2 is None:
            raise ValueError("no pass added")
        std = torch.sqrt(torch.clamp(self._m2 / self.count, min=0.0))
        return std.amax(dim=0, keepdim=True)

    def scores(self, uncertainty: torch.Tensor | None = None) -> dict[str, float]:
        """``tta_uncertainty``: mean of :meth:`uncertainty` over the voxels that some pass calls foreground in some
        channel (0 if none); ``tta_agreement``: mean Dice over every pair of passes and every channel that some pass
        of the pair calls foreground somewhere (1 if none: all passes agree on nothing)."""
        uncertainty = self.uncertainty() if uncertainty is None else uncertainty
        union = np.bitwise_or.reduce(np.stack(self._masks), axis=(0, 1))
        inside = np.unpackbits(union, count=self._size).astype(bool)
        values = plain_tensor(uncertainty).reshape(-1).numpy()
        mean = float(values[inside].mean()) if inside.any() else 0.0
        sizes = [np.bitwise_count(m).sum(axis=1) for m in self._masks]
        dice = []
        for i, j in itertools.combinations(range(len(self._masks)), 2):
            inter = np.bitwise_count(self._masks[i] & self._masks[j]).sum(axis=1)
            total = sizes[i] + sizes[j]
            dice += [2.0 * float(n) / float(t) for n, t in zip(inter, total) if t > 0]
        return {"tta_uncertainty": mean, "tta_agreement": float(np.mean(dice)) if dice else 1.0}


# ----------------------------------------------------------------------------------------------------------------------
# Statistics
# ----------------------------------------------------------------------------------------------------------------------


def _size_unit(geometry: Any) -> tuple[str, float]:
    """``("mm3" | "mm2" | "pixels", size of one voxel in that unit)``: PNG/JPEG/... pictures carry no pixel size."""
    affine = np.asarray(geometry.affine, dtype=np.float64)
    dims = len(geometry.spatial_shape)
    if dims == 3:
        return "mm3", float(abs(np.linalg.det(affine[:3, :3])))
    if getattr(geometry, "writer", "png") == "png":
        return "pixels", 1.0
    return "mm2", float(abs(np.linalg.det(affine[:2, :2])))


def label_statistics(label: np.ndarray, image: np.ndarray | None, geometry: Any, label_values: Mapping[int, str],
                     channel_names: Sequence[str]) -> dict[str, Any]:
    """Per label value of ``label`` (every declared value, and any other found): voxels, size, channel statistics,
    connected components.

    Args:
        label: ``(*spatial)`` integer label map on the input's grid.
        image: ``(C, *spatial)`` input as read (same grid), or None (no channel statistics).
        geometry: the input's :class:`~custom_nets.inference.io.Geometry` (affine: voxel size).
        label_values: ``{value: name}`` of the model's labels.
        channel_names: names of the ``C`` input channels.
    """
    from scipy import ndimage

    label = np.asarray(label)
    unit, voxel = _size_unit(geometry)
    size_key = {"mm3": "volume_mm3", "mm2": "area_mm2", "pixels": "area_pixels"}[unit]
    values = sorted({*(int(v) for v in label_values), *(int(v) for v in np.unique(label) if v != 0)})
    affine = np.asarray(geometry.affine, dtype=np.float64)
    dims = label.ndim
    out: dict[str, Any] = {
        "spatial_shape": [int(s) for s in label.shape],
        "voxel_size_mm": ([float(s) for s in np.linalg.norm(affine[:dims, :dims], axis=0)] if unit != "pixels"
                          else None),
        "unit": unit,
        "channels": list(channel_names),
        "labels": [],
    }
    for value in values:
        mask = label == value
        voxels = int(mask.sum())
        components, largest = 0, 0
        if voxels:
            numbered, components = ndimage.label(mask)
            largest = int(np.bincount(numbered.ravel())[1:].max())
        entry: dict[str, Any] = {
            "value": value,
            "name": label_values.get(value, ""),
            "voxels": voxels,
            size_key: voxels * voxel,
            "components": int(components),
            f"largest_component_{size_key}": largest * voxel,
            "largest_component_voxels": largest,
        }
        if image is not None:
            entry["channels"] = {
                name: ({"mean": float(np.mean(image[c][mask], dtype=np.float64)),
                        "std": float(np.std(image[c][mask], dtype=np.float64))} if voxels else
                       {"mean": None, "std": None})
                for c, name in enumerate(channel_names)
            }
        out["labels"].append(entry)
    return out


def _slug(name: str) -> str:
    return "_".join(str(name).replace("/", " ").replace(",", " ").split()) or "channel"


def statistics_columns(stats: Mapping[str, Any]) -> dict[str, str]:
    """``summary.csv`` cells of :func:`label_statistics`: ``label_<v>_voxels``, ``label_<v>_components``,
    ``label_<v>_largest_<ml|mm2|pixels>``, ``label_<v>_mean_<channel>``, ``label_<v>_std_<channel>``."""
    unit = stats["unit"]
    suffix, scale = {"mm3": ("ml", 1e-3), "mm2": ("mm2", 1.0), "pixels": ("pixels", 1.0)}[unit]
    cells: dict[str, str] = {}
    for entry in stats["labels"]:
        v = entry["value"]
        cells[f"label_{v}_voxels"] = str(entry["voxels"])
        cells[f"label_{v}_components"] = str(entry["components"])
        largest = next(val for key, val in entry.items() if key.startswith("largest_component_") and
                       not key.endswith("_voxels"))
        cells[f"label_{v}_largest_{suffix}"] = f"{largest * scale:.3f}" if unit != "pixels" else str(int(largest))
        for name, moments in (entry.get("channels") or {}).items():
            for key in ("mean", "std"):
                cells[f"label_{v}_{key}_{_slug(name)}"] = "" if moments[key] is None else f"{moments[key]:.6g}"
    return cells


# ----------------------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------------------


def _write_nifti(tmp: Path, array: np.ndarray, geometry: Any) -> None:
    """A float32 NIfTI (``(x, y, z)`` or channels last) on the input's grid, its shape and affine read back."""
    import nibabel as nib

    from custom_nets.writers import write_image

    array, affine = np.asarray(array, dtype=np.float32), np.asarray(geometry.affine, dtype=np.float64)
    write_image(array, affine, tmp)
    back = nib.load(str(tmp))
    if tuple(back.shape) != array.shape or not np.allclose(back.affine, affine, atol=1e-3):
        raise CaseError(f"the written {tmp.suffix} file does not have the input's grid (shape {tuple(back.shape)})")


def _save_npz(tmp: Path, **arrays: Any) -> None:
    with open(tmp, "wb") as f:  # an open file: np.savez would append .npz to the temporary name
        np.savez_compressed(f, **arrays)


def write_probabilities(tmp: Path, probabilities: np.ndarray, geometry: Any, fmt: str,
                        channels: Sequence[Mapping[str, Any]]) -> None:
    """``(C, *spatial)`` probabilities on the input's grid: NIfTI float32 ``(x, y, z, C)`` or npz float16."""
    if fmt == "nifti":
        _write_nifti(tmp, np.moveaxis(np.asarray(probabilities), 0, -1), geometry)  # (x, y, z, C)
    else:
        _save_npz(tmp, probabilities=np.asarray(probabilities, dtype=np.float16),
                  affine=np.asarray(geometry.affine, dtype=np.float64),
                  channel_names=np.asarray([str(c["name"]) for c in channels]),
                  label_values=np.asarray([",".join(str(v) for v in c["label_values"]) for c in channels]),
                  writes=np.asarray([int(c["writes"]) for c in channels]))


def write_uncertainty(tmp: Path, uncertainty: np.ndarray, geometry: Any) -> None:
    """``(*spatial)`` uncertainty map on the input's grid: NIfTI float32 (3D) or npz ``uncertainty`` float32 (2D)."""
    if len(geometry.spatial_shape) == 3:
        _write_nifti(tmp, uncertainty, geometry)
    else:
        _save_npz(tmp, uncertainty=np.asarray(uncertainty, dtype=np.float32),
                  affine=np.asarray(geometry.affine, dtype=np.float64))


def write_json(tmp: Path, content: Any) -> None:
    tmp.write_text(json.dumps(content, indent=2, allow_nan=False), encoding="utf-8")


@dataclass
class _Staged:
    final: Path
    tmp: Path


class StagedFiles:
    """Files of one case written under temporary names (:func:`custom_nets.files.partial_path`) and renamed
    together by :meth:`commit`; :meth:`discard` (also on leaving a ``with`` block) removes whatever is not committed."""

    def __init__(self) -> None:
        self._staged: list[_Staged] = []

    def stage(self, path: Path, write: Callable[[Path], None]) -> None:
        tmp = partial_path(Path(path).parent, Path(path).name)
        self._staged.append(_Staged(Path(path), tmp))
        write(tmp)

    def commit(self) -> None:
        while self._staged:
            item = self._staged[0]
            os.replace(item.tmp, item.final)
            self._staged.pop(0)

    def discard(self) -> None:
        for item in self._staged:
            try:
                item.tmp.unlink()
            except OSError:
                pass
        self._staged.clear()

    def __enter__(self) -> "StagedFiles":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.discard()
