"""Config template of 2D image segmentation tasks (LGG brain MRI slices, and later endoscopy, dermoscopy, GI tract).

A *task* (a dict, see ``LGG`` below) says how a data layout is read: the datalist function, the loading chain, the
group a slice belongs to (patient, image), the channel names; a *bundle* adds its network, loss and sizes. Every
2D bundle is generated from this template by ``scripts/build_bundle_configs.py``.

Configs written per bundle:

- ``train.json``: training with validation every ``val_interval`` epochs, best and last checkpoints;
- ``inference.json``: every 2D image of ``dataset_dir`` (TIF/PNG/JPG) to a mask of the same size and name stem; its
  postprocessing ends with ``MonaiLabelOutputd``, which only under MONAI Label makes the prediction a 2D label map;
- ``inference_volume.json``: every NIfTI volume of ``dataset_dir`` segmented slice by slice (MONAI ``SliceInferer``)
  into a 3D NIfTI label map with the input's geometry;
- ``evaluate.json``: Dice and IoU (and precision, recall) per group (patient or image) and their mean, computed over
  all slices of a group, empty ones included;
- ``multi_gpu_train.json``: DDP overrides (shared with the 3D template).

Optional hooks (absent from ``LGG``, whose configs they leave unchanged):

- task ``"load_transforms"``: ``callable(keys, size_divisor) -> list[dict]``, the task's own reading chain;
- task ``"common_values"``: top-level values added to (or replacing defaults of) every config, e.g. ``image_size``;
- task ``"random_transforms"``: ``callable(keys) -> list[dict]``, the training augmentation;
- task ``"infer_datalist"``: the ``datalist`` expression of ``inference.json``;
- task ``"write_kwargs"``: ``write_kwargs`` of the inference ``SaveImaged`` (the writer then is the top-level
  ``saver``, configured through ``set_options``);
- task ``"evaluate_transforms"``: ``callable(size_divisor) -> list[dict]``, an evaluation chain that keeps the label at
  its original size: predictions are inverted to each image's original size and scored there (batch size 1);
- task ``"volume_inference"``: ``False`` writes no ``inference_volume.json``;
- task ``"monai_label_output"``: keyword arguments of the ``custom_nets.transforms.MonaiLabelOutputd`` that ends the
  inference postprocessing (the 2D label map MONAI Label writes; a no-op outside MONAI Label), e.g.
  ``{"reverse_indexing": False}``;
- task ``"data_type"`` / ``"image_format"``: metadata ``data_type`` and input ``format``;
- bundle ``"loss_config"``: top-level train.json entries that include ``"loss"``, replacing the ``loss_name`` choice;
- bundle ``"train_label_transforms"``: transforms appended to the training chain only (``train#label_transforms``),
  e.g. a reconstruction target; validation and evaluation see the plain label.
- bundle ``"optimizer_values"``: arguments of the training optimizer replacing the shared defaults, e.g.
  ``{"weight_decay": 0.01}``.
"""

from __future__ import annotations

from copy import deepcopy

from bundle_templates import common

from bundle_templates import brats3d

IMPORTS = [
    "$import os",
    "$import numpy",
    "$import torch",
    "$import monai",
    "$import custom_nets",
    "$from monai.handlers import from_engine",
]

LGG = {
    "name": "LGG brain MRI slices",
    # the training patch (random crops; LGG slices are 256 x 256, the demo's 128 x 128)
    "common_values": {"roi_size": [128, 128]},
    "demo": "'lgg'",
    "in_channels": ["pre-contrast", "FLAIR", "post-contrast"],
    "out_channels": ["tumour"],
    "modality": "MR",
    "output_ext": ".png",
    "output_postfix": "mask",
    "task": "Lower-grade glioma segmentation on 2D brain MRI slices (LGG, TCGA)",
    "data_source": "Any 2D dataset in the nnU-Net v2 / Decathlon layout (dataset.json), the LGG segmentation dataset "
    "(Buda et al. 2019; Kaggle lgg-mri-segmentation, kaggle_3m) read in place or converted (python -m "
    "custom_nets.convert lgg), or the synthetic demo data (custom_nets.data.demo)",
    "image_classes": "3 channels: pre-contrast, FLAIR and post-contrast MRI as RGB, scaled from 0-255 to 0-1 (a "
    "dataset's channel_names otherwise)",
    "label_classes": "1 channel: tumour (a dataset's labels otherwise, one sigmoid channel each)",
}

# the dataset (training, evaluation) and the task: the dataset's (training) or the trained model's (inference)
TRAIN_TASK = "$custom_nets.data.prepare_task(@data.task, @ckpt_dir, @resume)"
LABEL_TO_REGIONS = {"_target_": "custom_nets.transforms.LabelToRegionsd", "keys": "label",
                    "regions": "$@task.region_values"}


def _data(task: dict) -> str:
    return (f"$custom_nets.data.open_dataset(@dataset_dir, demo={task['demo']}, demo_dir=@demo_dir, spatial_dims=2, "
            "model_dir=@ckpt_dir)")


def trained_task(task: dict) -> str:
    return f"$custom_nets.data.trained_task(@ckpt_dir, {task['demo']})"


def _load_image_transforms(task: dict, keys: list[str], size_divisor: int, spatial_keys: list[str] | None = None
                           ) -> list:
    """Reading any 2D image (PNG/TIFF/JPEG with MONAI's PIL reader, 2D NIfTI ...), its label as one target channel
    per label or region of the task, the task's intensity normalisation, then the family's spatial steps
    (``task["spatial_transforms"](keys, size_divisor)``; default: pad to a multiple of the network's divisor) on
    ``spatial_keys`` (default all keys; evaluation keeps the label at its size)."""
    transforms: list = [
        {"_target_": "LoadImaged", "keys": keys, "image_only": True},
        {"_target_": "EnsureChannelFirstd", "keys": keys},
        {"_target_": "custom_nets.transforms.TaskInputd", "keys": keys, "task": "@task"},
        {"_target_": "EnsureTyped", "keys": keys, "dtype": "$torch.float32"},
        common.NORMALIZATION,
    ]
    if "label" in keys:
        transforms.append(dict(LABEL_TO_REGIONS))
    spatial = task.get("spatial_transforms")
    spatial_keys = spatial_keys or keys
    transforms += spatial(spatial_keys, size_divisor) if spatial else [
        {"_target_": "DivisiblePadd", "keys": spatial_keys, "k": size_divisor}]
    return transforms


def _random_transforms(task: dict, keys: list[str]) -> list[dict]:
    """Training augmentation; a task with its own gives it as ``task["random_transforms"]``."""
    if "random_transforms" in task:
        return task["random_transforms"](keys)
    return [
        # one patch size per batch whatever the images' sizes (a dataset's images may differ; square, so that the
        # 90-degree rotations keep it)
        {"_target_": "SpatialPadd", "keys": keys, "spatial_size": "@roi_size"},
        {"_target_": "RandSpatialCropd", "keys": keys, "roi_size": "@roi_size", "random_size": False},
        {"_target_": "RandFlipd", "keys": keys, "prob": 0.5, "spatial_axis": 0},
        {"_target_": "RandFlipd", "keys": keys, "prob": 0.5, "spatial_axis": 1},
        {"_target_": "RandRotate90d", "keys": keys, "prob": 0.5, "max_k": 3},
        {"_target_": "RandScaleIntensityd", "keys": "image", "factors": 0.1, "prob": 0.5},
        {"_target_": "RandShiftIntensityd", "keys": "image", "offsets": 0.05, "prob": 0.5},
    ]


def _loss(task: dict, bundle: dict) -> dict:
    """The loss entries of train.json: the bundle's own ``loss_config``, or the ``loss_name`` choice."""
    if "loss_config" in bundle:
        return deepcopy(bundle["loss_config"])
    return {
        "loss_name": bundle["loss_name"],
        "positive_class_weight": "$(custom_nets.data.lgg.positive_class_weight(@train_datalist) "
        "if @loss_name == 'wce' else None)",
        "loss": {
            "_target_": "custom_nets.losses.StackedDeepSupervisionLoss",
            "loss": f"$custom_nets.losses.segmentation_loss(@loss_name, pos_weight=@positive_class_weight)",
            "weights": bundle.get("deep_supervision_weights"),
        },
    }



def _common(task: dict) -> dict:
    return {
        "imports": IMPORTS,
        "bundle_root": "$custom_nets.bundle.bundle_root()",
        "ckpt_dir": "$os.path.join(@bundle_root, 'models')",
        "log_dir": "$os.path.join(@bundle_root, 'runs')",
        "dataset_dir": "demo",
        "demo_dir": "$os.path.join(@bundle_root, 'demo_data')",
        "device": "$custom_nets.bundle.default_device()",
        "amp": "$custom_nets.bundle.amp_enabled(@device)",
        "num_workers": 2,
        **deepcopy(task.get("common_values", {})),
    }


def _postprocessing(invert: bool, label_map: bool = False) -> list[dict]:
    return common.sigmoid_postprocessing(invert, final_output_ndim=3, label_map=label_map)


def monai_label_output(task: dict) -> dict:
    """The last inference postprocessing step: the 2D label map for MONAI Label (identity in every other run)."""
    return {"_target_": "custom_nets.transforms.MonaiLabelOutputd", "keys": "pred",
            **deepcopy(task.get("monai_label_output", {}))}


def _quiet_init(seed: str = "0") -> list[str]:
    return ["$custom_nets.bundle.prepare_run()", f"$monai.utils.set_determinism(seed={seed})"]


def train_config(task: dict, bundle: dict) -> dict:
    keys = ["image", "label"]
    divisor = bundle["size_divisor"][0]
    label_transforms = bundle.get("train_label_transforms")
    return {
        **_common(task),
        "epochs": 50,
        "val_interval": 2,
        "learning_rate": bundle["learning_rate"],
        "batch_size": common.planned_batch(bundle["batch_size"], 2),
        **({"roi_size": common.planned_patch(task["common_values"]["roi_size"])}
           if "roi_size" in task.get("common_values", {}) else {}),
        "val_fraction": 0.2,
        "num_folds": None,
        "fold": 0,
        "seed": 0,
        "resume": True,
        "cache_rate": 1.0,
        "data": _data(task),
        "task": TRAIN_TASK,
        **common.TRAIN_PLAN,
        **common.DATALISTS,
        **common.network(bundle["network_def"]),
        **_loss(task, bundle),
        "optimizer": {**common.optimizer(), **bundle.get("optimizer_values", {})},
        "lr_scheduler": common.lr_scheduler(),
        "train": {
            "deterministic_transforms": _load_image_transforms(task, keys, divisor),
            "random_transforms": _random_transforms(task, keys),
            **({"label_transforms": deepcopy(label_transforms)} if label_transforms else {}),
            "preprocessing": {
                "_target_": "Compose",
                "transforms": "$@train#deterministic_transforms + @train#random_transforms"
                + (" + @train#label_transforms" if label_transforms else ""),
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
            "dataloader": common.dataloader("@validate#dataset", 1, shuffle=False),  # images keep their own sizes
            "inferer": {"_target_": "SimpleInferer"},
            "postprocessing": {"_target_": "Compose", "transforms": _postprocessing(invert=False)},
            "key_metric": {
                "val_mean_dice": {
                    "_target_": "MeanDice",
                    "include_background": True,
                    "output_transform": "$from_engine(['pred', 'label'])",
                }
            },
            "handlers": [
                {"_target_": "StatsHandler", "iteration_log": False},
                {"_target_": "TensorBoardStatsHandler", "log_dir": "@log_dir", "iteration_log": False},
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
                "val_handlers": "@validate#handlers",
                "amp": "@amp",
            },
        },
        "initialize": [*_quiet_init("@seed"), common.CHECK_DATA_FIRST,
                       "$custom_nets.bundle.log_to_file(os.path.join(@log_dir, 'train.log'))"],
        "run": ["$@train#trainer.run()"],
        "training": common.TRAINING,
    }



def _evaluator(inferer: str, metrics: dict | None) -> dict:
    evaluator = {
        "_target_": "SupervisedEvaluator",
        "device": "@device",
        "val_data_loader": "@isolated_loader",
        "network": "@network",
        "inferer": inferer,
        "postprocessing": "@postprocessing",
        "val_handlers": common.ISOLATED_HANDLERS,
        "amp": "@amp",
    }
    if metrics:
        evaluator["key_val_metric"] = metrics
    return evaluator


def inference_config(task: dict, bundle: dict) -> dict:
    """Every image of ``dataset_dir`` (a dataset's test images, or a plain folder) to a label map of the same size and
    name stem, with the task's label values."""
    divisor = bundle["size_divisor"][0]
    saver = {
        "_target_": "SaveImaged",
        "keys": "pred",
        "output_dir": "@output_dir",
        "output_postfix": task["output_postfix"],
        "output_ext": "@output_ext",
        "output_dtype": "$numpy.uint8",
        "output_name_formatter": "$custom_nets.data.naming.case_output_name",
        "separate_folder": False,
        "resample": False,
        "print_log": False,
    }
    return {
        **_common(task),
        "output_dir": "$os.path.join(@bundle_root, 'eval')",
        "output_ext": task["output_ext"],
        "task": trained_task(task),
        **common.TRAINED_PLAN,
        **common.network(bundle["network_def"], inference=True),
        "datalist": f"$custom_nets.data.inference_datalist(@dataset_dir, @task, {task['demo']}, @demo_dir, "
                    "isolate=True)",
        "preprocessing": {"_target_": "Compose", "transforms": _load_image_transforms(task, ["image"], divisor)},
        "dataset": common.isolated_dataset(),
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "num_workers": "@num_workers"},
        "isolated_loader": common.ISOLATED_LOADER,
        "inferer": {"_target_": "SimpleInferer"},
        "postprocessing": {
            "_target_": "Compose",
            "transforms": _postprocessing(invert=True, label_map=True) + [saver, monai_label_output(task)],
        },
        "handlers": [common.checkpoint_loader(), {"_target_": "custom_nets.handlers.CaseProgressLogger"}],
        "evaluator": _evaluator("@inferer", None),
        "initialize": _quiet_init(),
        "run": ["$@evaluator.run()"],
    }


def inference_volume_config(task: dict, bundle: dict) -> dict:
    """NIfTI volumes of ``dataset_dir`` segmented slice by slice into 3D label maps with the input's geometry."""
    divisor = bundle["size_divisor"][0]
    return {
        **_common(task),
        "output_dir": "$os.path.join(@bundle_root, 'eval')",
        "slice_axis": 2,
        "task": trained_task(task),
        **common.network(bundle["network_def"], inference=True),
        "datalist": "$custom_nets.data.images.find_volumes(@dataset_dir)",
        "preprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "LoadImaged", "keys": "image", "reader": "NibabelReader", "image_only": True},
                {"_target_": "EnsureChannelFirstd", "keys": "image"},
                {"_target_": "custom_nets.transforms.RepeatChannelsd", "keys": "image", "channels": "$@task.in_channels"},
                {
                    "_target_": "ScaleIntensityRangePercentilesd",
                    "keys": "image",
                    "lower": 0.5,
                    "upper": 99.5,
                    "b_min": 0.0,
                    "b_max": 1.0,
                    "clip": True,
                    "channel_wise": True,
                },
                {"_target_": "DivisiblePadd", "keys": "image", "k": [divisor, divisor, 1]},
            ],
        },
        "dataset": common.isolated_dataset(),
        "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "num_workers": "@num_workers"},
        "isolated_loader": common.ISOLATED_LOADER,
        "inferer": {
            "_target_": "SliceInferer",
            "spatial_dim": "@slice_axis",
            "roi_size": "$[-1, -1]",
            "sw_batch_size": 16,
            "progress": False,
        },
        "postprocessing": {
            "_target_": "Compose",
            "transforms": [
                {"_target_": "Activationsd", "keys": "pred", "sigmoid": True},
                {
                    "_target_": "Invertd",
                    "keys": "pred",
                    "transform": "@preprocessing",
                    "orig_keys": "image",
                    "nearest_interp": False,
                    "to_tensor": True,
                },
                dict(common.LABEL_MAP),
                {
                    "_target_": "SaveImaged",
                    "keys": "pred",
                    "output_dir": "@output_dir",
                    "output_postfix": task["output_postfix"],
                    "output_dtype": "$torch.uint8",
                    "separate_folder": False,
                    "resample": False,
                    "print_log": False,
                },
            ],
        },
        "handlers": [common.checkpoint_loader(), {"_target_": "custom_nets.handlers.CaseProgressLogger"}],
        "evaluator": _evaluator("@inferer", None),
        "initialize": _quiet_init(),
        "run": ["$@evaluator.run()"],
    }


def evaluate_config(task: dict, bundle: dict) -> dict:
    """Dice, IoU, precision and recall per group (patient, or case) over all its images, and their mean; a labelled
    dataset checked against the model's task."""
    divisor = bundle["size_divisor"][0]
    keys = ["image", "label"]
    original_size = task.get("evaluate_at_original_size", False)
    transforms = _load_image_transforms(task, keys, divisor, spatial_keys=["image"] if original_size else None)
    return {
        **_common(task),
        "output_dir": "$os.path.join(@bundle_root, 'eval')",
        "data": _data(task),
        "task": f"$custom_nets.data.check_task({trained_task(task)[1:]}, @data)",
        **common.TRAINED_PLAN,
        **common.network(bundle["network_def"], inference=True),
        "datalist": "$@data.training",
        "preprocessing": {"_target_": "Compose", "transforms": transforms},
        "dataset": common.isolated_dataset(),
        "dataloader": {
            "_target_": "DataLoader",
            "dataset": "@dataset",
            "batch_size": 1,  # images keep their own sizes
            "num_workers": "@num_workers",
        },
        "isolated_loader": common.ISOLATED_LOADER,
        "inferer": {"_target_": "SimpleInferer"},
        "postprocessing": {"_target_": "Compose", "transforms": _postprocessing(invert=original_size)},
        "handlers": [
            common.checkpoint_loader(),
            {"_target_": "custom_nets.handlers.CaseProgressLogger"},
            {
                "_target_": "custom_nets.handlers.GroupedOverlapMetricsWriter",
                "output_dir": "@output_dir",
                "group_key": "group",
                "class_names": "$[custom_nets.bundle.label_slug(n) for n in @task.label_names]",
            },
        ],
        "evaluator": _evaluator("@inferer", None),
        "initialize": _quiet_init(),
        "run": ["$@evaluator.run()"],
    }


def metadata(task: dict, bundle: dict, versions: dict[str, str]) -> dict:
    divisor = bundle["size_divisor"]
    shape = [f"{d}*n" for d in divisor]
    label_values = {str(i + 1): name for i, name in enumerate(task["out_channels"])}
    return {
        "schema": brats3d.SCHEMA_URL,
        "version": bundle["version"],
        "changelog": bundle["changelog"],
        "monai_version": versions["monai"],
        "pytorch_version": versions["torch"],
        "numpy_version": versions["numpy"],
        "required_packages_version": {
            "custom-nets": versions["custom_nets"],
            "pillow": versions["pillow"],
            "pytorch-ignite": versions["ignite"],
            "tensorboard": versions["tensorboard"],
        },
        "name": bundle["title"],
        "task": task["task"],
        "description": bundle["description"],
        "authors": "custom_nets contributors",
        "copyright": "Copyright (c) custom_nets contributors",
        "data_source": task["data_source"],
        "data_type": task.get("data_type", "tiff"),
        "image_classes": task["image_classes"],
        "label_classes": task["label_classes"],
        "pred_classes": f"{len(task['out_channels'])} sigmoid channel(s): {', '.join(task['out_channels'])}",
        "eval_metrics": {},
        "intended_use": "Research and education only; not for clinical or diagnostic use. No pretrained weights ship "
        "with this bundle: train it on your data first.",
        "references": bundle["references"],
        "input_channel_suffixes": {},
        "label_values": label_values,
        "network_output_channels": {str(i): name for i, name in enumerate(task["out_channels"])},
        "network_data_format": {
            "inputs": {
                "image": {
                    "type": "image",
                    "format": task.get("image_format", "magnitude"),
                    "modality": task["modality"],
                    "num_channels": len(task["in_channels"]),
                    "spatial_shape": shape,
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": False,
                    "channel_def": {str(i): name for i, name in enumerate(task["in_channels"])},
                }
            },
            "outputs": {
                "pred": {
                    "type": "image",
                    "format": "classes",
                    "num_channels": len(task["out_channels"]),
                    "spatial_shape": shape,
                    "dtype": "float32",
                    "value_range": [0, 1],
                    "is_patch_data": False,
                    # keyed by label-map values (what MONAI Label and 3D Slicer show); channels: network_output_channels
                    "channel_def": label_values,
                }
            },
        },
    }


def bundle_configs(bundle: dict, versions: dict[str, str]) -> dict[str, dict]:
    task = bundle["task"]
    configs = {
        "metadata.json": metadata(task, bundle, versions),
        "train.json": train_config(task, bundle),
        "inference.json": inference_config(task, bundle),
        "inference_volume.json": inference_volume_config(task, bundle),
        "evaluate.json": evaluate_config(task, bundle),
        "multi_gpu_train.json": brats3d.multi_gpu_train_config(),
    }
    if not task.get("volume_inference", True):
        del configs["inference_volume.json"]
    return configs
