"""Losses the bundles need beyond MONAI's."""

from .deep_supervision import StackedDeepSupervisionLoss

__all__ = ["StackedDeepSupervisionLoss"]
