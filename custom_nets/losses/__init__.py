"""Losses the bundles need beyond MONAI's."""

from .deep_supervision import StackedDeepSupervisionLoss
from .segmentation import LOSS_NAMES, segmentation_loss

__all__ = ["LOSS_NAMES", "StackedDeepSupervisionLoss", "segmentation_loss"]
