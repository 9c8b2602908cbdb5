"""Overlay previews: label maps drawn in colour over the image, as PNG (pillow only).

3D: up to three axial slices side by side (the slice with the largest labelled area, and the slices at a quarter and
three quarters of the labelled extent; the middle slice when nothing is labelled), in radiological display (patient
right on the left, anterior at the top), with square millimetre pixels. 2D: the whole image. A legend names the
label values. Colours follow the sorted label values: red, green, blue, yellow, magenta, cyan, orange, ...
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from custom_nets.files import write_file_atomic

from .io import Geometry

__all__ = ["PALETTE", "pick_slices", "render_preview", "write_preview"]

PALETTE = (
    (230, 25, 75),
    (60, 180, 75),
    (0, 130, 200),
    (255, 225, 25),
    (240, 50, 230),
    (70, 240, 240),
    (245, 130, 48),
    (145, 30, 180),
    (210, 245, 60),
    (250, 190, 212),
)
_ALPHA = 0.45
_MIN_SIDE = 256
_MAX_SIDE = 512


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Window an intensity image to its 1st-99th percentile (over nonzero pixels when there are enough)."""
    values = image[image != 0] if np.count_nonzero(image) > 0.05 * image.size else image.ravel()
    if values.size == 0:
        return np.zeros(image.shape, dtype=np.uint8)
    low, high = np.percentile(values, [1, 99])
    if high <= low:  # (nearly) constant: show what is above the lowest value in white
        low = min(float(values.min()), float(low)) - 1.0
    return (np.clip((image - low) / (high - low), 0, 1) * 255).astype(np.uint8)


def pick_slices(label: np.ndarray, axis: int, count: int = 3) -> list[int]:
    """Slices along ``axis``: the one with the largest labelled area, then a quarter and three quarters of the extent."""
    other = tuple(a for a in range(label.ndim) if a != axis)
    area = np.count_nonzero(label, axis=other)
    if not area.any():
        return [label.shape[axis] // 2]
    nonzero = np.flatnonzero(area)
    low, high = int(nonzero[0]), int(nonzero[-1])
    chosen = [int(np.argmax(area))]
    for fraction in (0.25, 0.75):
        k = int(round(low + fraction * (high - low)))
        if k not in chosen:
            chosen.append(k)
    return sorted(chosen[:count])


def _colour_table(values: Sequence[int]) -> dict[int, tuple[int, int, int]]:
    return {int(v): PALETTE[i % len(PALETTE)] for i, v in enumerate(sorted(values))}


def _overlay(gray_or_rgb: np.ndarray, label: np.ndarray, colours: Mapping[int, tuple[int, int, int]]) -> np.ndarray:
    rgb = np.repeat(gray_or_rgb[..., None], 3, axis=-1) if gray_or_rgb.ndim == 2 else gray_or_rgb[..., :3]
    out = rgb.astype(np.float32)
    for value, colour in colours.items():
        mask = label == value
        if mask.any():
            out[mask] = (1 - _ALPHA) * out[mask] + _ALPHA * np.asarray(colour, dtype=np.float32)
    return out.astype(np.uint8)


def _resize(picture, label_picture, aspect: float):
    """Resize an image/label pair so pixels are square (``aspect`` = row height / column width) and readable."""
    from PIL import Image

    height, width = picture.shape[:2]
    new_w, new_h = float(width), float(height) * aspect
    scale = max(1.0, _MIN_SIDE / max(min(new_w, new_h), 1.0))
    scale = min(scale, _MAX_SIDE / max(new_w, new_h, 1.0)) if max(new_w, new_h) * scale > _MAX_SIDE else scale
    size = (max(1, int(round(new_w * scale))), max(1, int(round(new_h * scale))))
    image = Image.fromarray(picture).resize(size, Image.BILINEAR)
    labels = Image.fromarray(label_picture.astype(np.int32)).resize(size, Image.NEAREST)
    return np.asarray(image), np.asarray(labels)


def _axial_panels(image: np.ndarray, label: np.ndarray, affine: np.ndarray, colours) -> list[np.ndarray]:
    from nibabel.orientations import apply_orientation, io_orientation

    ornt = io_orientation(affine)
    image = apply_orientation(image, ornt)
    label = apply_orientation(label, ornt)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    ras_zooms = np.empty(3)
    for axis, (target, _) in enumerate(ornt):
        ras_zooms[int(target)] = zooms[axis]
    window = _to_uint8(image)
    panels = []
    for k in pick_slices(label, axis=2):
        # (R, A) slice -> rows from anterior to posterior, columns from patient right to left (radiological)
        img2d = window[::-1, ::-1, k].T
        lab2d = label[::-1, ::-1, k].T
        img2d, lab2d = _resize(np.ascontiguousarray(img2d), np.ascontiguousarray(lab2d), ras_zooms[1] / ras_zooms[0])
        panels.append(_overlay(img2d, lab2d, colours))
    return panels


def render_preview(image: np.ndarray, label: np.ndarray, geometry: Geometry,
                   label_names: Mapping[int, str] | None = None) -> np.ndarray:
    """The preview picture, ``(H, W, 3)`` uint8.

    Args:
        image: ``(C, *spatial)`` input in the layout of ``geometry`` (3D: channel 0 is shown; 2D: RGB or channel 0).
        label: integer label map, ``spatial`` shape.
        geometry: the input's geometry.
        label_names: label value -> name, for the legend (values found in ``label`` are added).
    """
    from PIL import Image, ImageDraw

    names = {int(k): str(v) for k, v in (label_names or {}).items()}
    for value in np.unique(label):
        if int(value) != 0:
            names.setdefault(int(value), str(int(value)))
    colours = _colour_table(list(names))
    if geometry.spatial_dims == 3:
        panels = _axial_panels(np.asarray(image[0], dtype=np.float32), np.asarray(label), geometry.affine, colours)
    else:
        picture = image.transpose(0, 2, 1) if geometry.transposed else image
        lab = label.T if geometry.transposed else label
        shown = picture[:3] if picture.shape[0] >= 3 else picture[:1]
        if shown.min() >= 0 and shown.max() <= 255:  # 8-bit pictures are shown as they are
            shown = shown.astype(np.uint8)
        else:  # one window for all channels, so colours keep their balance
            shown = _to_uint8(shown)
        shown = np.moveaxis(shown, 0, -1) if shown.shape[0] == 3 else shown[0]
        shown, lab = _resize(np.ascontiguousarray(shown), np.ascontiguousarray(lab), 1.0)
        panels = [_overlay(shown, lab, colours)]
    gap = 4
    height = max(p.shape[0] for p in panels)
    legend_height = 16 * max(1, len(colours)) + 8
    width = sum(p.shape[1] for p in panels) + gap * (len(panels) - 1)
    canvas = Image.new("RGB", (max(width, 200), height + legend_height), (0, 0, 0))
    x = 0
    for panel in panels:
        canvas.paste(Image.fromarray(panel), (x, 0))
        x += panel.shape[1] + gap
    draw = ImageDraw.Draw(canvas)
    y = height + 4
    for value, colour in colours.items():
        draw.rectangle([4, y + 2, 14, y + 12], fill=colour)
        draw.text((20, y), f"{value}: {names[value]}", fill=(255, 255, 255))
        y += 16
    return np.asarray(canvas)


def write_preview(path: str | os.PathLike, image: np.ndarray, label: np.ndarray, geometry: Geometry,
                  label_names: Mapping[int, str] | None = None) -> None:
    """Render the preview and write it atomically as PNG to ``path``."""
    from PIL import Image

    picture = render_preview(image, label, geometry, label_names)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_file_atomic(path, lambda tmp: Image.fromarray(picture).save(tmp, format="PNG"))
