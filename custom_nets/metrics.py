"""Metrics in physical units.

MONAI's ``HausdorffDistanceMetric`` measures in millimetres only when it is given the voxel ``spacing``; its ignite
handler (``monai.handlers.HausdorffDistance``) passes none, so a bundle's evaluation would report HD95 in voxels of
its evaluation grid, and two grids (a plan's 2.5 mm slices against a default's 3 mm) could not be compared.
:class:`PhysicalHausdorffDistance` reads the spacing from each prediction's affine (MetaTensor) instead.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.metrics import HausdorffDistanceMetric

__all__ = ["PhysicalHausdorffDistance", "spacing_of"]


def spacing_of(image: Any) -> list[float] | None:
    """Voxel spacing (the affine's column norms, in the affine's units: mm for medical images) of a ``(B, C, *S)`` or
    ``(C, *S)`` MetaTensor; ``None`` for a plain tensor."""
    affine = getattr(image, "affine", None)
    if affine is None:
        return None
    affine = torch.as_tensor(affine, dtype=torch.float64)
    if affine.ndim == 3:
        affine = affine[0]
    dims = affine.shape[-1] - 1
    return [float(v) for v in torch.linalg.norm(affine[:dims, :dims], dim=0)]


class PhysicalHausdorffDistance(HausdorffDistanceMetric):
    """MONAI's ``HausdorffDistanceMetric`` (same arguments) in the units of the prediction's affine (mm).

    Shapes: ``y_pred`` and ``y`` ``(B, C, *spatial)`` one-hot or binary; the result ``(B, C)``. A ``spacing`` passed
    explicitly wins; a prediction without an affine is measured in voxels, as MONAI does.
    """

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any) -> torch.Tensor:  # type: ignore[override]
        if kwargs.get("spacing") is None:
            spacing = spacing_of(y_pred)
            if spacing is not None:
                kwargs["spacing"] = spacing[: y_pred.ndim - 2]
        return super()._compute_tensor(y_pred, y, **kwargs)
