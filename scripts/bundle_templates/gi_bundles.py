"""Registry of the UW-Madison GI tract bundles: UNet 3+ and FCT on one task (``gi2d.GI``) of the 2D template."""

from __future__ import annotations

from bundle_templates import common, gi2d, seg2d
from bundle_templates.common import CHANGELOG_0_2_0_2D, BundleEntry

UWMADISON_DATA = (
    "UW-Madison Carbone Cancer Center. UW-Madison GI Tract Image Segmentation, Kaggle competition, 2022. "
    "https://www.kaggle.com/competitions/uw-madison-gi-tract-image-segmentation"
)
UNET3PLUS = (
    "Huang H. et al. UNet 3+: A Full-Scale Connected UNet for Medical Image Segmentation. ICASSP 2020. "
    "arXiv:2004.08790"
)
FCT_PAPER = (
    "Tragakis A., Kaul C., Murray-Smith R., Husmeier D. The Fully Convolutional Transformer for Medical Image "
    "Segmentation. WACV 2023. arXiv:2206.00566"
)
# the per-output segmentation loss, chosen by one value: "hybrid" (focal + MS-SSIM + IoU) or "dice_bce"
SEG_LOSS = {"_target_": "custom_nets.losses.hybrid_segmentation_loss", "kind": "@loss_kind"}
GI_COMMON = common.family(seg2d, "gi_card.md", task=gi2d.GI, version="0.2.0", learning_rate=1e-3, roi_size=[224, 224])

BUNDLES: dict[str, BundleEntry] = {
    "unet3plus": {
        **GI_COMMON,
        "title": "UNet 3+: large bowel, small bowel and stomach segmentation on MRI slices (UW-Madison GI tract)",
        "summary": "UNet 3+ (full-scale skip connections, full-scale deep supervision and a classification-guided "
        "module) segmenting the large bowel, small bowel and stomach on 16-bit abdominal MRI slices, trained with "
        "the paper's hybrid focal + MS-SSIM + IoU loss.",
        "changelog": {
            "0.2.0": CHANGELOG_0_2_0_2D,
            "0.1.0": "first version: UNet 3+ with deep supervision and CGM (presence BCE), hybrid loss, 2D or 2.5D"
        },
        "description": "UNet 3+ on UW-Madison GI tract MRI slices (1 channel, or neighbouring slices with offsets), "
        "3 sigmoid channels (large bowel, small bowel, stomach; they may overlap), full-scale deep supervision and "
        "a classification-guided module trained with a presence BCE; hybrid focal + MS-SSIM + IoU loss by default "
        "(loss_kind: hybrid or dice_bce). Evaluation per case-day: Dice, HD95 and the competition score. No "
        "pretrained weights ship.",
        "references": [UWMADISON_DATA, UNET3PLUS],
        "network_def": {
            "_target_": "custom_nets.nets.UNet3Plus",
            "spatial_dims": 2,
            "in_channels": 1,
            "out_channels": 3,
            "channels": [16, 32, 64, 128, 256],
            "skip_channels": 16,
            "deep_supervision": True,
            "cgm": True,
        },
        # the classification-guided module is switched on once, for the network and its loss (@cgm)
        "top_level_network_values": ["cgm"],
        "reference_widths": {"channels": [64, 128, 256, 512, 1024], "skip_channels": 64},
        "size_divisor": [16, 16],
        "batch_size": 16,
        "loss_config": {
            "loss_kind": "hybrid",
            "seg_loss": SEG_LOSS,
            "loss": {
                "_target_": "custom_nets.losses.UNet3PlusLoss",
                "seg_loss": "@seg_loss",
                "cgm": "@cgm",
                "cgm_weight": 1.0,
                "weight_mode": "same",
            },
        },
    },
    "fct": {
        **GI_COMMON,
        "title": "FCT: large bowel, small bowel and stomach segmentation on MRI slices (UW-Madison GI tract)",
        "summary": "The Fully Convolutional Transformer (convolutional attention and Wide-Focus in every block, an "
        "image pyramid into the encoder, deep supervision at three scales) segmenting the large bowel, small bowel "
        "and stomach on 16-bit abdominal MRI slices.",
        "version": "0.3.0",
        "changelog": {
            "0.3.0": "one attention head in the two 16-wide blocks (the first encoder and the last decoder block), two elsewhere: every head is at least 16 channels wide, which PyTorch's CPU attention runs 2.7x faster than two 8-wide heads (whole network 1.6x faster on CPU); parameters and state_dict keys unchanged, but weights trained with 0.2.0 compute differently: retrain",
            "0.2.0": CHANGELOG_0_2_0_2D,
            "0.1.0": "first version: FCT with channel LayerNorm, 3-scale deep supervision (0.57/0.29/0.14), 2D or 2.5D"
        },
        "description": "FCT (Fully Convolutional Transformer) on UW-Madison GI tract MRI slices (1 channel, or "
        "neighbouring slices with offsets), 3 sigmoid channels (large bowel, small bowel, stomach; they may "
        "overlap), deep supervision at full, 1/2 and 1/4 resolution weighted 0.57/0.29/0.14; Dice + BCE loss by "
        "default (loss_kind: dice_bce or hybrid). Evaluation per case-day: Dice, HD95 and the competition score. "
        "No pretrained weights ship.",
        "references": [UWMADISON_DATA, FCT_PAPER],
        "network_def": {
            "_target_": "custom_nets.nets.FCT",
            "spatial_dims": 2,
            "in_channels": 1,
            "out_channels": 3,
            "channels": [16, 32, 64, 128, 256],
            # per block, encoder then decoder (widths 16 32 64 128 256 128 64 32 16): heads at least 16 wide
            "num_heads": [1, 2, 2, 2, 2, 2, 2, 2, 1],
            "deep_supervision": True,
        },
        "reference_widths": {"channels": [32, 64, 128, 256, 512]},
        "size_divisor": [32, 32],
        "batch_size": 8,
        "loss_config": {
            "loss_kind": "dice_bce",
            "seg_loss": SEG_LOSS,
            "loss": {
                "_target_": "custom_nets.losses.StackedDeepSupervisionLoss",
                "loss": "@seg_loss",
                "weights": [0.57, 0.29, 0.14],
            },
        },
    },
}
