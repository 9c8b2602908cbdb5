"""Losses the bundles need beyond MONAI's."""

from .ddanet import MaskAndReconstructionLoss
from .deep_supervision import StackedDeepSupervisionLoss
from .dice_bce import DiceBCELoss
from .segmentation import LOSS_NAMES, segmentation_loss

__all__ = ["LOSS_NAMES", "StackedDeepSupervisionLoss", "segmentation_loss"]
__all__ += ["DiceBCELoss", "MaskAndReconstructionLoss"]

from .hybrid import HybridLoss, IoULoss, MultiScaleSSIMLoss, UNet3PlusLoss, hybrid_segmentation_loss  # noqa: E402

__all__ += ["HybridLoss", "IoULoss", "MultiScaleSSIMLoss", "UNet3PlusLoss", "hybrid_segmentation_loss"]
