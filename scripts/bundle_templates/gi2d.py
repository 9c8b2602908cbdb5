"""Config template of the UW-Madison GI tract task: large bowel, small bowel and stomach on 16-bit MRI slices.

Built on ``seg2d``: its task hooks (``spatial_transforms``, ``random_transforms``, ``common_values``,
``evaluate_at_original_size``; bundle ``loss_config``) carry most of the task, and the configs ``seg2d`` returns are
then adjusted here. What the task needs beyond LGG:

- slices of different sizes: training pads to ``roi_size`` and crops ``roi_size`` at random; validation, evaluation
  and inference pad each slice to a multiple of the network's ``size_divisor`` (or, with ``"resize_to": [W, H]``,
  resize every slice, training included, to that size) and restore every prediction to the slice's own size
  (``Invertd``), so labels are compared and label maps written at the original size;
- the demo (and ``python -m custom_nets.convert uwmadison``) is 2.5D: each case is a slice with its neighbours at
  -2 and +2 as three channels (any dataset's channels work the same way);
- configs for the competition's own layout (``train.csv`` with run-length masks, ``train/case*/case*_day*/scans``):
  ``inference_uwmadison.json`` writes RGB mask PNGs mirroring the input tree and, with ``--write_rle True``, a
  competition-style ``submission.csv``; ``evaluate_uwmadison.json`` scores per case-day in 3D (Dice, HD95 in mm,
  competition score; :mod:`custom_nets.metrics_gi`); ``inference_volume.json`` segments NIfTI volumes with the
  neighbouring slices as channels.

Configs written per bundle: ``train.json``, ``inference.json``, ``evaluate.json``, ``inference_volume.json``,
``inference_uwmadison.json``, ``evaluate_uwmadison.json``, ``multi_gpu_train.json`` (shared with the other templates)
and ``metadata.json``.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from bundle_templates import brats3d, common, seg2d

CLASSES = ["large_bowel", "small_bowel", "stomach"]
SCIPY_VERSION = "1.17.1"  # used by MONAI's surface distances (HD95); not in the shared VERSIONS table


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


def _spatial_transforms(keys: list[str], size_divisor: int) -> list[Any]:
    """``seg2d``'s ``spatial_transforms`` hook: training resizes image and label (``resize_to``) before its random
    crops; validation, evaluation and inference pad or resize the image only."""
    return [TRAIN_SPATIAL if "label" in keys else IMAGE_SPATIAL]


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
    "demo": "'uwmadison'",
    "in_channels": ["MRI slice -2", "MRI slice 0", "MRI slice +2"],
    "out_channels": CLASSES,
    "modality": "MR",
    "output_ext": ".png",
    "output_postfix": "mask",
    "data_type": "png",
    # seg2d hooks
    "common_values": {
        "resize_to": None,
        "threshold": 0.5,
    },
    "spatial_transforms": _spatial_transforms,
    "random_transforms": _random_transforms,
    "evaluate_at_original_size": True,
    "task": "Segmentation of the large bowel, small bowel and stomach on 2D abdominal MRI slices (UW-Madison GI "
    "Tract Image Segmentation)",
    "data_source": "Any 2D dataset in the nnU-Net v2 / Decathlon layout (dataset.json), UW-Madison GI Tract Image "
    "Segmentation (Kaggle 2022; train.csv with run-length masks and 16-bit PNG slices) read in place or converted "
    "(python -m custom_nets.convert uwmadison), or the synthetic demo data (custom_nets.data.demo)",
    "image_classes": "3 channels: a 16-bit MRI slice and its neighbours at -2 and +2, scaled together from their "
    "[0th, 99.8th] percentile range to [0, 1] (a dataset's channel_names otherwise)",
    "label_classes": "large_bowel 1, small_bowel 2, stomach 3 (where organs overlap, the later one), one sigmoid "
    "channel each (a dataset's labels otherwise)",
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
    return _insert_after(config, "threshold", {"size_divisor": bundle["size_divisor"][0], **extra})


def _with_network(config: dict, bundle: dict) -> dict:
    """UNet 3+'s ``cgm`` (classification-guided module) as a top-level value, shared by network and loss."""
    network_def = config["network_def"]
    if "cgm" not in network_def:
        return config
    config = _insert_after(config, "task", {"cgm": network_def["cgm"]})
    config["network_def"]["cgm"] = "@cgm"
    return config


def _postprocessing(preprocessing: str, label_map: bool) -> list[dict]:
    """Final output of the deep supervision stack, sigmoid, back to the slice's size, ``@threshold``; with
    ``label_map`` the task's label map (what ``inference.json`` writes)."""
    steps = [
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
    ]
    if label_map:
        return steps + [{**common.LABEL_MAP, "threshold": "@threshold"}]
    return steps + [{"_target_": "AsDiscreted", "keys": "pred", "threshold": "@threshold"}]


# the competition layout (train.csv + train/case*/case*_day*/scans): 2.5D neighbours as today's demo and converter
UW_OFFSETS = [-2, 0, 2]
UW_DEMO_DIR = "$os.path.join(@bundle_root, 'demo_data', 'uwmadison_layout')"


def train_config(task: dict, bundle: dict) -> dict:
    config = seg2d.train_config(task, bundle)
    config = _with_divisor(config, bundle)
    config = _insert_after(config, "batch_size", {"roi_size": common.planned_patch(bundle["roi_size"])})
    config.update({"epochs": 30, "cache_rate": 0.0})
    config = _with_network(config, bundle)
    validate = config["validate"]
    preprocessing = seg2d._load_image_transforms(task, ["image", "label"], bundle["size_divisor"][0], ["image"])
    validate["preprocessing"] = {"_target_": "Compose", "transforms": preprocessing}
    validate["dataloader"]["batch_size"] = 1  # slices keep their own sizes
    validate["postprocessing"] = {"_target_": "Compose",
                                  "transforms": _postprocessing("@validate#preprocessing", label_map=False)}
    return config


def inference_config(task: dict, bundle: dict) -> dict:
    """Any dataset's slices (or a plain folder of PNGs) to label maps of the same size and stem."""
    config = _with_network(_with_divisor(seg2d.inference_config(task, bundle), bundle), bundle)
    *_, saver, monai_label = config["postprocessing"]["transforms"]
    config["postprocessing"]["transforms"] = _postprocessing("@preprocessing", label_map=True) + [saver, monai_label]
    return config


def inference_uwmadison_config(task: dict, bundle: dict) -> dict:
    """A UW-Madison folder of slice PNGs to RGB mask PNGs (same size, same stem + ``_mask``, mirroring the input
    tree) and optionally a competition ``submission.csv``."""
    config = _with_divisor(seg2d.inference_config(task, bundle), bundle, offsets=UW_OFFSETS, write_rle=False)
    config = _with_network(config, bundle)
    config["demo_dir"] = UW_DEMO_DIR
    config["datalist"] = ("$custom_nets.data.uwmadison_bundle.slice_datalist(@dataset_dir, demo_dir=@demo_dir, "
                          "offsets=@offsets)")
    data_root = "$custom_nets.data.uwmadison_bundle.slice_root(@dataset_dir, demo_dir=@demo_dir, generate=False)"
    config = _insert_after(config, "datalist", {"data_root": data_root})
    config["preprocessing"]["transforms"].insert(
        2, {"_target_": "custom_nets.transforms.CentreSliceSourced", "keys": "image", "source_key": "center_image"})
    # mirror the input tree in output_dir (slice file names repeat across case-days); RGB masks, 0/255
    saver = {
        "_target_": "SaveImaged",
        "keys": "pred",
        "output_dir": "@output_dir",
        "output_postfix": task["output_postfix"],
        "output_ext": ".png",
        "output_dtype": "$numpy.uint8",
        "scale": 255,
        "writer": "PILWriter",
        "data_root_dir": "@data_root",
        "separate_folder": False,
        "resample": False,
        "print_log": False,
    }
    config["postprocessing"]["transforms"] = _postprocessing("@preprocessing", label_map=False) + [saver]
    config["handlers"].append(
        {
            "_target_": "custom_nets.handlers_gi.RLESubmissionWriter",
            "output_dir": "@output_dir",
            "class_names": "$[str(n) for n in @task.label_names]",
            "filename": "submission.csv",
            "enabled": "@write_rle",
        }
    )
    return config


def inference_volume_config(task: dict, bundle: dict) -> dict:
    """NIfTI volumes segmented slice by slice (with the neighbouring slices as channels) into label maps with the
    input's geometry."""
    config = seg2d.inference_volume_config(task, bundle)
    config = _with_divisor(config, bundle, offsets=UW_OFFSETS, slice_thickness=3.0)
    config = _with_network(config, bundle)
    config["demo_dir"] = UW_DEMO_DIR
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
    for step in config["postprocessing"]["transforms"]:
        if step.get("_target_") == common.LABEL_MAP["_target_"]:
            step["threshold"] = "@threshold"
    return config


def evaluate_uwmadison_config(task: dict, bundle: dict) -> dict:
    """On the competition layout: per case-day (3D) Dice, HD95, normalised Hausdorff distance and competition score,
    and their means."""
    config = seg2d.evaluate_config(task, bundle)
    split = {"role": "all", "val_fraction": 0.2, "seed": 0, "num_folds": None, "fold": 0}
    config = _with_divisor(config, bundle, offsets=UW_OFFSETS, slice_thickness=3.0, **split)
    config = _with_network(config, bundle)
    config["demo_dir"] = UW_DEMO_DIR
    del config["data"]
    config["task"] = seg2d.trained_task(task)
    config["datalist"] = ("$custom_nets.convert.uwmadison.uwmadison_datalist(@dataset_dir, demo_dir=@demo_dir, "
                          "role=@role, offsets=@offsets, val_fraction=@val_fraction, seed=@seed, "
                          "num_folds=@num_folds, fold=@fold)")
    config["preprocessing"]["transforms"].insert(
        2, {"_target_": "custom_nets.transforms.CentreSliceSourced", "keys": "image", "source_key": "center_image"})
    # the layout's masks are 3 binary channels already (run-length decoded), not a label map
    config["preprocessing"]["transforms"] = [
        t for t in config["preprocessing"]["transforms"] if t != seg2d.LABEL_TO_REGIONS]
    for step in config["preprocessing"]["transforms"]:  # ...so only the image is checked against the task
        if isinstance(step, dict) and step.get("_target_") == "custom_nets.transforms.TaskInputd":
            step["keys"] = "image"
    config["postprocessing"]["transforms"] = _postprocessing("@preprocessing", label_map=False)
    config["handlers"][2] = {
        "_target_": "custom_nets.handlers_gi.CaseDayMetricsWriter",
        "output_dir": "@output_dir",
        "class_names": "$[str(n) for n in @task.label_names]",
        "slice_thickness": "@slice_thickness",
    }
    return config


def evaluate_config(task: dict, bundle: dict) -> dict:
    """Any labelled dataset: per-label Dice, IoU, precision and recall per group, at each slice's own size."""
    config = _with_network(_with_divisor(seg2d.evaluate_config(task, bundle), bundle), bundle)
    config["postprocessing"]["transforms"] = _postprocessing("@preprocessing", label_map=False)
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
        "inference_uwmadison.json": inference_uwmadison_config(task, bundle),
        "evaluate_uwmadison.json": evaluate_uwmadison_config(task, bundle),
        "multi_gpu_train.json": brats3d.multi_gpu_train_config(),
    }
