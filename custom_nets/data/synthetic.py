"""Synthetic datasets in the canonical layout with chosen channels, labels, geometry and intensities.

For tests and benchmarks of the own-data path (every bundle on a dataset unlike its default task) and of planning:
each case holds blobs of the foreground labels inside a body; every channel sees each label at its own contrast, so
a network can learn them. Volumes get the affine asked for (oblique, flipped axes, anisotropic spacing); 2D cases
are PNG (8-bit per channel, or RGB in one file).

With ``anatomy=True`` the cases are closer to real scans, for benchmarks (:func:`_anatomy_case`): a torso-like phantom
drawn in millimetres (fat rim, unlabelled bone, one large organ, small lesions inside it, medium structures
elsewhere), each slice the average of three sub-slices (partial volume of thick slices), tissue intensities that
overlap under noise, a smooth bias field on MR-like channels, CT stored as int16 Hounsfield units; with
``slice_spacings`` every case draws its own slice thickness (the slice count follows, the extent stays).
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


#: CT tissue intensities (Hounsfield units), (low, high) of each case's level: air, fat, soft tissue, bone, an
#: enhancing organ; lesions are 20-40 HU darker than their organ (as dark as soft tissue), other structures brighter
_CT_LEVELS = {"air": (-1000, -1000), "fat": (-110, -80), "soft": (30, 45), "bone": (500, 900), "organ": (80, 110),
              "structure": (120, 180)}
_LESION_CONTRAST = (-40.0, -20.0)
#: sub-slices averaged into one slice along the third axis (partial volume)
_SUB_SLICES = 3


def _anatomy_case(rng: np.random.Generator, shape: Sequence[int], spacing: Sequence[float], num_labels: int,
                  num_channels: int, ct: bool, noise: float | None) -> tuple[list[np.ndarray], np.ndarray]:
    """One torso-like case of ``shape`` voxels at ``spacing`` mm (2 or 3 axes; the third is the slice axis).

    Tissues: air outside an elliptic body, a fat rim, soft tissue, a bone disc (the spine, unlabelled); label 1 a
    large organ, label 2 one to three lesions inside it (2.5-6 mm radius, at most half the organ's; 20-40 HU darker),
    labels 3.. medium structures beside the organ. CT: Hounsfield units, Gaussian noise of ``noise`` HU (default 15),
    rounded to integers. MR-like: each tissue at its own level per channel (100-1000), zero outside the body, a
    smooth multiplicative bias field (+-20 %), noise of ``noise`` (default 30).

    Returns:
        (images, label): ``num_channels`` float32 arrays and a uint8 label map, each of ``shape``.
    """
    dims = len(shape)
    sub = _SUB_SLICES if dims == 3 else 1
    coords = []
    for axis, (n, s) in enumerate(zip(shape, spacing)):
        k = n * sub if axis == 2 else n
        coords.append(((np.arange(k, dtype=np.float32) + 0.5) / (k / n) - n / 2) * s)
    grid = np.meshgrid(*coords, indexing="ij")
    extent = np.asarray([n * s for n, s in zip(shape, spacing)], dtype=float)

    def ellipsoid(centre, radii) -> np.ndarray:
        return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1.0

    big = 1e6  # radius along z of the tube-like body and spine: they cross the whole field of view
    centre = np.zeros(dims)
    centre[:2] = rng.uniform(-0.03, 0.03, 2) * extent[:2]
    body_r = np.asarray([0.44, 0.36, big][:dims]) * np.r_[extent[:2], 1.0][:dims] * rng.uniform(0.9, 1.0)
    body = ellipsoid(centre, body_r)
    rim = rng.uniform(0.07, 0.12) * min(body_r[:2])
    inner = ellipsoid(centre, np.r_[body_r[:2] - rim, body_r[2:]])
    tissue = np.where(body, 1, 0).astype(np.uint8)  # 0 air, 1 fat, 2 soft tissue, 3 bone, 4+ labels
    tissue[inner] = 2
    spine = centre + np.r_[0.0, -0.6 * body_r[1], np.zeros(dims - 2)]
    tissue[ellipsoid(spine, [0.12 * min(body_r[:2])] * 2 + [big] * (dims - 2)) & inner] = 3
    label = np.zeros(tissue.shape, dtype=np.uint8)
    if num_labels >= 1:
        organ_c = centre + np.r_[0.3 * body_r[0], 0.1 * body_r[1], np.zeros(dims - 2)]
        organ_c += rng.uniform(-0.05, 0.05, dims) * extent
        organ_r = np.asarray([0.38 * body_r[0], 0.42 * body_r[1], 0.3 * extent[-1]][:dims])
        organ_r *= rng.uniform(0.85, 1.15, dims)
        organ = ellipsoid(organ_c, organ_r) & inner & (tissue != 3)
        label[organ] = 1
    if num_labels >= 2:
        inside = np.argwhere(label == 1)
        for _ in range(int(rng.integers(1, 4))):
            if inside.size == 0:
                break
            at = inside[rng.integers(len(inside))]
            c = np.asarray([coords[a][at[a]] for a in range(dims)])
            radius = min(rng.uniform(2.5, 6.0), 0.5 * min(organ_r))  # a lesion stays smaller than its organ
            lesion = ellipsoid(c, [radius] * dims) & (label >= 1)
            label[lesion] = 2
    for value in range(3, num_labels + 1):
        c = centre + np.r_[-0.35 * body_r[0], rng.uniform(-0.3, 0.3) * body_r[1], np.zeros(dims - 2)]
        c += rng.uniform(-0.05, 0.05, dims) * extent
        r = np.asarray([0.15 * body_r[0], 0.15 * body_r[1], 0.2 * extent[-1]][:dims]) * rng.uniform(0.8, 1.2, dims)
        label[ellipsoid(c, r) & inner & (tissue == 2) & (label == 0)] = value
    classes = np.where(label > 0, label.astype(np.int16) + 3, tissue)  # 4 organ, 5 lesion, 6.. structures
    images = []
    for _ in range(num_channels):
        if ct:
            levels = [rng.uniform(*_CT_LEVELS[k]) for k in ("air", "fat", "soft", "bone", "organ")]
            levels += [levels[4] + rng.uniform(*_LESION_CONTRAST)]
            levels += [rng.uniform(*_CT_LEVELS["structure"]) for _ in range(3, num_labels + 1)]
        else:
            levels = [0.0, *rng.uniform(100.0, 1000.0, 5 + max(num_labels - 2, 0))]
        image = np.asarray(levels, dtype=np.float32)[classes]
        if not ct:  # a smooth multiplicative bias field (coil sensitivity)
            g = [x / (e / 2) for x, e in zip(grid, extent)]
            image = image * (1.0 + 0.2 * sum(rng.uniform(-1, 1) * x + 0.5 * rng.uniform(-1, 1) * x * x for x in g))
        images.append(image)
    if sub > 1:  # each slice averages its sub-slices; its label is the middle one's
        images = [im.reshape(*im.shape[:2], -1, sub, *im.shape[3:]).mean(3) for im in images]
        label = label[:, :, sub // 2 :: sub]
        body = body[:, :, sub // 2 :: sub]
    out = []
    for image in images:
        if ct:
            image = image + rng.normal(0.0, 15.0 if noise is None else noise, image.shape)
            image = np.clip(np.round(image), -1024, 3071)
        else:
            image = np.where(body, image + rng.normal(0.0, 30.0 if noise is None else noise, image.shape), 0.0)
            image = np.clip(image, 0.0, None)
        out.append(image.astype(np.float32))
    return out, label


def _label_name(value: int, anatomy: bool) -> str:
    return {1: "organ", 2: "lesion"}.get(value, f"structure {value}") if anatomy else f"structure {value}"


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
    anatomy: bool = False,
    noise: float | None = None,
    slice_spacings: Sequence[float] | None = None,
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
        anatomy: torso-like phantoms in millimetres (see :func:`_anatomy_case`; labels named ``organ``, ``lesion``,
            then ``structure 3`` ...) instead of blobs; CT volumes are stored as int16.
        noise: the anatomy's noise standard deviation (HU for CT; default 15, MR-like 30).
        slice_spacings: each case's spacing of the third voxel axis, drawn from these (3D); the number of slices
            follows so that the case keeps the extent ``shape[2] * spacing[2]``.
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

    def affine_of(case_spacing: Sequence[float]) -> np.ndarray:
        return oblique_affine(case_spacing) if oblique else np.diag([*case_spacing, 1.0])

    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_folder(out) as tmp:
        for sub in ("imagesTr", "labelsTr", "imagesTs"):
            (tmp / sub).mkdir()
        for i in range(num_cases + num_test):
            case_shape, case_spacing = shape, tuple(spacing)
            if slice_spacings and spatial_dims == 3:
                thickness = float(rng.choice(np.asarray(slice_spacings, dtype=float)))
                case_spacing = (*case_spacing[:2], thickness)
                case_shape = (*shape[:2], max(1, round(shape[2] * spacing[2] / thickness)))
            if anatomy:
                images, label = _anatomy_case(rng, case_shape, case_spacing[:spatial_dims], num_labels, channels, ct,
                                              noise)
            else:
                images, label = _case(rng, case_shape, num_labels, channels, ct)
            affine = affine_of(case_spacing)
            case = f"case_{i:03d}"
            folder = "imagesTr" if i < num_cases else "imagesTs"
            if spatial_dims == 3:
                for c, image in enumerate(images):
                    stored = image.astype(np.int16) if anatomy and ct else image
                    nib.save(nib.Nifti1Image(stored, affine), str(tmp / folder / f"{case}_{c:04d}{ending}"))
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
            "description": f"synthetic {'torso-like phantoms' if anatomy else 'test data'} (not patient data)",
            "channel_names": {str(c): n for c, n in enumerate(names)},
            "labels": {"background": 0, **{_label_name(v, anatomy): v for v in range(1, num_labels + 1)}},
            "numTraining": num_cases,
            "file_ending": ending,
        }
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2))
    return out
