"""The RGB lesion task of the 2D template: colon polyps (Kvasir-SEG) and skin lesions (ISIC 2017).

A task dict for :mod:`bundle_templates.seg2d` (see ``seg2d.LGG`` for the fields). Differences from LGG:

- one config value ``layout`` (``"kvasir"`` or ``"isic"``) picks the demo data set (``demo_data/<layout>``);
- images vary in size, so every chain resizes to the config value ``image_size`` (MONAI's (x, y) order of PIL images:
  width, height; default ``[256, 256]``, ``[256, 192]`` for ISIC);
- inference inverts the resize, so each label map is written at its image's original size;
- evaluation scores every image at its original size (the label is not resized; the prediction is inverted);
- augmentation without 90-degree rotations (they would turn a non-square ``image_size`` into another shape), clamped
  to [0, 1] so that a grayscale reconstruction target stays a valid BCE target;
- no ``inference_volume.json`` (RGB photographs have no volumes).
"""

from __future__ import annotations

_SCALE_IMAGE = {
    "_target_": "ScaleIntensityRanged",
    "keys": "image",
    "a_min": 0,
    "a_max": 255,
    "b_min": 0.0,
    "b_max": 1.0,
    "clip": True,
}


def spatial_transforms(keys: list[str], size_divisor: int) -> list[dict]:
    """Resize to ``@image_size`` (bilinear with anti-aliasing for the image, nearest for the label).

    ``size_divisor`` is not used: ``image_size`` must itself be divisible by it (16; the networks say so otherwise).
    """
    transforms = [{"_target_": "Resized", "keys": "image", "spatial_size": "@image_size", "mode": "bilinear",
                   "anti_aliasing": True}]
    if "label" in keys:
        transforms.append({"_target_": "Resized", "keys": "label", "spatial_size": "@image_size",
                           "mode": "nearest-exact"})
    return transforms


def random_transforms(keys: list[str]) -> list[dict]:
    """Flips, a small rotation and zoom, colour (contrast, scale, shift) jitter; the image is clamped to [0, 1]."""
    return [
        {"_target_": "RandFlipd", "keys": keys, "prob": 0.5, "spatial_axis": 0},
        {"_target_": "RandFlipd", "keys": keys, "prob": 0.5, "spatial_axis": 1},
        {
            "_target_": "RandAffined",
            "keys": keys,
            "prob": 0.5,
            "rotate_range": 0.26,
            "scale_range": 0.1,
            "mode": ["bilinear", "nearest"],
            "padding_mode": "zeros",
        },
        {"_target_": "RandAdjustContrastd", "keys": "image", "prob": 0.3, "gamma": [0.8, 1.25]},
        {"_target_": "RandScaleIntensityd", "keys": "image", "factors": 0.1, "prob": 0.5},
        {"_target_": "RandShiftIntensityd", "keys": "image", "offsets": 0.05, "prob": 0.5},
        {**_SCALE_IMAGE, "a_max": 1},  # clamp to [0, 1]
    ]


POLYP = {
    "name": "Kvasir-SEG polyps and ISIC 2017 skin lesions",
    "demo": "@layout",
    "in_channels": ["R", "G", "B"],
    "out_channels": ["polyp"],
    "modality": "endoscopy",
    "image_format": "RGB",
    "data_type": "jpeg",
    "output_ext": ".png",
    "output_postfix": "mask",
    "common_values": {
        "layout": "kvasir",
        "image_size": [256, 256],
        "demo_dir": "$os.path.join(@bundle_root, 'demo_data', @layout)",
    },
    "spatial_transforms": spatial_transforms,
    "evaluate_at_original_size": True,
    "random_transforms": random_transforms,
    "volume_inference": False,
    "task": "Polyp segmentation in colonoscopy frames (Kvasir-SEG); skin-lesion segmentation in dermoscopy images "
    "(ISIC 2017) with --layout isic",
    "data_source": "Any 2D dataset in the nnU-Net v2 / Decathlon layout (dataset.json), Kvasir-SEG (Jha et al. "
    "2020, 1,000 polyp images with masks) or ISIC 2017 Part 1 (Codella et al. 2018) read in place or converted "
    "(python -m custom_nets.convert kvasir|isic), or the synthetic demo data (custom_nets.data.demo)",
    "image_classes": "3 channels: R, G, B, scaled from 0-255 to 0-1 and resized to image_size (default 256 x 256; "
    "256 x 192 (width x height) for ISIC)",
    "label_classes": "1 channel: polyp, or skin lesion with --layout isic (a dataset's labels otherwise)",
}
