"""Segmentation networks, each generic over ``spatial_dims`` (2 or 3) and TorchScript-scriptable."""

from .arunet import ARUNet
from .attention_resunet import AttentionResUNet
from .linknet import LinkNet
from .pspnet import PSPNet

__all__ = ["ARUNet", "AttentionResUNet", "LinkNet", "PSPNet"]
