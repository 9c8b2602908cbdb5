"""The RGB lesion task of the 2D template: colon polyps (Kvasir-SEG) and skin lesions (ISIC 2017).

A :class:`~bundle_templates.seg2d.Task2D` (``POLYP``). Differences from LGG:

- one config value ``layout`` (``"kvasir"`` or ``"isic"``) picks the demo data set (``demo_data/<layout>``);
- images vary in size, so every chain resizes to the config value ``image_size`` (MONAI's (x, y) order of PIL images:
  width, height; default ``[256, 256]``, ``[256, 192]`` for ISIC);
- inference inverts the resize, so each label map is written at its image's original size;
- evaluation scores every image at its original size (the label is not resized; the prediction is inverted);
- augmentation with rotations by any angle (a lesion has no preferred orientation), no bias field (photographs),
  the image clamped to [0, 1] so that a grayscale reconstruction target stays a valid BCE target;
- no ``inference_volume.json`` (RGB photographs have no volumes).
"""

from __future__ import annotations

from bundle_templates import common
from bundle_templates.seg2d import Task2D


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


POLYP = Task2D(
    name="Kvasir-SEG polyps and ISIC 2017 skin lesions",
    demo="@layout",
    in_channels=["R", "G", "B"],
    out_channels=["polyp"],
    modality="endoscopy",
    image_format="RGB",
    data_type="jpeg",
    values={
        "layout": "kvasir",
        "image_size": [256, 256],
        "demo_dir": "$os.path.join(@bundle_root, 'demo_data', @layout)",
    },
    spatial_transforms=spatial_transforms,
    patch_crop=False,  # whole images, resized to image_size
    augmentation=common.Augmentation(rotate_degrees=180.0, flip_axes=(0, 1), bias_field=False, clamp=(0.0, 1.0)),
    evaluate_at_original_size=True,
    task="Polyp segmentation in colonoscopy frames (Kvasir-SEG); skin-lesion segmentation in dermoscopy images "
    "(ISIC 2017) with --layout isic",
    data_source="Any 2D dataset in the nnU-Net v2 / Decathlon layout (dataset.json), Kvasir-SEG (Jha et al. "
    "2020, 1,000 polyp images with masks) or ISIC 2017 Part 1 (Codella et al. 2018) read in place or converted "
    "(python -m custom_nets.convert kvasir|isic), or the synthetic demo data (custom_nets.data.demo)",
    image_classes="3 channels: R, G, B, scaled from 0-255 to 0-1 and resized to image_size (default 256 x 256; "
    "256 x 192 (width x height) for ISIC)",
    label_classes="1 channel: polyp, or skin lesion with --layout isic (a dataset's labels otherwise)",
)
