"""Resampling to a task's spacing that also runs under MONAI Label.

MONAI's ``Spacingd`` (1.6) calls ``.update()`` on every data entry named ``<key>_*`` when the image is NIfTI, and
MONAI Label 0.8.5 puts a string ``image_path`` into the data: the request fails with an HTTP 500. This subclass keeps
such non-dict entries out of that update; resampling and its inverse (``Invertd``) are MONAI's.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.transforms import Spacingd

__all__ = ["TaskSpacingd"]


class TaskSpacingd(Spacingd):
    """``monai.transforms.Spacingd``, tolerant of non-dict ``<key>_*`` entries (MONAI Label's ``image_path``)."""

    def __call__(self, data: Mapping[Hashable, torch.Tensor], lazy: bool | None = None) -> dict[Hashable, torch.Tensor]:
        prefixes = tuple(f"{key}_" for key in self.keys)
        aside = {k: v for k, v in data.items() if isinstance(k, str) and k.startswith(prefixes) and not isinstance(v, dict)}
        out = super().__call__({k: v for k, v in data.items() if k not in aside}, lazy=lazy)
        out.update(aside)
        return out
