"""The RGB lesion task of the 2D template: colon polyps (Kvasir-SEG) and skin lesions (ISIC 2017).

A task dict for :mod:`bundle_templates.seg2d` (see ``seg2d.LGG`` for the fields). Differences from LGG:

- one config value ``layout`` (``"kvasir"`` or ``"isic"``) picks the datalist function
  (``custom_nets.data.polyp_skin.layout_datalist``) and the demo data folder (``demo_data/<layout>``);
- images vary in size, so every chain resizes to the config value ``image_size`` (rows, columns; default
  ``[256, 256]``, ``[192, 256]`` for ISIC) with the loading chain of :mod:`custom_nets.data.polyp_skin` (PILReader
  with ``reverse_indexing=False``, RGB / luminance converters, masks thresholded at 128);
- inference inverts the resize, so each mask is written at its image's original size, as PNG, with the PIL writer
  told not to swap axes either (``write_kwargs``);
- evaluation scores every image at its original size (the label is not resized; the prediction is inverted);
- augmentation without 90-degree rotations (they would turn a non-square ``image_size`` into another shape), clamped
  to [0, 1] so that a grayscale reconstruction target stays a valid BCE target;
- no ``inference_volume.json`` (RGB photographs have no volumes).
"""

from __future__ import annotations

POLYP_SKIN = "custom_nets.data.polyp_skin"

_LOAD_IMAGE = {
    "_target_": "LoadImaged",
    "keys": "image",
    "reader": "PILReader",
    "reverse_indexing": False,
    "converter": f"${POLYP_SKIN}.pil_to_rgb",
    "ensure_channel_first": True,
    "image_only": True,
}
_LOAD_LABEL = {**_LOAD_IMAGE, "keys": "label", "converter": f"${POLYP_SKIN}.pil_to_luminance"}
_SCALE_IMAGE = {
    "_target_": "ScaleIntensityRanged",
    "keys": "image",
    "a_min": 0,
    "a_max": 255,
    "b_min": 0.0,
    "b_max": 1.0,
    "clip": True,
}
_BINARISE_LABEL = {"_target_": "AsDiscreted", "keys": "label", "threshold": 128}
_RESIZE_IMAGE = {
    "_target_": "Resized",
    "keys": "image",
    "spatial_size": "@image_size",
    "mode": "bilinear",
    "anti_aliasing": True,
}
_RESIZE_LABEL = {"_target_": "Resized", "keys": "label", "spatial_size": "@image_size", "mode": "nearest-exact"}


def _chain(keys: list[str], resize_label: bool) -> list[dict]:
    with_label = "label" in keys
    transforms = [dict(_LOAD_IMAGE)]
    if with_label:
        transforms.append(dict(_LOAD_LABEL))
    transforms.append(dict(_SCALE_IMAGE))
    if with_label:
        transforms.append(dict(_BINARISE_LABEL))
    transforms.append(dict(_RESIZE_IMAGE))
    if with_label and resize_label:
        transforms.append(dict(_RESIZE_LABEL))
    transforms.append({"_target_": "EnsureTyped", "keys": list(keys), "dtype": "$torch.float32"})
    return transforms


def load_transforms(keys: list[str], size_divisor: int) -> list[dict]:
    """Image (and mask) read in numpy order, scaled / binarised, resized to ``@image_size``.

    ``size_divisor`` is not used: ``image_size`` must itself be divisible by it (16; the networks say so otherwise).
    """
    return _chain(keys, resize_label=True)


def evaluate_transforms(size_divisor: int) -> list[dict]:
    """The chain for scoring at the original size: only the image is resized, the mask keeps its size."""
    return _chain(["image", "label"], resize_label=False)


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
    "datalist": f"{POLYP_SKIN}.layout_datalist(@layout)",
    "infer_datalist": f"${POLYP_SKIN}.inference_datalist(@dataset_dir, demo_dir=@demo_dir, layout=@layout)",
    "group_key": "case",
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
    "load_transforms": load_transforms,
    "evaluate_transforms": evaluate_transforms,
    "random_transforms": random_transforms,
    "write_kwargs": {"reverse_indexing": False},
    "monai_label_output": {"reverse_indexing": False},
    "volume_inference": False,
    "task": "Polyp segmentation in colonoscopy frames (Kvasir-SEG); skin-lesion segmentation in dermoscopy images "
    "(ISIC 2017) with --layout isic",
    "data_source": "Kvasir-SEG (Jha et al. 2020, 1,000 polyp images with masks) or ISIC 2017 Part 1 (Codella et al. "
    "2018), or the synthetic demo data generated by custom_nets.data.polyp_skin",
    "image_classes": "3 channels: R, G, B, scaled from 0-255 to 0-1 and resized to image_size (default 256 x 256; "
    "192 x 256 for ISIC)",
    "label_classes": "1 channel: polyp, or skin lesion with --layout isic (mask value > 127)",
}
