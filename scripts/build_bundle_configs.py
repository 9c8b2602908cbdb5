#!/usr/bin/env python
"""Generate the config files, model card and LICENSE copy of every bundle from its task template.

Bundles that share a task (the three 3D BraTS bundles, ...) differ only in their network and a few numbers, so their
configs are generated from one template (``scripts/bundle_templates/``) and the registry below instead of being
copied by hand. The generated JSON is committed, so each bundle folder works on its own.

    python scripts/build_bundle_configs.py          # rewrite the generated files
    python scripts/build_bundle_configs.py --check  # exit 1 if any committed file differs from the template
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bundle_templates import brats3d, seg2d  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
CARD_TEMPLATES = Path(__file__).resolve().parent / "bundle_templates"
LOGGING_CONF = CARD_TEMPLATES / "logging.conf"
BRATS_3D_PAPER = (
    "Utilizing Attention, Linked Blocks, and Pyramid Pooling to Propel Brain Tumor Segmentation in 3D "
    "(the reference for the AR-UNet 3D, LinkNet 3D and PSPNet 3D architectures)."
)
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
LGG_COMMON = {
    "template": seg2d,
    "task": seg2d.LGG,
    "card_template": "lgg_card.md",
    "version": "0.1.0",
    "size_divisor": [16, 16],
    "learning_rate": 1e-3,
    "batch_size": 16,
}
BRATS_DATA = (
    "Menze B. H. et al. The Multimodal Brain Tumor Image Segmentation Benchmark (BRATS). IEEE TMI 34(10), 2015. "
    "https://doi.org/10.1109/TMI.2014.2377694"
)

BUNDLES: dict[str, dict] = {
    "arunet3d": {
        "template": brats3d,
        "card_template": "brats3d_card.md",
        "reference_widths": {"channels": [64, 128, 256, 512], "in_channels": 1, "out_channels": 4},
        "title": "AR-UNet 3D: brain tumour sub-region segmentation (BraTS)",
        "summary": "An attention residual U-Net for 3D segmentation of glioma sub-regions from multi-parametric MRI, "
        'after "Utilizing Attention, Linked Blocks, and Pyramid Pooling to Propel Brain Tumor Segmentation in 3D".',
        "version": "0.1.0",
        "changelog": {"0.1.0": "first version: 4-modality BraTS regions, gated skips concatenated with decoder features"},
        "description": "Attention residual U-Net (AR-UNet 3D): pre-activation residual blocks, stride-2 convolution "
        "downsampling, trilinear upsampling and additive attention gates on the skip connections, segmenting the "
        "tumour core, whole tumour and enhancing tumour from FLAIR, T1, T1ce and T2 MRI. No pretrained weights ship.",
        "references": [
            BRATS_3D_PAPER,
            "Oktay O. et al. Attention U-Net: Learning Where to Look for the Pancreas. MIDL 2018. arXiv:1804.03999",
            "He K. et al. Identity Mappings in Deep Residual Networks. ECCV 2016. arXiv:1603.05027",
            BRATS_DATA,
        ],
        "network_def": {
            "_target_": "custom_nets.nets.arunet.ARUNet",
            "spatial_dims": 3,
            "in_channels": 4,
            "out_channels": 3,
            "channels": [16, 32, 64, 128],
            "deep_supervision": False,
        },
        "size_divisor": [8, 8, 8],
        "roi_size": [64, 64, 64],
        "learning_rate": 1e-3,
        "batch_size": 1,
    },
    "linknet3d": {
        "template": brats3d,
        "card_template": "brats3d_card.md",
        "reference_widths": {"channels": [64, 128, 256, 512], "in_channels": 1, "out_channels": 4},
        "title": "LinkNet 3D: brain tumour sub-region segmentation (BraTS)",
        "summary": "LinkNet, a ResNet-18 encoder linked to a light decoder by additions, for 3D segmentation of glioma "
        'sub-regions from multi-parametric MRI, after "Utilizing Attention, Linked Blocks, and Pyramid Pooling to Propel '
        'Brain Tumor Segmentation in 3D".',
        "version": "0.1.0",
        "changelog": {"0.1.0": "first version: 4-modality BraTS regions, residual links restored, 3D throughout"},
        "description": "LinkNet 3D: a ResNet-18-style 3D encoder whose stage outputs are added to the matching "
        "decoder blocks (1x1 reduce, x2 transposed-convolution upsampling, 1x1 expand), segmenting the tumour core, "
        "whole tumour and enhancing tumour from FLAIR, T1, T1ce and T2 MRI. No pretrained weights ship.",
        "references": [
            BRATS_3D_PAPER,
            "Chaurasia A., Culurciello E. LinkNet: Exploiting Encoder Representations for Efficient Semantic "
            "Segmentation. VCIP 2017. arXiv:1707.03718",
            BRATS_DATA,
        ],
        "network_def": {
            "_target_": "custom_nets.nets.linknet.LinkNet",
            "spatial_dims": 3,
            "in_channels": 4,
            "out_channels": 3,
            "channels": [32, 64, 128, 256],
        },
        "size_divisor": [32, 32, 32],
        "roi_size": [64, 64, 64],
        "learning_rate": 1e-3,
        "batch_size": 1,
    },
    "pspnet3d": {
        "template": brats3d,
        "card_template": "brats3d_card.md",
        "reference_widths": {"channels": [64, 128, 256, 512], "in_channels": 1, "out_channels": 4},
        "title": "PSPNet 3D: brain tumour sub-region segmentation (BraTS)",
        "summary": "PSPNet, a dilated ResNet-50 encoder with a pyramid pooling module, for 3D segmentation of glioma "
        'sub-regions from multi-parametric MRI, after "Utilizing Attention, Linked Blocks, and Pyramid Pooling to '
        'Propel Brain Tumor Segmentation in 3D".',
        "version": "0.1.0",
        "changelog": {"0.1.0": "first version: 4-modality BraTS regions, dilated 3D ResNet-50-style encoder, pyramid pooling"},
        "description": "PSPNet 3D: a dilated ResNet-50-style 3D bottleneck encoder (output stride 8) followed by a "
        "pyramid pooling module (bins 1, 2, 3, 6), a fusion convolution and a classifier upsampled to the input size, "
        "segmenting the tumour core, whole tumour and enhancing tumour from FLAIR, T1, T1ce and T2 MRI. No "
        "pretrained weights ship.",
        "references": [
            BRATS_3D_PAPER,
            "Zhao H., Shi J., Qi X., Wang X., Jia J. Pyramid Scene Parsing Network. CVPR 2017. arXiv:1612.01105",
            BRATS_DATA,
        ],
        "network_def": {
            "_target_": "custom_nets.nets.pspnet.PSPNet",
            "spatial_dims": 3,
            "in_channels": 4,
            "out_channels": 3,
            "channels": [16, 32, 64, 128],
            "layers": [3, 4, 6, 3],
        },
        "size_divisor": [8, 8, 8],
        "roi_size": [64, 64, 64],
        "learning_rate": 1e-3,
        "batch_size": 1,
    },
    "attention_resunet2d": {
        **LGG_COMMON,
        "title": "Attention residual U-Net 2D: lower-grade glioma segmentation on MRI slices (LGG)",
        "summary": "The reference model of the LGG comparison: a 2D attention residual U-Net (residual blocks, max-pool "
        "encoder, attention gates driven by the coarser decoder level) segmenting tumour on FLAIR-based MRI slices.",
        "changelog": {"0.1.0": "first version: pre-activation residual blocks, attention-gated skips, Dice + focal loss"},
        "description": "2D attention residual U-Net on LGG brain MRI slices (pre-contrast, FLAIR, post-contrast as 3 "
        "channels), one sigmoid tumour channel, Dice + focal loss by default (loss_name: dice, focal, dicefocal or "
        "wce). Inference writes one mask per image, or one 3D label map per NIfTI volume segmented slice by slice. "
        "No pretrained weights ship.",
        "references": [LGG_DATA, ATTENTION_UNET, "He K. et al. Identity Mappings in Deep Residual Networks. ECCV 2016. arXiv:1603.05027"],
        "network_def": {
            "_target_": "custom_nets.nets.AttentionResUNet",
            "spatial_dims": 2,
            "in_channels": 3,
            "out_channels": 1,
            "channels": [16, 32, 64, 128, 256],
        },
        "reference_widths": {"channels": [64, 128, 256, 512, 1024]},
        "loss_name": "dicefocal",
    },
    "unet2d": {
        **LGG_COMMON,
        "title": "U-Net 2D baseline: lower-grade glioma segmentation on MRI slices (LGG)",
        "summary": "MONAI's U-Net as the baseline of the LGG comparison, trained with the same data, budget and "
        "pipeline as the attention residual U-Net.",
        "changelog": {"0.1.0": "first version: MONAI UNet, Dice loss"},
        "description": "MONAI UNet (residual units) on LGG brain MRI slices, one sigmoid tumour channel, Dice loss by "
        "default (loss_name: dice, focal, dicefocal or wce). No pretrained weights ship.",
        "references": [LGG_DATA, UNET],
        "network_def": {
            "_target_": "monai.networks.nets.UNet",
            "spatial_dims": 2,
            "in_channels": 3,
            "out_channels": 1,
            "channels": [16, 32, 64, 128, 256],
            "strides": [2, 2, 2, 2],
            "num_res_units": 2,
            "norm": "batch",
        },
        "reference_widths": {"channels": [64, 128, 256, 512, 1024]},
        "loss_name": "dice",
    },
    "attention_unet2d": {
        **LGG_COMMON,
        "title": "Attention U-Net 2D baseline: lower-grade glioma segmentation on MRI slices (LGG)",
        "summary": "MONAI's Attention U-Net as the second baseline of the LGG comparison, trained with the same data, "
        "budget and pipeline as the attention residual U-Net.",
        "changelog": {"0.1.0": "first version: MONAI AttentionUnet, Dice loss"},
        "description": "MONAI AttentionUnet on LGG brain MRI slices, one sigmoid tumour channel, Dice loss by default "
        "(loss_name: dice, focal, dicefocal or wce). No pretrained weights ship.",
        "references": [LGG_DATA, ATTENTION_UNET],
        "network_def": {
            "_target_": "monai.networks.nets.AttentionUnet",
            "spatial_dims": 2,
            "in_channels": 3,
            "out_channels": 1,
            "channels": [16, 32, 64, 128, 256],
            "strides": [2, 2, 2, 2],
        },
        "reference_widths": {"channels": [64, 128, 256, 512, 1024]},
        "loss_name": "dice",
    },
}


# The versions the bundles were generated and tested with (metadata's *_version fields). Fixed here rather than read
# from the environment so that the generated files do not depend on the machine that regenerates them.
VERSIONS = {
    "monai": "1.6.1",
    "torch": "2.13.0",
    "numpy": "2.4.6",
    "custom_nets": "0.1.0",
    "nibabel": "5.4.2",
    "ignite": "0.5.5",
    "tensorboard": "2.21.0",
    "itk": "5.4.7",
    "pillow": "13.0.0",
}


def parameter_count(network_def: dict, **overrides) -> int:
    """Parameters of ``network_def`` with ``overrides``, built on the meta device (no memory, no forward pass)."""
    import torch
    from monai.bundle import ConfigParser

    with torch.device("meta"):
        network = ConfigParser({"net": {**network_def, **overrides}}).get_parsed_content("net")
    return sum(p.numel() for p in network.parameters())


def render_card(name: str, bundle: dict) -> str:
    """The model card: the task template with the bundle's network section and measured parameter counts."""
    card = CARD_TEMPLATES / bundle["card_template"]
    text = card.read_text().replace("@@NETWORK@@", (CARD_TEMPLATES / "cards" / f"{name}.md").read_text().strip())
    values = {
        "@@TITLE@@": bundle["title"],
        "@@SUMMARY@@": bundle["summary"],
        "@@NAME@@": name,
        "@@PARAMS_DEFAULT@@": f"{parameter_count(bundle['network_def']):,}",
        "@@PARAMS_REFERENCE@@": f"{parameter_count(bundle['network_def'], **bundle['reference_widths']):,}",
    }
    for marker, value in values.items():
        text = text.replace(marker, value)
    return text


def render(config: dict) -> str:
    return json.dumps(config, indent=4) + "\n"


def generated_files(names: list[str] | None = None) -> dict[Path, str]:
    """Every generated file's path and text."""
    files = {}
    for name, bundle in BUNDLES.items():
        if names and name not in names:
            continue
        for filename, config in bundle["template"].bundle_configs(bundle, VERSIONS).items():
            files[REPO / "bundles" / name / "configs" / filename] = render(config)
        files[REPO / "bundles" / name / "configs" / "logging.conf"] = LOGGING_CONF.read_text()
        files[REPO / "bundles" / name / "LICENSE"] = (REPO / "LICENSE").read_text()
        files[REPO / "bundles" / name / "docs" / "README.md"] = render_card(name, bundle)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundles", nargs="*", help="bundle names (default: all)")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generated_files(args.bundles).items():
        current = path.read_text() if path.exists() else ""
        if current == text:
            continue
        stale.append(path)
        if args.check:
            diff = difflib.unified_diff(current.splitlines(), text.splitlines(), str(path), "generated", lineterm="")
            print("\n".join(list(diff)[:40]))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO)}")
    if args.check and stale:
        print(f"{len(stale)} generated config file(s) out of date; run python scripts/build_bundle_configs.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
