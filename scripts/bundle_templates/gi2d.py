"""Config template of the UW-Madison GI tract task: large bowel, small bowel and stomach on 16-bit MRI slices.

Built on ``seg2d``: its task hooks (``load_transforms``, ``evaluate_transforms``, ``random_transforms``,
``common_values``, ``infer_datalist``, ``data_type``; bundle ``loss_config``) carry most of the task, and the configs
``seg2d`` returns are then adjusted here (network references, datalists with ``offsets``, validation at each slice's
own size, the GI writers and metrics). What the task needs beyond LGG:

- 16-bit PNG slices, scaled per slice from [0th, 99.8th percentile] to [0, 1] (the scanner's range varies by case and
  day), optional 2.5D input: ``"offsets": [-2, 0, 2]`` stacks each slice with its neighbours as channels
  (``in_channels`` follows; ``null``, the default, is plain 2D);
- 3 independent sigmoid channels (the organs overlap), thresholded at ``threshold``;
- slices of different sizes: training pads to ``roi_size`` and crops ``roi_size`` at random; validation, evaluation
  and inference pad each slice to a multiple of the network's ``size_divisor`` (or, with ``"resize_to": [W, H]``,
  resize every slice, training included, to that size) and restore every prediction to the slice's own size
  (``Invertd``), so labels are compared and masks written at the original size;
- evaluation per case-day in 3D (Dice, HD95 in mm, competition score; :mod:`custom_nets.metrics_gi`);
- inference writes RGB mask PNGs mirroring the input folder tree and, with ``--write_rle True``, a competition-style
  ``submission.csv``; volume inference writes a 1/2/3 label map (later classes win where organs overlap).

Configs written per bundle: ``train.json``, ``inference.json``, ``inference_volume.json``, ``evaluate.json``,
``multi_gpu_train.json`` (shared with the other templates) and ``metadata.json``.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from bundle_templates import brats3d, seg2d

CLASSES = ["large_bowel", "small_bowel", "stomach"]
SCIPY_VERSION = "1.17.1"  # used by MONAI's surface distances (HD95); not in the shared VERSIONS table


def _load_transforms(keys: list[str]) -> list[dict]:
    """Read a slice (or a 2.5D list of slices) and its mask, name it after the centre slice, scale the 16 bits."""
    return [
        {"_target_": "LoadImaged", "keys": keys, "reader": "PILReader", "image_only": True},
        {"_target_": "EnsureChannelFirstd", "keys": keys},
        {"_target_": "custom_nets.transforms.CentreSliceSourced", "keys": "image", "source_key": "center_image"},
        {
            "_target_": "ScaleIntensityRangePercentilesd",
            "keys": "image",
            "lower": 0.0,
            "upper": 99.8,
            "b_min": 0.0,
            "b_max": 1.0,
            "clip": True,
            "channel_wise": False,
        },
    ]


# Training: resize image and mask when resize_to is set (random crops of roi_size follow in random_transforms).
TRAIN_SPATIAL = (
    "$monai.transforms.Resized(keys=['image', 'label'], spatial_size=@resize_to, mode=['bilinear', 'nearest']) "
    "if @resize_to else monai.transforms.Identityd(keys=['image', 'label'])"
)
# Validation, evaluation, inference: the image only (labels stay at their size; predictions are inverted to it).
IMAGE_SPATIAL = (
    "$monai.transforms.Resized(keys='image', spatial_size=@resize_to, mode='bilinear') "
    "if @resize_to else monai.transforms.DivisiblePadd(keys='image', k=@size_divisor)"
)
VOLUME_SPATIAL = (
    "$monai.transforms.Resized(keys='image', spatial_size=list(@resize_to)[:@slice_axis] + [-1] + "
    "list(@resize_to)[@slice_axis:], mode='bilinear') if @resize_to else monai.transforms.DivisiblePadd(keys='image', "
    "k=[1 if axis == @slice_axis else @size_divisor for axis in range(3)])"
)


def _seg2d_load_hook(keys: list[str], size_divisor: int) -> list[Any]:
    """``seg2d``'s ``load_transforms`` hook: the training chain for image + label, the inference chain for images."""
    return _load_transforms(keys) + [TRAIN_SPATIAL if "label" in keys else IMAGE_SPATIAL]


def _evaluate_transforms(size_divisor: int) -> list[Any]:
    """``seg2d``'s ``evaluate_transforms`` hook: the label stays at the slice's size, the image is padded/resized."""
    return _load_transforms(["image", "label"]) + [IMAGE_SPATIAL]


def _random_transforms(keys: list[str]) -> list[dict]:
    """Training crops and augmentation: no flips or 90-degree rotations (organ positions are a cue)."""
    return [
        {"_target_": "SpatialPadd", "keys": keys, "spatial_size": "@roi_size"},
        {"_target_": "RandSpatialCropd", "keys": keys, "roi_size": "@roi_size", "random_size": False},
        {
            "_target_": "RandAffined",
            "keys": keys,
            "prob": 0.5,
            "rotate_range": 0.26,
            "scale_range": 0.1,
            "mode": ["bilinear", "nearest"],
            "padding_mode": "zeros",
        },
        {"_target_": "RandScaleIntensityd", "keys": "image", "factors": 0.1, "prob": 0.5},
        {"_target_": "RandShiftIntensityd", "keys": "image", "offsets": 0.05, "prob": 0.5},
    ]


GI = {
    "name": "UW-Madison GI tract MRI slices",
    "datalist": "custom_nets.data.uwmadison.uwmadison_datalist",
    "group_key": "case",
    "in_channels": ["MRI slice"],
    "out_channels": CLASSES,
    "modality": "MR",
    "image_reader": "PILReader",
    "output_ext": ".png",
    "monai_label_output": {"multi_label": True},
    "output_postfix": "mask",
    "data_type": "png",
    # seg2d hooks
    "common_values": {
        "offsets": None,
        "in_channels": "$1 if @offsets is None else len(@offsets)",
        "resize_to": None,
        "threshold": 0.5,
        "class_names": list(CLASSES),
    },
    "load_transforms": _seg2d_load_hook,
    "random_transforms": _random_transforms,
    "evaluate_transforms": _evaluate_transforms,
    "infer_datalist": "$custom_nets.data.uwmadison_bundle.slice_datalist(@dataset_dir, demo_dir=@demo_dir, "
    "offsets=@offsets)",
    "task": "Segmentation of the large bowel, small bowel and stomach on 2D abdominal MRI slices (UW-Madison GI "
    "Tract Image Segmentation)",
    "data_source": "UW-Madison GI Tract Image Segmentation (Kaggle 2022; train.csv with run-length masks and 16-bit "
    "PNG slices), or the synthetic demo data generated by custom_nets.data.uwmadison.generate_uwmadison_demo",
    "image_classes": "1 channel: a 16-bit MRI slice scaled per slice from its [0th, 99.8th] percentile range to [0, 1] "
    "(2.5D with offsets: one channel per neighbouring slice)",
    "label_classes": "3 channels, multi-label (organs may overlap): large_bowel, small_bowel, stomach, decoded from "
    "the run-length strings of train.csv",
}


def _insert_after(config: dict, anchor: str, values: dict) -> dict:
    """``config`` with ``values`` inserted after key ``anchor`` (replacing keys of the same name)."""
    out: dict = {}
    for key, value in config.items():
        if key in values:
            continue
        out[key] = value
        if key == anchor:
            out.update(values)
    return out


def _with_divisor(config: dict, bundle: dict, **extra: Any) -> dict:
    """Add the network's ``size_divisor`` (and ``extra`` values) after the task's common values."""
    return _insert_after(config, "class_names", {"size_divisor": bundle["size_divisor"][0], **extra})


def _network(bundle: dict) -> dict:
    network_def = deepcopy(bundle["network_def"])
    network_def["in_channels"] = "@in_channels"
    values: dict = {}
    if "cgm" in network_def:
        values["cgm"] = network_def["cgm"]
        network_def["cgm"] = "@cgm"
    return {**values, "network_def": network_def, "network": "$@network_def.to(@device)"}


def _with_network(config: dict, bundle: dict) -> dict:
    """Replace seg2d's network entries by the GI ones (``in_channels`` from ``offsets``, ``cgm`` a top-level value)."""
    out: dict = {}
    for key, value in config.items():
        if key == "network_def":
            out.update(_network(bundle))
        elif key != "network":
            out[key] = value
    return out


def _postprocessing(preprocessing: str) -> list[dict]:
    return [
        {"_target_": "custom_nets.transforms.SelectFinalOutputd", "keys": "pred", "reference_ndim": 3},
        {"_target_": "Activationsd", "keys": "pred", "sigmoid": True},
        {
            "_target_": "Invertd",
            "keys": "pred",
            "transform": preprocessing,
            "orig_keys": "image",
            "nearest_interp": False,
            "to_tensor": True,
        },
        {"_target_": "AsDiscreted", "keys": "pred", "threshold": "@threshold"},
    ]


def _datalist(role: str) -> str:
    split = "val_fraction=@val_fraction, seed=@seed, num_folds=@num_folds, fold=@fold"
    return f"${GI['datalist']}(@dataset_dir, demo_dir=@demo_dir, role={role}, offsets=@offsets, {split})"


def train_config(task: dict, bundle: dict) -> dict:
    config = seg2d.train_config(task, bundle)
    config = _with_divisor(config, bundle)
    config = _insert_after(config, "batch_size", {"roi_size": list(bundle["roi_size"])})
    config.update({"epochs": 30, "cache_rate": 0.0})
    config["datalist"] = f"${GI['datalist']}(@dataset_dir, demo_dir=@demo_dir, role='all', offsets=@offsets)"
    config["train_datalist"] = _datalist("'train'")
    config["val_datalist"] = _datalist("'val'")
    config = _with_network(config, bundle)
    validate = config["validate"]
    validate["preprocessing"] = {"_target_": "Compose", "transforms": _evaluate_transforms(bundle["size_divisor"][0])}
    validate["dataloader"]["batch_size"] = 1  # slices keep their own sizes
    validate["postprocessing"] = {"_target_": "Compose", "transforms": _postprocessing("@validate#preprocessing")}
    return config


def inference_config(task: dict, bundle: dict) -> dict:
    """A folder of slice PNGs to RGB mask PNGs (same size, same stem + ``_mask``), optionally ``submission.csv``."""
    config = seg2d.inference_config(task, bundle)
    config = _with_divisor(config, bundle, write_rle=False)
    config = _with_network(config, bundle)
    data_root = "$custom_nets.data.uwmadison_bundle.slice_root(@dataset_dir, demo_dir=@demo_dir, generate=False)"
    config = _insert_after(config, "datalist", {"data_root": data_root})
    # mirror the input tree in output_dir: slice file names repeat across case-days
    *_, saver, monai_label = config["postprocessing"]["transforms"]
    saver = _insert_after(saver, "writer", {"data_root_dir": "@data_root"})
    config["postprocessing"]["transforms"] = _postprocessing("@preprocessing") + [saver, monai_label]
    config["handlers"].append(
        {
            "_target_": "custom_nets.handlers_gi.RLESubmissionWriter",
            "output_dir": "@output_dir",
            "class_names": "@class_names",
            "filename": "submission.csv",
            "enabled": "@write_rle",
        }
    )
    return config


def inference_volume_config(task: dict, bundle: dict) -> dict:
    """NIfTI volumes segmented slice by slice (2D or 2.5D) into 1/2/3 label maps with the input's geometry."""
    config = seg2d.inference_volume_config(task, bundle)
    config = _with_divisor(config, bundle, slice_thickness=3.0)
    config = _with_network(config, bundle)
    config["datalist"] = (
        "$custom_nets.data.uwmadison_bundle.volume_datalist(@dataset_dir, demo_dir=@demo_dir, "
        "slice_thickness=@slice_thickness)"
    )
    config["preprocessing"]["transforms"] = [
        {"_target_": "LoadImaged", "keys": "image", "reader": "NibabelReader", "image_only": True},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {
            "_target_": "ScaleIntensityRangePercentilesd",
            "keys": "image",
            "lower": 0.0,
            "upper": 99.8,
            "b_min": 0.0,
            "b_max": 1.0,
            "clip": True,
            "channel_wise": False,
        },
        VOLUME_SPATIAL,
    ]
    config["inferer"] = {
        "_target_": "custom_nets.inferers.NeighbourSliceInferer",
        "offsets": "@offsets",
        "spatial_dim": "@slice_axis",
        "sw_batch_size": 16,
    }
    steps = config["postprocessing"]["transforms"]
    steps[2]["threshold"] = "@threshold"
    steps.insert(3, {"_target_": "custom_nets.transforms.MultiLabelToLabelMapd", "keys": "pred"})
    return config


def evaluate_config(task: dict, bundle: dict) -> dict:
    """Per case-day (3D) Dice, HD95, normalised Hausdorff distance and competition score, and their means."""
    config = seg2d.evaluate_config(task, bundle)
    split = {"role": "all", "val_fraction": 0.2, "seed": 0, "num_folds": None, "fold": 0}
    config = _with_divisor(config, bundle, slice_thickness=3.0, **split)
    config = _with_network(config, bundle)
    config["datalist"] = _datalist("@role")
    config["postprocessing"]["transforms"] = _postprocessing("@preprocessing")
    config["handlers"][2] = {
        "_target_": "custom_nets.handlers_gi.CaseDayMetricsWriter",
        "output_dir": "@output_dir",
        "class_names": "@class_names",
        "slice_thickness": "@slice_thickness",
    }
    return config


def metadata(task: dict, bundle: dict, versions: dict[str, str]) -> dict:
    meta = seg2d.metadata(task, bundle, versions)
    meta["required_packages_version"].update({"nibabel": versions["nibabel"], "scipy": SCIPY_VERSION})
    meta["required_packages_version"] = dict(sorted(meta["required_packages_version"].items()))
    meta["pred_classes"] = (
        "3 sigmoid channels, multi-label (they may overlap): large_bowel, small_bowel, stomach; inference writes "
        "them as the red, green and blue channels of one mask PNG per slice, volume inference as a label map with "
        "values 1, 2, 3 (stomach over small bowel over large bowel where they overlap)"
    )
    return meta


def bundle_configs(bundle: dict, versions: dict[str, str]) -> dict[str, dict]:
    task = bundle["task"]
    return {
        "metadata.json": metadata(task, bundle, versions),
        "train.json": train_config(task, bundle),
        "inference.json": inference_config(task, bundle),
        "inference_volume.json": inference_volume_config(task, bundle),
        "evaluate.json": evaluate_config(task, bundle),
        "multi_gpu_train.json": brats3d.multi_gpu_train_config(),
    }
