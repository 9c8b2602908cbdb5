"""Registry of the RGB lesion bundles: DRRMSAN, DDANet and SSFormer on Kvasir-SEG polyps (and ISIC 2017 skin
lesions)."""

from __future__ import annotations

from dataclasses import replace

from bundle_templates import common, polyp2d, seg2d
from bundle_templates.common import CHANGELOG_0_2_0_2D, BundleEntry

KVASIR = "Jha D. et al. Kvasir-SEG: A Segmented Polyp Dataset. MultiMedia Modeling (MMM) 2020. arXiv:1911.07069"
ISIC_2017 = (
    "Codella N. C. F. et al. Skin Lesion Analysis Toward Melanoma Detection: A Challenge at the 2017 International "
    "Symposium on Biomedical Imaging (ISBI), Hosted by the International Skin Imaging Collaboration (ISIC). ISBI 2018. "
    "arXiv:1710.05006"
)
MULTIRESUNET = (
    "Ibtehaz N., Rahman M. S. MultiResUNet: Rethinking the U-Net Architecture for Multimodal Biomedical Image "
    "Segmentation. Neural Networks 121, 2020. arXiv:1902.04049"
)
ATTENTION_UNET = "Oktay O. et al. Attention U-Net: Learning Where to Look for the Pancreas. MIDL 2018. arXiv:1804.03999"

POLYP_COMMON = common.family(seg2d, "polyp_card.md", task=polyp2d.POLYP, version="0.2.0", size_divisor=[16, 16],
                             learning_rate=1e-3, batch_size=8)
# the channels of the demo task (a dataset's own replace them)
RGB_TO_ONE = {"spatial_dims": 2, "in_channels": 3, "out_channels": 1}

BUNDLES: dict[str, BundleEntry] = {
    "drrmsan": {
        **POLYP_COMMON,
        "title": "DRRMSAN 2D: polyp (Kvasir-SEG) and skin-lesion (ISIC 2017) segmentation in RGB images",
        "summary": "DRRMSAN, a MultiResUNet with the input image average-, max- and min-pooled into the encoder at "
        "1/2, 1/4 and 1/8, attention-gated ResPath skips and deep supervision at four scales, segmenting colon polyps "
        "in endoscopy frames (Kvasir-SEG) or, with one override, skin lesions in dermoscopy images (ISIC 2017).",
        "changelog": {"0.2.0": CHANGELOG_0_2_0_2D, "0.1.0": "first version: DRRMSAN (base width 16), BCE on all five outputs"},
        "description": "DRRMSAN (multi-scale pooled inputs, MultiRes blocks, attention-gated ResPaths, four deeply "
        "supervised side outputs and their weighted sum) on RGB images resized to image_size (256 x 256 by default), "
        "one sigmoid channel, binary cross-entropy on all five outputs. Kvasir-SEG layout by default, ISIC 2017 with "
        "--layout isic --image_size [256,192]. Inference writes one PNG mask per image at the image's original size. "
        "No pretrained weights ship.",
        "references": [
            "DRRMSAN: Deep Residual Regularized Multi-Scale Attention Networks. arXiv 2021 (2D RGB segmentation of LGG "
            "MRI slices, Kvasir-SEG polyps and ISIC-2017 skin lesions)",
            MULTIRESUNET,
            ATTENTION_UNET,
            KVASIR,
            ISIC_2017,
        ],
        "network_def": {
            "_target_": "custom_nets.nets.DRRMSAN",
            **RGB_TO_ONE,
            "base_width": 16,
            "side_weights": [0.25, 0.25, 0.25, 0.25],
        },
        "reference_widths": {"base_width": 32},
        "loss_config": {
            "deep_supervision_weights": [1.0, 1.0, 1.0, 1.0, 1.0],
            "loss": {
                "_target_": "custom_nets.losses.StackedDeepSupervisionLoss",
                "loss": {"_target_": "torch.nn.BCEWithLogitsLoss"},
                "weights": "@deep_supervision_weights",
            },
        },
    },
    "ddanet": {
        **POLYP_COMMON,
        "title": "DDANet 2D: polyp (Kvasir-SEG) and skin-lesion (ISIC 2017) segmentation in RGB images",
        "summary": "DDANet, one encoder of squeeze-excitation residual blocks and two decoders: one segments, the other "
        "reconstructs the grayscale image and gates the first with its attention maps. Segments colon polyps in "
        "endoscopy frames (Kvasir-SEG) or, with one override, skin lesions in dermoscopy images (ISIC 2017).",
        "changelog": {"0.2.0": CHANGELOG_0_2_0_2D, "0.1.0": "first version: DDANet (reference widths), Dice + BCE on the mask, BCE on the grayscale"},
        "description": "DDANet (dual decoder attention network) on RGB images resized to image_size (256 x 256 by "
        "default), one sigmoid channel; trained with Dice + BCE on the mask plus BCE on the grayscale reconstruction "
        "(the reconstruction decoder only gates the mask decoder at inference). Kvasir-SEG layout by default, ISIC "
        "2017 with --layout isic --image_size [256,192]. Inference writes one PNG mask per image at the image's "
        "original size. No pretrained weights ship.",
        "references": [
            "Tomar N. K., Jha D., Ali S., Johansen H. D., Johansen D., Riegler M. A., Halvorsen P. DDANet: Dual Decoder "
            "Attention Network for Automatic Polyp Segmentation. ICPR 2020 workshops (2021). arXiv:2012.15245",
            KVASIR,
            ISIC_2017,
        ],
        "network_def": {
            "_target_": "custom_nets.nets.DDANet",
            **RGB_TO_ONE,
            "channels": [32, 64, 128, 256],
            "decoder_channels": [128, 64, 32, 16],
        },
        "reference_widths": {"channels": [32, 64, 128, 256], "decoder_channels": [128, 64, 32, 16]},
        "loss_config": {
            "reconstruction_weight": 1.0,
            "loss": {
                "_target_": "custom_nets.losses.MaskAndReconstructionLoss",
                "mask_loss": {"_target_": "custom_nets.losses.DiceBCELoss"},
                "recon_weight": "@reconstruction_weight",
                "mask_channels": "@network_def#out_channels",
            },
        },
        "train_label_transforms": [
            {"_target_": "custom_nets.transforms.AppendGrayscaled", "keys": "label", "image_key": "image"}
        ],
    },
}

SSFORMER_PAPER = (
    "Wang J., Huang Q., Tang F., Meng J., Su J., Song S. Stepwise Feature Fusion: Local Guides Global. MICCAI 2022. "
    "arXiv:2203.03635"
)
SEGFORMER = (
    "Xie E., Wang W., Yu Z., Anandkumar A., Alvarez J. M., Luo P. SegFormer: Simple and Efficient Design for Semantic "
    "Segmentation with Transformers. NeurIPS 2021. arXiv:2105.15203"
)
# SSFormer trains at 352 x 352 (the reference's size; every size must be divisible by 32)
SSFORMER_TASK = replace(
    polyp2d.POLYP,
    values={**polyp2d.POLYP.values, "image_size": [352, 352]},
    image_classes=polyp2d.POLYP.image_classes.replace("default 256 x 256", "default 352 x 352"),
)

BUNDLES["ssformer"] = {
    **POLYP_COMMON,
    "task": SSFORMER_TASK,
    "size_divisor": [32, 32],
    "learning_rate": 1e-4,
    "optimizer_values": {"weight_decay": 0.01},
    "version": "0.1.0",
    "title": "SSFormer 2D: polyp (Kvasir-SEG) and skin-lesion (ISIC 2017) segmentation in RGB images",
    "summary": "SSFormer-S, a Mix Transformer (MiT-B2) encoder with the progressive locality decoder (local emphasis "
    "per stage, stepwise aggregation by concatenation), segmenting colon polyps in endoscopy frames (Kvasir-SEG) or, "
    "with one override, skin lesions in dermoscopy images (ISIC 2017).",
    "changelog": {
        "0.1.0": "first version: SSFormer-S (MiT-B2 encoder), BCE + Dice, AdamW (lr 1e-4, weight decay 0.01), 352 x 352"
    },
    "description": "SSFormer (hierarchical Mix Transformer encoder, progressive locality decoder at 1/4 resolution, "
    "logits resized to the input) on RGB images resized to image_size (352 x 352 by default, sizes divisible by 32), "
    "one sigmoid channel, BCE + Dice loss. --network_def#variant L selects SSFormer-L (MiT-B4); "
    "--network_def#pretrained_checkpoint loads a user-supplied ImageNet MiT or SSFormer checkpoint strictly. "
    "Kvasir-SEG layout by default, ISIC 2017 with --layout isic --image_size [256,192]. Inference writes one PNG mask "
    "per image at the image's original size. No pretrained weights ship.",
    "references": [SSFORMER_PAPER, SEGFORMER, KVASIR, ISIC_2017],
    "network_def": {
        "_target_": "custom_nets.nets.SSFormer",
        **RGB_TO_ONE,
        "variant": "S",
        "pretrained_checkpoint": None,
    },
    "reference_widths": {"variant": "L"},
    "loss_config": {"loss": {"_target_": "custom_nets.losses.DiceBCELoss"}},
}
