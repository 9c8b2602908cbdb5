"""Attention residual U-Net for 2D brain-tumour segmentation on the LGG MRI slice dataset.

References:
    * Buda, Saha and Mazurowski, "Association of genomic subtypes of lower-grade gliomas with shape features
      automatically extracted by a deep learning algorithm", Computers in Biology and Medicine 109 (2019) 218-225:
      the LGG data set (Kaggle "lgg-mri-segmentation", ``kaggle_3m``: 110 TCGA patients, 256x256 slices with three
      MR sequences -- pre-contrast, FLAIR, post-contrast -- as the three channels, and FLAIR tumour masks);
    * Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018, arXiv 1804.03999: the
      additive attention gates on the skip connections, driven by the coarser decoder level;
    * He et al., "Identity Mappings in Deep Residual Networks", ECCV 2016, arXiv 1603.05027: the residual blocks.

The reference model for this data set is a 2D Keras attention residual U-Net: residual conv blocks; an encoder of
residual blocks and max-pooling; a decoder that, at every level, gates the skip with an attention gate driven by the
decoder level below, up-samples, concatenates and applies a residual block; a sigmoid output trained with a binary
focal loss; optionally separable convolutions. :class:`AttentionResUNet` is that layout expressed with
:class:`~custom_nets.nets.arunet.ARUNet` (same pre-activation residual block, attention gate and decoder block, see
that module's docstring) -- only the defaults differ: 2D, three input channels, one output channel (tumour logit, use
a sigmoid), five levels ``(16, 32, 64, 128, 256)`` and max-pool down-sampling (``downsample="maxpool"``: x2 max-pool,
then a 1x1 conv to the next width). Where this implementation departs from a plain Keras port it follows ARUNet:
pre-activation (norm-act-conv) residual blocks, a 1x1 projection shortcut when the width changes, gating signals
resampled to the skip's grid, and a final norm + act before the 1x1 head.

Train it with :func:`custom_nets.losses.segmentation.segmentation_loss` (``"focal"`` for the reference's binary
focal loss) on data from :mod:`custom_nets.data.lgg`.
"""

from __future__ import annotations

from collections.abc import Sequence

from custom_nets.blocks.common import DEFAULT_ACT
from custom_nets.nets.arunet import ARUNet

__all__ = ["AttentionResUNet"]


class AttentionResUNet(ARUNet):
    """The LGG attention residual U-Net: an :class:`ARUNet` with 2D, max-pool, five-level defaults.

    Shapes:
        input ``(B, in_channels, H, W)`` (for LGG slices ``(B, 3, 256, 256)``) with every spatial size divisible by
        ``2 ** (len(channels) - 1)`` (16 at the default five levels); output logits ``(B, out_channels, H, W)``, no
        sigmoid. ``spatial_dims=3`` gives the same network in 3D. Deep supervision behaves as in :class:`ARUNet`.

    Parameter count at the defaults (``spatial_dims=2, in_channels=3, out_channels=1,
    channels=(16, 32, 64, 128, 256)``, batch norm, ``downsample="maxpool"``): 2,328,513 with ``separable=False``,
    424,945 with ``separable=True`` (2,676,673 with stride-2 conv down-sampling, ``downsample="conv"``).

    Args:
        spatial_dims: 2 (default) or 3 (1 also works).
        in_channels: input channels (3: pre-contrast, FLAIR, post-contrast for LGG slices).
        out_channels: output channels (1: the tumour logit).
        channels: width of each level, shallowest first; at least two levels.
        norm: MONAI norm name/tuple of every block, gate and head.
        act: MONAI activation name/tuple of the residual blocks and head (the gates use ReLU).
        dropout: dropout probability inside every residual block.
        deep_supervision: extra heads on the intermediate decoder levels (stacked output in training mode).
        separable: depthwise-separable 3x3 convs in the residual blocks.
        downsample: ``"maxpool"`` (default, as in the reference) or ``"conv"`` (stride-2 3x3 conv).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        channels: Sequence[int] = (16, 32, 64, 128, 256),
        norm: str | tuple | None = "batch",
        act: str | tuple = DEFAULT_ACT,
        dropout: float = 0.0,
        deep_supervision: bool = False,
        separable: bool = False,
        downsample: str = "maxpool",
    ) -> None:
        super().__init__(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=channels,
            norm=norm,
            act=act,
            dropout=dropout,
            deep_supervision=deep_supervision,
            separable=separable,
            downsample=downsample,
        )
