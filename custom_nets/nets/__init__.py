"""Segmentation networks, each generic over ``spatial_dims`` (2 or 3) and TorchScript-scriptable."""

from .arunet import ARUNet
from .attention_resunet import AttentionResUNet
from .ddanet import DDANet
from .drrmsan import DRRMSAN
from .linknet import LinkNet
from .pspnet import PSPNet

__all__ = ["ARUNet", "AttentionResUNet", "LinkNet", "PSPNet"]
__all__ += ["DDANet", "DRRMSAN"]

from .fct import FCT  # noqa: E402
from .unet3plus import UNet3Plus  # noqa: E402

__all__ += ["FCT", "UNet3Plus"]

from .ssformer import SSFormer  # noqa: E402

__all__ += ["SSFormer"]
