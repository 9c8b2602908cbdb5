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

IMPORTS = [
    "$import os",
    "$import torch",
    "$import monai",
    "$import custom_nets",
    "$from monai.handlers import from_engine",
]

COMMON: dict[str, Any] = {
    "imports": IMPORTS,
    "bundle_root": "$custom_nets.bundle.bundle_root()",
    "ckpt_dir": "$os.path.join(@bundle_root, 'models')",
    "log_dir": "$os.path.join(@bundle_root, 'runs')",
    "dataset_dir": "demo",
    "demo_dir": "$os.path.join(@bundle_root, 'demo_data')",
    "device": "$custom_nets.bundle.default_device()",
    "amp": "$custom_nets.bundle.amp_enabled(@device)",
}

DEMO = "brats"
# the task of the bundle's default data (BraTS, BraTS 2023 numbering), for the metadata; a trained model's own task is
# read from models/task.json
LABEL_VALUES = {"1": "necrotic / non-enhancing tumour core", "2": "peritumoral oedema", "3": "enhancing tumour"}
# training: the task of the dataset (written to models/task.json); inference and evaluation: the trained model's
TRAIN_TASK = "$custom_nets.data.prepare_task(@data.task, @ckpt_dir, @resume)"
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


def train_config(network_def: dict, roi_size: list[int], learning_rate: float, batch_size: int) -> dict:
    """``configs/train.json``: training with validation every ``val_interval`` epochs, best and last checkpoints."""
    keys = ["image", "label"]
    return {
        **deepcopy(COMMON),
        "epochs": 100,
        "val_interval": 5,
        "learning_rate": learning_rate,
        "batch_size": common.planned_batch(batch_size, 3),
        "num_samples": 2,
        "roi_size": common.planned_patch(roi_size),
        "sw_batch_size": 2,
        "num_workers": 2,
        "cache_rate": 1.0,
        "val_fraction": 0.2,
        "num_folds": None,
        "fold": 0,
        "seed": 0,
        "resume": True,
        "data": DATA,
        "task": TRAIN_TASK,
        **common.TRAIN_PLAN,
        **common.DATALISTS,
        **common.network(network_def, task=True),
        "loss": {
            "_target_": "custom_nets.losses.StackedDeepSupervisionLoss",
            "loss": {"_target_": "DiceFocalLoss", "sigmoid": True, "batch": True, "smooth_nr": 1e-5, "smooth_dr": 1e-5},
        },
        "optimizer": common.optimizer(),
        "lr_scheduler": common.lr_scheduler(),
        "train": {
            "deterministic_transforms": _load_transforms(keys),
            "random_transforms": [
                {"_target_": "SpatialPadd", "keys": keys, "spatial_size": "@roi_size"},
                {
                    "_target_": "RandCropByPosNegLabeld",
                    "keys": keys,
                    "label_key": "label",
                    "spatial_size": "@roi_size",
                    "pos": 2,
                    "neg": 1,
                    "num_samples": "@num_samples",
                },
                {"_target_": "RandFlipd", "keys": keys, "prob": 0.5, "spatial_axis": 0},
                {"_target_": "RandFlipd", "keys": keys, "prob": 0.5, "spatial_axis": 1},
                {"_target_": "RandFlipd", "keys": keys, "prob": 0.5, "spatial_axis": 2},
                {"_target_": "RandScaleIntensityd", "keys": "image", "factors": 0.1, "prob": 1.0},
                {"_target_": "RandShiftIntensityd", "keys": "image", "offsets": 0.1, "prob": 1.0},
            ],
            "preprocessing": {
                "_target_": "Compose",
                "transforms": "$@train#deterministic_transforms + @train#random_transforms",
            },
            "dataset": common.cached_dataset(common.TRAIN_DATA, "@train#preprocessing"),
            # workers that live across epochs (issue #18, benchmark.py --training): re-forking them at every epoch
            # of a small data set made the trainer wait ~1 s for the first batch of each epoch
            "dataloader": {**common.dataloader("@train#dataset", "@batch_size", shuffle=True),
                           "persistent_workers": "$@train#dataloader#num_workers > 0"},
            "inferer": {"_target_": "SimpleInferer"},
            "handlers": common.train_handlers(),
            "trainer": common.trainer(),
        },
        "validate": {
            "preprocessing": {"_target_": "Compose", "transforms": "@train#deterministic_transforms"},
            "dataset": common.cached_dataset(common.VAL_DATA, "@validate#preprocessing"),
            "dataloader": common.dataloader("@validate#dataset", 1, shuffle=False),
            "inferer": _sliding_window(overlap=0.25),
            "postprocessing": {"_target_": "Compose", "transforms": common.sigmoid_postprocessing(invert=False)},
            "key_metric": {
                "val_mean_dice": {
                    "_target_": "MeanDice",
                    "include_background": True,
                    "output_transform": "$from_engine(['pred', 'label'])",
                }
            },
            "additional_metrics": "$custom_nets.bundle.channel_metrics(@task.label_names, 'val')",
            "handlers": [
                {"_target_": "StatsHandler", "iteration_log": False},
                {"_target_": "TensorBoardStatsHandler", "log_dir": "@log_dir", "iteration_log": False},
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
                common.best_model_saver(),
            ],
            "evaluator": {
                "_target_": "SupervisedEvaluator",
                "device": "@device",
                "val_data_loader": "@validate#dataloader",
                "network": "@network",
                "inferer": "@validate#inferer",
                "postprocessing": "@validate#postprocessing",
                "key_val_metric": "@validate#key_metric",
                "additional_metrics": "@validate#additional_metrics",
                "val_handlers": "@validate#handlers",
                "amp": "@amp",
            },
        },
        "initialize": [
            "$custom_nets.bundle.prepare_run()",
            common.CHECK_DATA_FIRST,
            "$monai.utils.set_determinism(seed=@seed)",
            "$custom_nets.bundle.log_to_file(os.path.join(@log_dir, 'train.log'))",
        ],
        "run": ["$@train#trainer.run()"],
        "training": common.TRAINING,
    }


def _inference_body(keys: list[str], invert: bool) -> dict:
    """Data, task and pipeline of inference (``keys`` image: unlabelled images) and evaluation (image and label)."""
    if "label" in keys:  # a labelled dataset, checked against the model's task
        data = {"data": DATA, "task": f"$custom_nets.data.check_task({TRAINED_TASK[1:]}, @data)",
                **common.TRAINED_PLAN, "datalist": "$@data.training"}
    else:
        data = {"task": TRAINED_TASK, **common.TRAINED_PLAN,
                "datalist": f"$custom_nets.data.inference_datalist(@dataset_dir, @task, '{DEMO}', @demo_dir, "
                            "isolate=True)"}
    return {
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
        **deepcopy(COMMON),
        "output_dir": "$os.path.join(@bundle_root, 'eval')",
        "roi_size": roi_size,
        "inference_roi_size": inference_roi(network_def, roi_size),
        "sw_batch_size": 1,
        "num_workers": 2,
        **common.network(network_def, task=True, inference=True),
        **_inference_body(["image"], invert=True),
        "handlers": [
            common.checkpoint_loader(),
            {"_target_": "custom_nets.handlers.CaseProgressLogger"},
        ],
        "evaluator": {
            "_target_": "SupervisedEvaluator",
            "device": "@device",
            "val_data_loader": "@isolated_loader",
            "network": "@network",
            "inferer": "@inferer",
            "postprocessing": "@postprocessing",
            "val_handlers": common.ISOLATED_HANDLERS,
            "amp": "@amp",
        },
        "initialize": ["$custom_nets.bundle.prepare_run()", "$monai.utils.set_determinism(seed=0)"],
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
            "print_log": False,
        },
    ]
    return config


def evaluate_config(network_def: dict, roi_size: list[int]) -> dict:
    """``configs/evaluate.json``: per-case, per-region Dice and HD95 of the trained model on ``dataset_dir``."""
    keys = ["image", "label"]
    return {
        **deepcopy(COMMON),
        "output_dir": "$os.path.join(@bundle_root, 'eval')",
        "roi_size": roi_size,
        "inference_roi_size": inference_roi(network_def, roi_size),
        "sw_batch_size": 1,
        "num_workers": 2,
        **common.network(network_def, task=True, inference=True),
        **_inference_body(keys, invert=False),
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
            "hd95": {
                "_target_": "HausdorffDistance",
                "include_background": True,
                "percentile": 95,
                "reduction": "none",
                "output_transform": "$from_engine(['pred', 'label'])",
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
        ],
        "evaluator": {
            "_target_": "SupervisedEvaluator",
            "device": "@device",
            "val_data_loader": "@isolated_loader",
            "network": "@network",
            "inferer": "@inferer",
            "postprocessing": "@postprocessing",
            "key_val_metric": {"mean_dice": "@metrics#mean_dice"},
            "additional_metrics": {"dice": "@metrics#dice", "hd95": "@metrics#hd95"},
            "val_handlers": common.ISOLATED_HANDLERS,
            "amp": "@amp",
        },
        "initialize": ["$custom_nets.bundle.prepare_run()", "$monai.utils.set_determinism(seed=0)"],
        "run": ["$@evaluator.run()"],
    }


def multi_gpu_train_config() -> dict:
    """``configs/multi_gpu_train.json``: DDP overrides layered on ``train.json`` (launch with torchrun)."""
    return {
        "imports": IMPORTS + ["$import torch.distributed as dist"],
        "device": "$torch.device(f\"cuda:{os.environ['LOCAL_RANK']}\") if torch.cuda.is_available() else torch.device('cpu')",
        "network": {
            "_target_": "torch.nn.parallel.DistributedDataParallel",
            "module": "$@network_def.to(@device)",
            "device_ids": "$[@device] if torch.cuda.is_available() else None",
        },
        "train#sampler": {"_target_": "DistributedSampler", "dataset": "@train#dataset", "even_divisible": True, "shuffle": True},
        "train#dataloader#sampler": "@train#sampler",
        "train#dataloader#shuffle": False,
        # only rank 0 saves checkpoints and writes logs; handlers of other ranks are not even built (``_disabled_``)
        # so that they create no TensorBoard event files
        "train#handlers#0#enabled": "$dist.get_rank() == 0",
        "train#handlers#3#_disabled_": "$dist.get_rank() > 0",
        "train#handlers#4#_disabled_": "$dist.get_rank() > 0",
        "train#handlers#5#enabled": "$dist.get_rank() == 0",
        "train#handlers#6#_disabled_": "$dist.get_rank() > 0",
        "validate#sampler": {"_target_": "DistributedSampler", "dataset": "@validate#dataset", "even_divisible": False, "shuffle": False},
        "validate#dataloader#sampler": "@validate#sampler",
        # (not beyond #1: the handler lists differ per task, and a CheckpointSaver must be built on every rank, as
        # ignite's Checkpoint runs a collective the first time it asks for the rank)
        "validate#handlers#0#_disabled_": "$dist.get_rank() > 0",
        "validate#handlers#1#_disabled_": "$dist.get_rank() > 0",
        "validate#evaluator#val_handlers": "$@validate#handlers if dist.get_rank() == 0 else None",
        "initialize": [
            "$import torch.distributed as dist",
            "$dist.is_initialized() or dist.init_process_group(backend='nccl' if torch.cuda.is_available() else 'gloo')",
            "$torch.cuda.set_device(@device) if torch.cuda.is_available() else None",
            # ignite creates its distributed context (a collective: new_group) on its first rank query; do it here on
            # every rank, so that a handler built on some ranks only can never leave the others waiting
            "$__import__('ignite.distributed').distributed.get_rank()",
            # rank 0 first: it reads and checks the dataset (generating the demo data set if needed) while the other
            # ranks wait, so that they never write the same demo files concurrently; they then reuse what it wrote
            "$dist.barrier() if dist.get_rank() > 0 else None",
            "$@task.in_channels",
            "$dist.barrier() if dist.get_rank() == 0 else None",
            "$custom_nets.bundle.prepare_run()",
            "$monai.utils.set_determinism(seed=@seed)",
            "$custom_nets.bundle.log_to_file(os.path.join(@log_dir, 'train.log')) if dist.get_rank() == 0 else None",
        ],
        "run": ["$@train#trainer.run()"],
        "training": common.TRAINING,
        # barrier, destroy the process group, end torchrun workers before interpreter teardown (see its docstring)
        "finalize": ["$custom_nets.bundle.end_distributed_run()"],
    }


def metadata(bundle: dict, versions: dict[str, str]) -> dict:
    """``configs/metadata.json`` following the MONAI bundle specification, from a bundle's registry entry."""
    input_shape = [f"{d}*n" for d in bundle["size_divisor"]] if bundle.get("size_divisor") else ["*", "*", "*"]
    return {
        "schema": SCHEMA_URL,
        "version": bundle["version"],
        "changelog": bundle["changelog"],
        "monai_version": versions["monai"],
        "pytorch_version": versions["torch"],
        "numpy_version": versions["numpy"],
        # MONAI 1.6 reads "required_packages_version" (it renames the specification's older
        # "optional_packages_version"); tensorboard and itk are used but not needed to run the bundle.
        "required_packages_version": {
            "custom-nets": versions["custom_nets"],
            "nibabel": versions["nibabel"],
            "pytorch-ignite": versions["ignite"],
            "tensorboard": versions["tensorboard"],
        },
        "name": bundle["title"],
        "task": "Brain tumour sub-region segmentation (TC, WT, ET) from multi-parametric MRI (BraTS)",
        "description": bundle["description"],
        "authors": "custom_nets contributors",
        "copyright": "Copyright (c) custom_nets contributors",
        "data_source": "Any dataset in the nnU-Net v2 / Decathlon layout (dataset.json), BraTS 2020/2021/2023 "
        "(https://www.synapse.org/brats) read in place or converted (python -m custom_nets.convert brats), or the "
        "synthetic demo data (custom_nets.data.demo)",
        "data_type": "nibabel",
        "image_classes": "4 channels: FLAIR, T1, T1ce, T2 (by default; a dataset's channel_names otherwise), each "
        "normalised to zero mean and unit variance over non-zero (brain) voxels",
        "label_classes": "BraTS 2023 numbering: 1 necrotic/non-enhancing core, 2 oedema, 3 enhancing tumour (BraTS "
        "2021's 4 is read as 3), trained as 3 overlapping regions TC (1+3), WT (1+2+3), ET (3); a dataset's labels "
        "or regions otherwise",
        "pred_classes": "one sigmoid channel per region (TC, WT, ET by default); inference writes one label map per "
        "case with the dataset's label values",
        # custom_nets extensions (ignored by MONAI): how batch inference groups a case's files into the input
        # channels, what the values of the saved label map mean, and what the network's output channels are
        "input_channel_suffixes": {str(i): list(s) for i, s in enumerate(CHANNEL_SUFFIXES)},
        "label_values": LABEL_VALUES,
        "network_output_channels": {"0": "tumor core (TC)", "1": "whole tumor (WT)", "2": "enhancing tumor (ET)"},
        "eval_metrics": {},
        "intended_use": "Research and education only; not for clinical or diagnostic use. No pretrained weights ship "
        "with this bundle: train it on your data first.",
        "references": bundle["references"],
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": "magnitude",
                    "modality": "MR",
                    "num_channels": 4,
                    "spatial_shape": input_shape,
                    "dtype": "float32",
                    "value_range": [],
                    "is_patch_data": True,
                    "channel_def": {str(i): m for i, m in enumerate(MODALITIES)},
                }
            },
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "classes",
                    "num_channels": 3,
                    "spatial_shape": input_shape,
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": True,
                    # keyed by the values of the label map inference writes: MONAI Label and 3D Slicer show these
                    # names for these values (the network's 3 region channels: network_output_channels)
                    "channel_def": LABEL_VALUES,
                }
            },
        },
    }


SCHEMA_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json"


def bundle_configs(bundle: dict, versions: dict[str, str]) -> dict[str, dict]:
    """All generated config files of one 3D BraTS bundle, by file name."""
    net, roi = bundle["network_def"], bundle["roi_size"]
    return {
        "metadata.json": metadata(bundle, versions),
        "train.json": train_config(net, roi, bundle["learning_rate"], bundle["batch_size"]),
        "inference.json": inference_config(net, roi),
        "evaluate.json": evaluate_config(net, roi),
        "multi_gpu_train.json": multi_gpu_train_config(),
    }
