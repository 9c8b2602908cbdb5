"""Case-day metrics of the UW-Madison GI tract task: per-class 3D Dice, HD95 in mm, and the competition score.

The Kaggle competition (UW-Madison GI Tract Image Segmentation, 2022) scored ``0.4 * Dice + 0.6 * (1 - normalised 3D
Hausdorff distance)``. This module computes a physical-space version of it for one **case-day** (all slices of one
case and day stacked into a volume), per class, with MONAI's metric functions:

* **Dice** (:func:`monai.metrics.compute_dice`, ``ignore_empty=False``): 3D Dice of the case-day volume,
  ``2 |P & G| / (|P| + |G|)``; 1 when prediction and ground truth are both empty, 0 when exactly one is. (The Kaggle
  metric averaged a 2D Dice over slices, where every slice with nothing to find and nothing found scores 1; the 3D
  Dice is stricter and does not depend on how many empty slices a scan has.)
* **HD95** (:func:`monai.metrics.compute_hausdorff_distance`, ``percentile=95``), in mm: the 95th percentile of the
  symmetric surface distances, with the voxel spacing ``(sx, sy, slice thickness)``. 0 when both are empty; undefined
  (``nan``) when exactly one is (no distance exists; such case-days are left out of the mean HD95 but score as the
  worst case below).
* **Normalised Hausdorff distance** ``nhd``: the full (100th percentile, i.e. maximum) symmetric Hausdorff distance in
  mm, divided by the diagonal of the volume in mm, ``sqrt(sum_i (n_i * s_i) ** 2)`` over the three axes (``n_i``
  voxels of spacing ``s_i``), capped at 1. 0 when both are empty, 1 when exactly one is. (Kaggle used voxel units for
  both the distance and the diagonal; with the spacing, a 3 mm slice step weighs what it measures.)
* **score** of a class: ``0.4 * dice + 0.6 * (1 - nhd)``; the case-day score is the mean over the classes (the same
  as ``0.4 * mean Dice + 0.6 * (1 - mean nhd)``). Perfect prediction: 1; an organ missed entirely or predicted where
  there is none: 0 for that class.

The slice thickness is not stored in the UW-Madison PNG names (they carry the in-plane pixel spacing only); the
bundles assume 3 mm, the slice thickness of the competition's MRI scans, and make it a config value.

Public API: :func:`case_day_metrics`, :func:`competition_score`, :func:`volume_diagonal`, :data:`DICE_WEIGHT`,
:data:`HAUSDORFF_WEIGHT`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance

__all__ = ["DICE_WEIGHT", "HAUSDORFF_WEIGHT", "case_day_metrics", "competition_score", "volume_diagonal"]

DICE_WEIGHT = 0.4
"""Weight of the Dice term of the competition score."""
HAUSDORFF_WEIGHT = 0.6
"""Weight of the ``1 - normalised Hausdorff`` term of the competition score."""


def competition_score(dice: float, normalised_hausdorff: float) -> float:
    """``0.4 * dice + 0.6 * (1 - normalised_hausdorff)`` for one class (or for means over classes)."""
    return DICE_WEIGHT * float(dice) + HAUSDORFF_WEIGHT * (1.0 - float(normalised_hausdorff))


def volume_diagonal(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """Length in mm of the diagonal of a volume of ``shape`` voxels with ``spacing`` mm per voxel."""
    if len(shape) != len(spacing):
        raise ValueError(f"shape {tuple(shape)} and spacing {tuple(spacing)} must have one value per axis")
    return math.sqrt(sum((float(n) * float(s)) ** 2 for n, s in zip(shape, spacing)))


def _as_bool(array: Any, name: str) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(array) if not isinstance(array, torch.Tensor) else array).detach().cpu()
    if tensor.ndim != 4:
        raise ValueError(f"{name} must be (classes, X, Y, Z) binary masks, got shape {tuple(tensor.shape)}")
    return tensor > 0


def case_day_metrics(
    pred: Any, label: Any, spacing: Sequence[float], class_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """Dice, HD95, normalised Hausdorff distance and score of one case-day volume, per class.

    Args:
        pred: ``(C, X, Y, Z)`` binary prediction (nonzero = foreground), numpy or torch; ``Z`` the slice axis.
        label: ``(C, X, Y, Z)`` binary ground truth.
        spacing: ``(sx, sy, sz)`` in mm along ``X, Y, Z`` (``sz`` the slice thickness, 3 mm for the bundles).
        class_names: optional names of the ``C`` classes (only checked for length).

    Returns:
        ``{"dice": [C], "hd95": [C] (mm, nan where exactly one of pred/label is empty), "hausdorff": [C] (mm, same
        convention), "nhd": [C], "class_score": [C], "score": float}``, lists of Python floats; see the module
        docstring for the definitions and the empty-mask rules.
    """
    p = _as_bool(pred, "pred")
    g = _as_bool(label, "label")
    if p.shape != g.shape:
        raise ValueError(f"pred {tuple(p.shape)} and label {tuple(g.shape)} must have the same shape")
    if len(spacing) != 3:
        raise ValueError(f"spacing must be (sx, sy, slice thickness) in mm, got {tuple(spacing)}")
    n_classes = p.shape[0]
    if class_names is not None and len(class_names) != n_classes:
        raise ValueError(f"{len(class_names)} class names for {n_classes} channels")
    spacing = [float(s) for s in spacing]
    diagonal = volume_diagonal(p.shape[1:], spacing)
    dice = compute_dice(p[None].float(), g[None].float(), include_background=True, ignore_empty=False)[0]
    result: dict[str, list[float]] = {"dice": [], "hd95": [], "hausdorff": [], "nhd": [], "class_score": []}
    for c in range(n_classes):
        has_pred, has_label = bool(p[c].any()), bool(g[c].any())
        if has_pred and has_label:
            pc, gc = p[None, c : c + 1].float(), g[None, c : c + 1].float()
            hd95 = float(compute_hausdorff_distance(pc, gc, include_background=True, percentile=95, spacing=spacing))
            hd = float(compute_hausdorff_distance(pc, gc, include_background=True, spacing=spacing))
            nhd = min(hd / diagonal, 1.0) if diagonal > 0 else 0.0
        elif not has_pred and not has_label:
            hd95 = hd = nhd = 0.0
        else:
            hd95 = hd = float("nan")
            nhd = 1.0
        d = float(dice[c])
        result["dice"].append(d)
        result["hd95"].append(hd95)
        result["hausdorff"].append(hd)
        result["nhd"].append(nhd)
        result["class_score"].append(competition_score(d, nhd))
    return {**result, "score": float(np.mean(result["class_score"])) if n_classes else float("nan")}
