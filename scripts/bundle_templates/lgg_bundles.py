"""Registry of the 2D LGG bundles: the attention residual U-Net and its two baselines on one task and pipeline."""

from __future__ import annotations

from bundle_templates import common, seg2d
from bundle_templates.common import CHANGELOG_0_2_0_2D, BundleEntry

LGG_DATA = (
    "Buda M., Saha A., Mazurowski M. A. Association of genomic subtypes of lower-grade gliomas with shape features "
    "automatically extracted by a deep learning algorithm. Computers in Biology and Medicine 109, 2019. "
    "https://doi.org/10.1016/j.compbiomed.2019.05.002"
)
ATTENTION_UNET = "Oktay O. et al. Attention U-Net: Learning Where to Look for the Pancreas. MIDL 2018. arXiv:1804.03999"
UNET = (
    "Ronneberger O., Fischer P., Brox T. U-Net: Convolutional Networks for Biomedical Image Segmentation. MICCAI 2015. "
    "arXiv:1505.04597"
)
LGG_COMMON = common.family(seg2d, "lgg_card.md", task=seg2d.LGG, version="0.2.0", size_divisor=[16, 16],
                           learning_rate=1e-3, batch_size=16, reference_widths={"channels": [64, 128, 256, 512, 1024]})
# the channels of the demo task (a dataset's own replace them) and the widths of the three networks
LGG_NETWORK = {"spatial_dims": 2, "in_channels": 3, "out_channels": 1, "channels": [16, 32, 64, 128, 256]}


def _monai_baseline(title: str, monai_class: str, role: str, reference: str, detail: str = "",
                    **network: object) -> BundleEntry:
    """A MONAI network as a baseline of the LGG comparison: the reference model's data, budget, pipeline and widths,
    Dice loss; ``network`` holds its own ``network_def`` arguments."""
    return {
        **LGG_COMMON,
        "title": f"{title} 2D baseline: lower-grade glioma segmentation on MRI slices (LGG)",
        "summary": f"MONAI's {title} as {role} of the LGG comparison, trained with the same data, budget and "
        "pipeline as the attention residual U-Net.",
        "changelog": {"0.2.0": CHANGELOG_0_2_0_2D, "0.1.0": f"first version: MONAI {monai_class}, Dice loss"},
        "description": f"MONAI {monai_class}{detail} on LGG brain MRI slices, one sigmoid tumour channel, Dice loss by "
        "default (loss_name: dice, focal, dicefocal or wce). No pretrained weights ship.",
        "references": [LGG_DATA, reference],
        "network_def": {"_target_": f"monai.networks.nets.{monai_class}", **LGG_NETWORK, "strides": [2, 2, 2, 2],
                        **network},
        "loss_name": "dice",
    }


BUNDLES: dict[str, BundleEntry] = {
    "attention_resunet2d": {
        **LGG_COMMON,
        "title": "Attention residual U-Net 2D: lower-grade glioma segmentation on MRI slices (LGG)",
        "summary": "The reference model of the LGG comparison: a 2D attention residual U-Net (residual blocks, max-pool "
        "encoder, attention gates driven by the coarser decoder level) segmenting tumour on FLAIR-based MRI slices.",
        "changelog": {"0.2.0": CHANGELOG_0_2_0_2D, "0.1.0": "first version: pre-activation residual blocks, attention-gated skips, Dice + focal loss"},
        "description": "2D attention residual U-Net on LGG brain MRI slices (pre-contrast, FLAIR, post-contrast as 3 "
        "channels), one sigmoid tumour channel, Dice + focal loss by default (loss_name: dice, focal, dicefocal or "
        "wce). Inference writes one mask per image, or one 3D label map per NIfTI volume segmented slice by slice. "
        "No pretrained weights ship.",
        "references": [LGG_DATA, ATTENTION_UNET, "He K. et al. Identity Mappings in Deep Residual Networks. ECCV 2016. arXiv:1603.05027"],
        "network_def": {"_target_": "custom_nets.nets.AttentionResUNet", **LGG_NETWORK},
        "loss_name": "dicefocal",
    },
    "unet2d": _monai_baseline("U-Net", "UNet", "the baseline", UNET, detail=" (residual units)",
                              num_res_units=2, norm="batch"),
    "attention_unet2d": _monai_baseline("Attention U-Net", "AttentionUnet", "the second baseline", ATTENTION_UNET),
}
