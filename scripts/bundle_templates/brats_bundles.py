"""Registry of the 3D BraTS bundles: what differs between them (network, text); the rest is ``brats3d``."""

from __future__ import annotations

from bundle_templates import brats3d, common
from bundle_templates.common import CHANGELOG_0_2_0_3D, BundleEntry

BRATS_3D_PAPER = (
    "Utilizing Attention, Linked Blocks, and Pyramid Pooling to Propel Brain Tumor Segmentation in 3D "
    "(the reference for the AR-UNet 3D, LinkNet 3D and PSPNet 3D architectures)."
)
BRATS_DATA = (
    "Menze B. H. et al. The Multimodal Brain Tumor Image Segmentation Benchmark (BRATS). IEEE TMI 34(10), 2015. "
    "https://doi.org/10.1109/TMI.2014.2377694"
)

BRATS_COMMON = common.family(
    brats3d, "brats3d_card.md", version="0.2.0", size_divisor=[8, 8, 8], roi_size=[64, 64, 64], learning_rate=1e-3,
    batch_size=1, reference_widths={"channels": [64, 128, 256, 512], "in_channels": 1, "out_channels": 4},
)
# the channels of the demo task (a dataset's own replace them: network_def in/out_channels are @task's)
BRATS_CHANNELS = {"spatial_dims": 3, "in_channels": 4, "out_channels": 3}

BUNDLES: dict[str, BundleEntry] = {
    "arunet3d": {
        **BRATS_COMMON,
        "title": "AR-UNet 3D: brain tumour sub-region segmentation (BraTS)",
        "summary": "An attention residual U-Net for 3D segmentation of glioma sub-regions from multi-parametric MRI, "
        'after "Utilizing Attention, Linked Blocks, and Pyramid Pooling to Propel Brain Tumor Segmentation in 3D".',
        "changelog": {"0.2.0": CHANGELOG_0_2_0_3D, "0.1.0": "first version: 4-modality BraTS regions, gated skips concatenated with decoder features"},
        "description": "Attention residual U-Net (AR-UNet 3D): pre-activation residual blocks, stride-2 convolution "
        "downsampling, trilinear upsampling and additive attention gates on the skip connections, segmenting the "
        "tumour core, whole tumour and enhancing tumour from FLAIR, T1, T1ce and T2 MRI. No pretrained weights ship.",
        "references": [
            BRATS_3D_PAPER,
            "Oktay O. et al. Attention U-Net: Learning Where to Look for the Pancreas. MIDL 2018. arXiv:1804.03999",
            "He K. et al. Identity Mappings in Deep Residual Networks. ECCV 2016. arXiv:1603.05027",
            BRATS_DATA,
        ],
        "network_def": {"_target_": "custom_nets.nets.ARUNet", **BRATS_CHANNELS, "channels": [16, 32, 64, 128],
                        "deep_supervision": False},
    },
    "linknet3d": {
        **BRATS_COMMON,
        "title": "LinkNet 3D: brain tumour sub-region segmentation (BraTS)",
        "summary": "LinkNet, a ResNet-18 encoder linked to a light decoder by additions, for 3D segmentation of glioma "
        'sub-regions from multi-parametric MRI, after "Utilizing Attention, Linked Blocks, and Pyramid Pooling to Propel '
        'Brain Tumor Segmentation in 3D".',
        "changelog": {"0.2.0": CHANGELOG_0_2_0_3D, "0.1.0": "first version: 4-modality BraTS regions, residual links restored, 3D throughout"},
        "description": "LinkNet 3D: a ResNet-18-style 3D encoder whose stage outputs are added to the matching "
        "decoder blocks (1x1 reduce, x2 transposed-convolution upsampling, 1x1 expand), segmenting the tumour core, "
        "whole tumour and enhancing tumour from FLAIR, T1, T1ce and T2 MRI. No pretrained weights ship.",
        "references": [
            BRATS_3D_PAPER,
            "Chaurasia A., Culurciello E. LinkNet: Exploiting Encoder Representations for Efficient Semantic "
            "Segmentation. VCIP 2017. arXiv:1707.03718",
            BRATS_DATA,
        ],
        "network_def": {"_target_": "custom_nets.nets.LinkNet", **BRATS_CHANNELS, "channels": [32, 64, 128, 256]},
        "size_divisor": [32, 32, 32],
    },
    "pspnet3d": {
        **BRATS_COMMON,
        "title": "PSPNet 3D: brain tumour sub-region segmentation (BraTS)",
        "summary": "PSPNet, a dilated ResNet-50 encoder with a pyramid pooling module, for 3D segmentation of glioma "
        'sub-regions from multi-parametric MRI, after "Utilizing Attention, Linked Blocks, and Pyramid Pooling to '
        'Propel Brain Tumor Segmentation in 3D".',
        "changelog": {"0.2.0": CHANGELOG_0_2_0_3D, "0.1.0": "first version: 4-modality BraTS regions, dilated 3D ResNet-50-style encoder, pyramid pooling"},
        "description": "PSPNet 3D: a dilated ResNet-50-style 3D bottleneck encoder (output stride 8) followed by a "
        "pyramid pooling module (bins 1, 2, 3, 6), a fusion convolution and a classifier upsampled to the input size, "
        "segmenting the tumour core, whole tumour and enhancing tumour from FLAIR, T1, T1ce and T2 MRI. No "
        "pretrained weights ship.",
        "references": [
            BRATS_3D_PAPER,
            "Zhao H., Shi J., Qi X., Wang X., Jia J. Pyramid Scene Parsing Network. CVPR 2017. arXiv:1612.01105",
            BRATS_DATA,
        ],
        "network_def": {"_target_": "custom_nets.nets.PSPNet", **BRATS_CHANNELS, "channels": [16, 32, 64, 128],
                        "layers": [3, 4, 6, 3]},
    },
}
