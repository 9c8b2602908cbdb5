"""Synthetic datasets in the canonical layout with chosen channels, labels, geometry and intensities.

For tests and benchmarks of the own-data path (every bundle on a dataset unlike its default task) and of planning:
each case holds blobs of the foreground labels inside a body; every channel sees each label at its own contrast, so
a network can learn them. Volumes get the affine asked for (oblique, flipped axes, anisotropic spacing); 2D cases
are PNG (8-bit per channel, or RGB in one file).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..files import atomic_folder

__all__ = ["make_synthetic_dataset", "oblique_affine"]


def oblique_affine(spacing: Sequence[float], angle_deg: float = 20.0, flip: Sequence[int] = (0,),
                   origin: Sequence[float] = (10.0, -20.0, 5.0)) -> np.ndarray:
    """A 4x4 voxel-to-RAS affine: ``spacing`` per voxel axis, rotated by ``angle_deg`` about the third axis, with the
    voxel axes in ``flip`` reversed, and the first two voxel axes swapped (a non-RAS storage order)."""
    t = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(t), -np.sin(t), 0.0], [np.sin(t), np.cos(t), 0.0], [0.0, 0.0, 1.0]])
    perm = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    signs = np.diag([-1.0 if i in flip else 1.0 for i in range(3)])
    affine = np.eye(4)
    affine[:3, :3] = rot @ perm @ signs @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def _blob(shape: Sequence[int], centre: np.ndarray, radius: np.ndarray) -> np.ndarray:
    grid = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radius)) <= 1.0


def _case(rng: np.random.Generator, shape: Sequence[int], num_labels: int, num_channels: int, ct: bool
          ) -> tuple[list[np.ndarray], np.ndarray]:
    shape = tuple(shape)
    n = np.asarray(shape, dtype=float)
    body = _blob(shape, n / 2 + rng.uniform(-0.05, 0.05, len(shape)) * n, n * 0.42)
    label = np.zeros(shape, dtype=np.uint8)
    for value in range(1, num_labels + 1):
        centre = n / 2 + rng.uniform(-0.18, 0.18, len(shape)) * n
        label[_blob(shape, centre, n * rng.uniform(0.08, 0.14, len(shape))) & body] = value
    contrast = rng.permutation(np.linspace(0.3, 1.0, num_labels + 1)) if num_channels else None
    images = []
    for c in range(num_channels):
        levels = np.roll(contrast, c) if contrast is not None else np.zeros(1)
        image = np.where(body, levels[label], 0.0) + rng.normal(0, 0.05, shape) * body
        if ct:  # Hounsfield-like: air -1000 outside, tissue around 0-200
            image = np.where(body, image * 200.0, -1000.0)
        else:  # MR-like arbitrary scale, zero outside the body
            image = image * 800.0
        images.append(image.astype(np.float32))
    return images, label


def make_synthetic_dataset(
    out_dir: str | os.PathLike,
    *,
    spatial_dims: int = 3,
    num_channels: int = 2,
    num_labels: int = 2,
    num_cases: int = 4,
    shape: Sequence[int] = (40, 36, 24),
    spacing: Sequence[float] = (1.0, 1.2, 3.0),
    oblique: bool = True,
    rgb: bool = False,
    ct: bool = False,
    num_test: int = 1,
    seed: int = 0,
    channel_names: Sequence[str] | None = None,
) -> Path:
    """Write a canonical dataset (``dataset.json``, ``imagesTr``, ``labelsTr``, ``imagesTs``) into ``out_dir``.

    Args:
        spatial_dims: 3 (NIfTI volumes with the affine of :func:`oblique_affine`, or axis-aligned) or 2 (PNG).
        num_channels: channels per case (ignored with ``rgb``: 3 in one file).
        num_labels: foreground labels 1..num_labels.
        shape: voxel shape (its first ``spatial_dims`` entries).
        spacing: voxel spacing per voxel axis (3D).
        ct: Hounsfield-like intensities and channel name ``CT``; else MR-like (``MR<c>``).
        channel_names: names instead of the defaults.
    """
    import nibabel as nib
    from PIL import Image

    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    shape = tuple(shape)[:spatial_dims]
    channels = 3 if rgb else num_channels
    names = list(channel_names) if channel_names else (
        ["R", "G", "B"] if rgb else (["CT"] * channels if ct else [f"MR{c}" for c in range(channels)]))
    ending = ".nii.gz" if spatial_dims == 3 else ".png"
    affine = oblique_affine(spacing) if oblique else np.diag([*spacing, 1.0])
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_folder(out) as tmp:
        for sub in ("imagesTr", "labelsTr", "imagesTs"):
            (tmp / sub).mkdir()
        for i in range(num_cases + num_test):
            images, label = _case(rng, shape, num_labels, channels, ct)
            case = f"case_{i:03d}"
            folder = "imagesTr" if i < num_cases else "imagesTs"
            if spatial_dims == 3:
                for c, image in enumerate(images):
                    nib.save(nib.Nifti1Image(image, affine), str(tmp / folder / f"{case}_{c:04d}{ending}"))
                if i < num_cases:
                    nib.save(nib.Nifti1Image(label, affine), str(tmp / "labelsTr" / f"{case}{ending}"))
                continue
            scaled = [np.clip(im / max(float(np.abs(im).max()), 1e-6) * 255, 0, 255).astype(np.uint8) for im in images]
            if rgb:
                Image.fromarray(np.stack(scaled, -1), mode="RGB").save(tmp / folder / f"{case}_0000.png")
            else:
                for c, im in enumerate(scaled):
                    Image.fromarray(im).save(tmp / folder / f"{case}_{c:04d}.png")
            if i < num_cases:
                Image.fromarray(label).save(tmp / "labelsTr" / f"{case}.png")
        meta = {
            "name": f"Synthetic{spatial_dims}D",
            "description": "synthetic test data (not patient data)",
            "channel_names": {str(c): n for c, n in enumerate(names)},
            "labels": {"background": 0, **{f"structure {v}": v for v in range(1, num_labels + 1)}},
            "numTraining": num_cases,
            "file_ending": ending,
        }
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2))
    return out
