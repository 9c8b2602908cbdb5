"""Config template of the 3D BraTS task (4 MR modalities in, TC/WT/ET sigmoid regions out).

Every 3D BraTS bundle (arunet3d, linknet3d, pspnet3d) is generated from this one template by
``scripts/build_bundle_configs.py``, so their pipelines cannot drift apart; each generated bundle folder is still
complete on its own. Edit this file, not the generated JSON, and run ``python scripts/build_bundle_configs.py``.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

from bundle_templates import common

MODALITIES = ("FLAIR", "T1", "T1ce", "T2")
# file-name suffixes of each input channel: BraTS 2018-2021 names first, then BraTS 2023 names
CHANNEL_SUFFIXES = (("flair", "t2f"), ("t1", "t1n"), ("t1ce", "t1c"), ("t2", "t2w"))

IMPORTS = common.IMPORTS

COMMON: dict[str, Any] = common.run_values(IMPORTS)

DEMO = "brats"
# the task of the bundle's default data (BraTS, BraTS 2023 numbering), for the metadata; a trained model's own task is
# read from models/task.json
LABEL_VALUES = {"1": "necrotic / non-enhancing tumour core", "2": "peritumoral oedema", "3": "enhancing tumour"}
# inference and evaluation: the trained model's task (training: the dataset's, common.TRAIN_TASK)
TRAINED_TASK = f"$custom_nets.data.trained_task(@ckpt_dir, '{DEMO}')"
DATA = (f"$custom_nets.data.open_dataset(@dataset_dir, demo='{DEMO}', demo_dir=@demo_dir, spatial_dims=3, "
        "model_dir=@ckpt_dir)")


def _load_transforms(keys: list[str]) -> list[Any]:
    """Reading and orienting: a case's channel files become one image in RAS orientation at the task's spacing; the
    label map becomes one target channel per label or region of the task."""
    transforms: list[Any] = [
        {"_target_": "LoadImaged", "keys": keys, "image_only": True},
        {"_target_": "EnsureChannelFirstd", "keys": keys},
        {"_target_": "custom_nets.transforms.TaskInputd", "keys": keys, "task": "@task"},
        {"_target_": "EnsureTyped", "keys": keys},
    ]
    if "label" in keys:
        transforms.append({"_target_": "custom_nets.transforms.LabelToRegionsd", "keys": "label",
                           "regions": "$@task.region_values"})
    transforms += [
        {"_target_": "Orientationd", "keys": keys, "axcodes": "RAS", "labels": None},
        {"_target_": "custom_nets.transforms.TaskSpacingd", "keys": keys, "pixdim": common.PIXDIM,
         "mode": ["bilinear", "nearest"][: len(keys)]},
        common.NORMALIZATION,
    ]
    return transforms


#: the inference sliding window of the 3D bundles (issue #18; each lever measured in docs/performance.md): the box
#: around the nonzero (head) voxels only, windows of INFERENCE_ROI (fewer windows and less overlap overhead than the
#: 64^3 training patches; the networks are fully convolutional, except that PSPNet's pyramid pooling averages over
#: the whole window, so PSPNet keeps its training ROI), overlap INFERENCE_OVERLAP, gaussian blending
INFERENCE_ROI = [96, 96, 96]
INFERENCE_OVERLAP = 0.25
WINDOW_SIZE_DEPENDENT = ("PSPNet",)


def inference_roi(network_def: dict, roi_size: list[int]) -> list[int]:
    """The inference window of a network: :data:`INFERENCE_ROI`, or the training ROI for window-size-dependent ones."""
    name = str(network_def.get("_target_", "")).rsplit(".", 1)[-1]
    return list(roi_size) if name in WINDOW_SIZE_DEPENDENT else list(INFERENCE_ROI)


def _sliding_window(overlap: float, foreground: bool = False) -> dict:
    """MONAI's sliding window at the training ROI (validation), or with ``foreground`` the inference window: the
    foreground box only (``custom_nets.inferers.ForegroundSlidingWindowInferer``) at ``@inference_roi_size``."""
    if not foreground:
        return {
            "_target_": "SlidingWindowInferer",
            "roi_size": "@roi_size",
            "sw_batch_size": "@sw_batch_size",
            "overlap": overlap,
            "mode": "gaussian",
        }
    return {
        "_target_": "custom_nets.inferers.ForegroundSlidingWindowInferer",
        "roi_size": "@inference_roi_size",
        "sw_batch_size": "@sw_batch_size",
        "overlap": overlap,
        "mode": "gaussian",
        "margin": 8,
    }


# the training augmentation (common.augmentation): brains allow small rotations only; a head is roughly symmetric, and
# the BraTS volumes are mirrored along every axis (nnU-Net's default); MR, so a bias field too
AUGMENTATION = common.Augmentation(rotate_degrees=15.0, flip_axes=(0, 1, 2), bias_field=True)
# foreground oversampling: this fraction of the training patches is centred on a label voxel, the rest anywhere in the
# volume (RandCropByPosNegLabeld pos/neg; nnU-Net forces a third of its patches onto the foreground)
FOREGROUND_CROP_FRACTION = 0.67


def train_config(network_def: dict, roi_size: list[int], learning_rate: float, batch_size: int,
                 size_divisor: list[int]) -> dict:
    """``configs/train.json``: training with validation every ``val_interval`` epochs, best and last checkpoints."""
    keys = ["image", "label"]
    patches = [
        {"_target_": "SpatialPadd", "keys": keys, "spatial_size": "@roi_size"},
        {
            "_target_": "RandCropByPosNegLabeld",
            "keys": keys,
            "label_key": "label",
            "spatial_size": "@roi_size",
            "pos": "@foreground_crop_fraction",
            "neg": "$1.0 - @foreground_crop_fraction",
            "num_samples": "@num_samples",
        },
    ]
    return {
        **deepcopy(COMMON),
        "epochs": 100,
        "val_interval": 5,
        "learning_rate": learning_rate,
        "batch_size": common.planned_batch(batch_size, 3),
        "num_samples": 2,
        "foreground_crop_fraction": FOREGROUND_CROP_FRACTION,
        "roi_size": common.planned_patch(roi_size, size_divisor),
        "sw_batch_size": 2,
        "num_workers": 2,
        "cache_rate": 1.0,
        **common.SPLIT_VALUES,
        "resume": True,
        "data": DATA,
        "task": common.TRAIN_TASK,
        **common.TRAIN_PLAN,
        **common.DATALISTS,
        **common.network(network_def, task=True),
        "loss": {
            "_target_": "custom_nets.losses.StackedDeepSupervisionLoss",
            "loss": {"_target_": "DiceFocalLoss", "sigmoid": True, "batch": True, "smooth_nr": 1e-5, "smooth_dr": 1e-5},
        },
        "optimizer": common.optimizer(),
        "lr_scheduler": common.lr_scheduler(),
        "train": common.train_section(_load_transforms(keys), patches, common.augmentation(3, keys, AUGMENTATION)),
        "validate": common.validate_section(
            _sliding_window(overlap=0.25),
            common.sigmoid_postprocessing(invert=False),
            handlers=[
                {
                    "_target_": "TensorBoardImageHandler",
                    "log_dir": "@log_dir",
                    "batch_transform": "$from_engine(['image', 'label'])",
                    "output_transform": "$from_engine(['pred'])",
                    "max_channels": 3,
                    "frame_dim": -1,
                    "interval": 1,
                    "epoch_level": True,
                },
            ],
            additional_metrics="$custom_nets.bundle.channel_metrics(@task.label_names, 'val')",
        ),
        "initialize": common.train_initialize(),
        "run": ["$@train#trainer.run()"],
        "training": common.TRAINING,
    }


def _inference_body(network_def: dict, roi_size: list[int], keys: list[str], invert: bool) -> dict:
    """Values, network, data, task and pipeline of inference (``keys`` image: unlabelled images) and evaluation (image
    and label)."""
    if "label" in keys:  # a labelled dataset, checked against the model's task
        data = {"data": DATA, "task": f"$custom_nets.data.check_task({TRAINED_TASK[1:]}, @data)",
                **common.TRAINED_PLAN, "datalist": "$@data.training"}
    else:
        data = {"task": TRAINED_TASK, **common.TRAINED_PLAN,
                "datalist": f"$custom_nets.data.inference_datalist(@dataset_dir, @task, '{DEMO}', @demo_dir, "
                            "isolate=True)"}
    return {
        **deepcopy(COMMON),
        "output_dir": "$os.path.join(@bundle_root, 'eval')",
        "roi_size": roi_size,
        "inference_roi_size": inference_roi(network_def, roi_size),
        "sw_batch_size": 1,
        "num_workers": 2,
        **common.network(network_def, task=True, inference=True),
        **data,
        "preprocessing": {"_target_": "Compose", "transforms": _load_transforms(keys)},
        "dataset": common.isolated_dataset(),
        "dataloader": common.dataloader("@dataset", 1, shuffle=False),
        "isolated_loader": common.ISOLATED_LOADER,
        "inferer": _sliding_window(overlap=INFERENCE_OVERLAP, foreground=True),
        "postprocessing": {"_target_": "Compose",
                           "transforms": common.sigmoid_postprocessing(invert=invert, label_map="label" not in keys)},
    }


def inference_config(network_def: dict, roi_size: list[int]) -> dict:
    """``configs/inference.json``: every case of ``dataset_dir`` to one BraTS label map in ``output_dir``."""
    config = {
        **_inference_body(network_def, roi_size, ["image"], invert=True),
        "handlers": [common.checkpoint_loader(), {"_target_": "custom_nets.handlers.CaseProgressLogger"}],
        "evaluator": common.isolated_evaluator(),
        "initialize": common.quiet_init(),
        "run": ["$@evaluator.run()"],
    }
    config["postprocessing"]["transforms"] += [
        {
            "_target_": "SaveImaged",
            "keys": "pred",
            "output_dir": "@output_dir",
            "output_postfix": "seg",
            "output_dtype": "$torch.uint8",
            "output_name_formatter": "$custom_nets.data.naming.case_output_name",
            "separate_folder": False,
            "resample": False,
            # MONAI's NibabelWriter fails on sagittal grids with resample=False (custom_nets/writers.py says why)
            "writer": "custom_nets.writers.GridNibabelWriter",
            "print_log": False,
        },
    ]
    return config


def evaluate_config(network_def: dict, roi_size: list[int]) -> dict:
    """``configs/evaluate.json``: per-case, per-region Dice and HD95 of the trained model on ``dataset_dir``."""
    return {
        **_inference_body(network_def, roi_size, ["image", "label"], invert=False),
        "metrics": {
            "mean_dice": {
                "_target_": "MeanDice",
                "include_background": True,
                "output_transform": "$from_engine(['pred', 'label'])",
            },
            "dice": {
                "_target_": "MeanDice",
                "include_background": True,
                "reduction": "none",
                "output_transform": "$from_engine(['pred', 'label'])",
            },
            "hd95": {  # MONAI's HausdorffDistance handler with the metric in mm (the predictions' affines)
                "_target_": "IgniteMetricHandler",
                "metric_fn": {
                    "_target_": "custom_nets.metrics.PhysicalHausdorffDistance",
                    "include_background": True,
                    "percentile": 95,
                    "reduction": "none",
                },
                "output_transform": "$from_engine(['pred', 'label'])",
                "save_details": True,
            },
        },
        "handlers": [
            common.checkpoint_loader(),
            {"_target_": "custom_nets.handlers.CaseProgressLogger"},
            {
                "_target_": "custom_nets.handlers.RegionMetricsWriter",
                "output_dir": "@output_dir",
                "metric_names": ["dice", "hd95"],
                "region_names": "$[custom_nets.bundle.label_slug(n) for n in @task.label_names]",
            },
            common.postprocessing_chooser(),
        ],
        "evaluator": common.isolated_evaluator({"mean_dice": "@metrics#mean_dice"},
                                               {"dice": "@metrics#dice", "hd95": "@metrics#hd95"}),
        "initialize": common.quiet_init(),
        "run": ["$@evaluator.run()"],
    }


def metadata(bundle: dict, versions: dict[str, str]) -> dict:
    """``configs/metadata.json`` following the MONAI bundle specification, from a bundle's registry entry."""
    input_shape = [f"{d}*n" for d in bundle["size_divisor"]] if bundle.get("size_divisor") else ["*", "*", "*"]
    # tensorboard and itk are used but not needed to run the bundle
    packages = {"custom-nets": versions["custom_nets"], "nibabel": versions["nibabel"],
                "pytorch-ignite": versions["ignite"], "tensorboard": versions["tensorboard"]}
    return common.metadata(
        bundle, versions, packages,
        task="Brain tumour sub-region segmentation (TC, WT, ET) from multi-parametric MRI (BraTS)",
        data_source="Any dataset in the nnU-Net v2 / Decathlon layout (dataset.json), BraTS 2020/2021/2023 "
        "(https://www.synapse.org/brats) read in place or converted (python -m custom_nets.convert brats), or the "
        "synthetic demo data (custom_nets.data.demo)",
        data_type="nibabel",
        image_classes="4 channels: FLAIR, T1, T1ce, T2 (by default; a dataset's channel_names otherwise), each "
        "normalised to zero mean and unit variance over non-zero (brain) voxels",
        label_classes="BraTS 2023 numbering: 1 necrotic/non-enhancing core, 2 oedema, 3 enhancing tumour (BraTS "
        "2021's 4 is read as 3), trained as 3 overlapping regions TC (1+3), WT (1+2+3), ET (3); a dataset's labels "
        "or regions otherwise",
        pred_classes="one sigmoid channel per region (TC, WT, ET by default); inference writes one label map per "
        "case with the dataset's label values",
        # custom_nets extensions (ignored by MONAI): how batch inference groups a case's files into the input
        # channels, what the values of the saved label map mean, and what the network's output channels are
        input_channel_suffixes={str(i): list(s) for i, s in enumerate(CHANNEL_SUFFIXES)},
        label_values=LABEL_VALUES,
        network_output_channels={"0": "tumor core (TC)", "1": "whole tumor (WT)", "2": "enhancing tumor (ET)"},
        network_data_format=common.network_data_format("MR", "magnitude", list(MODALITIES), LABEL_VALUES, 3,
                                                       input_shape, [], is_patch_data=True),
    )


def bundle_configs(bundle: dict, versions: dict[str, str]) -> dict[str, dict]:
    """All generated config files of one 3D BraTS bundle, by file name."""
    net, roi = bundle["network_def"], bundle["roi_size"]
    return {
        "metadata.json": metadata(bundle, versions),
        "train.json": train_config(net, roi, bundle["learning_rate"], bundle["batch_size"], bundle["size_divisor"]),
        "inference.json": inference_config(net, roi),
        "evaluate.json": evaluate_config(net, roi),
        "multi_gpu_train.json": common.multi_gpu_train_config(),
    }
