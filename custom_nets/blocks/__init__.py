"""Building blocks shared by the networks, generic over ``spatial_dims``."""

from .attention import AttentionGate
from .common import DEFAULT_ACT, LINEAR_MODE, ConvNormAct
from .pyramid_pooling import PyramidPooling
from .residual import PreActResidualBlock, ProjectionResidualBlock
from .resnet import ResNetBasicBlock, ResNetBottleneckBlock, ResNetEncoder, get_resnet_block
from .sampling import Downsample, Upsample

__all__ = [
    "AttentionGate",
    "ConvNormAct",
    "DEFAULT_ACT",
    "Downsample",
    "LINEAR_MODE",
    "PreActResidualBlock",
    "ProjectionResidualBlock",
    "PyramidPooling",
    "ResNetBasicBlock",
    "ResNetBottleneckBlock",
    "ResNetEncoder",
    "Upsample",
    "get_resnet_block",
]

from .conv_attention import ChannelLayerNorm, ConvAttention, FCTLayer, WideFocus  # noqa: E402
from .full_scale import ClassificationGuidedModule, FullScaleDecoderStage, FullScaleSkip  # noqa: E402

__all__ += ["ChannelLayerNorm", "ConvAttention", "FCTLayer", "WideFocus"]
__all__ += ["ClassificationGuidedModule", "FullScaleDecoderStage", "FullScaleSkip"]

from .onednn import OneDNNConv2d, OneDNNConv3d, use_onednn_convolutions  # noqa: E402

__all__ += ["OneDNNConv2d", "OneDNNConv3d", "use_onednn_convolutions"]

from .mix_transformer import MixTransformer  # noqa: E402

__all__ += ["MixTransformer"]
