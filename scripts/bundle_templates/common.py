"""Config pieces every task template shares: network, optimiser, schedule, training handlers, trainer, loaders.

Task templates (``brats3d``, ``seg2d`` and those built on it) call these so that a fix to, say, checkpointing or
logging reaches every bundle at once. They return fresh dicts, safe to modify.
"""

from __future__ import annotations

import math
from copy import deepcopy
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypedDict


class BundleEntry(TypedDict, total=False):
    """One bundle of a family registry (``<family>_bundles.BUNDLES[name]``): what differs between the bundles of a
    task. ``scripts/build_bundle_configs.py`` passes it to ``template.bundle_configs(entry, versions)``."""

    template: ModuleType  # the task template module (brats3d, seg2d) that writes the configs
    task: Any  # 2D: the task's options (seg2d.Task2D)
    card_template: str  # the task's model card template (bundle_templates/<card_template>)
    title: str  # metadata "name", card title
    summary: str  # card summary paragraph
    description: str  # metadata "description"
    version: str
    changelog: dict[str, str]
    references: list[str]
    network_def: dict  # the network, MONAI config syntax; its channels come from the task
    reference_widths: dict  # network_def overrides of the paper's widths (the card's parameter count)
    size_divisor: list[int]  # input sizes must be multiples of these (metadata spatial_shape)
    roi_size: list[int]  # training patch (3D; GI)
    learning_rate: float
    batch_size: int
    loss_name: str  # 2D: the loss_name choice (dice, focal, dicefocal, wce) ...
    loss_config: dict  # ... or the bundle's own top-level loss entries (include "loss")
    deep_supervision_weights: list[float]
    train_label_transforms: list[dict]  # appended to the training chain only (e.g. a reconstruction target)
    optimizer_values: dict  # arguments of the optimizer replacing the shared defaults
    top_level_network_values: list[str]  # network_def arguments made top-level values (shared with the loss)


IMPORTS = [
    "$import os",
    "$import torch",
    "$import monai",
    "$import custom_nets",
    "$from monai.handlers import from_engine",
]
LOSS_OUTPUT = "$from_engine(['loss'], first=True)"
# "monai.bundle run training" is "run": a reference, so that evaluating the whole config (MONAI Label's and 3D
# Slicer's root run_id "") starts the trainer once, not once per id
TRAINING = "@run"
# training: the task of the dataset (written to models/task.json); inference and evaluation: the trained model's
TRAIN_TASK = "$custom_nets.data.prepare_task(@data.task, @ckpt_dir, @resume)"
# first in a training run's initialize: read and check the dataset (one line per problem, naming the file) before
# anything is written (logs, checkpoints, models/task.json)
CHECK_DATA_FIRST = "$@task.name"


def family(template: ModuleType, card_template: str, **values: Any) -> BundleEntry:
    """What every bundle of a family registry shares: its task template, model card template and defaults."""
    return BundleEntry(template=template, card_template=card_template, **values)


def run_values(imports: list[str]) -> dict:
    """The first values of every config: imports, the bundle's folders, the data folder (``"demo"``: the demo data
    generated into ``demo_dir``), device and AMP."""
    return {
        "imports": list(imports),
        "bundle_root": "$custom_nets.bundle.bundle_root()",
        "ckpt_dir": "$os.path.join(@bundle_root, 'models')",
        "log_dir": "$os.path.join(@bundle_root, 'runs')",
        "dataset_dir": "demo",
        "demo_dir": "$os.path.join(@bundle_root, 'demo_data')",
        "device": "$custom_nets.bundle.default_device()",
        "amp": "$custom_nets.bundle.amp_enabled(@device)",
    }


# the training/validation split: a seeded grouped split, or fold ``fold`` of ``num_folds`` (splits_final.json)
SPLIT_VALUES = {"val_fraction": 0.2, "num_folds": None, "fold": 0, "seed": 0}


def quiet_init(seed: str = "0") -> list[str]:
    """``initialize`` of inference and evaluation (and the start of training's)."""
    return ["$custom_nets.bundle.prepare_run()", f"$monai.utils.set_determinism(seed={seed})"]


def train_initialize() -> list[str]:
    """``initialize`` of training: the dataset is read and checked before anything is written."""
    first, determinism = quiet_init("@seed")
    return [first, CHECK_DATA_FIRST, determinism, "$custom_nets.bundle.log_to_file(os.path.join(@log_dir, 'train.log'))"]


def network(network_def: dict, task: bool = True, inference: bool = False) -> dict:
    """``network_def`` and the instantiated ``network`` on ``@device``; with ``task``, the input and output channels
    come from the config's ``@task`` (the dataset's channels and labels; a trained model's ``models/task.json``);
    with ``inference``, the CPU speed-ups are applied (training runs the plain network)."""
    definition = deepcopy(network_def)
    if task:
        definition.update(TASK_CHANNELS)
    built = "$custom_nets.bundle.inference_network(@network_def.to(@device))" if inference else "$@network_def.to(@device)"
    return {"network_def": definition, "network": built}


# the network's channels, from the task of the data (training) or of the trained model (inference)
TASK_CHANNELS = {"in_channels": "$@task.in_channels", "out_channels": "$@task.out_channels"}


def optimizer() -> dict:
    return {"_target_": "torch.optim.AdamW", "params": "$@network.parameters()", "lr": "@learning_rate", "weight_decay": 1e-5}


def lr_scheduler() -> dict:
    return {"_target_": "torch.optim.lr_scheduler.CosineAnnealingLR", "optimizer": "@optimizer", "T_max": "@epochs"}


def train_handlers() -> list[dict]:
    """Resume/last checkpoint, LR schedule, periodic validation, console and TensorBoard loss, final model, progress.

    ``multi_gpu_train.json`` refers to these by position (0: checkpoint, 3 and 4: loss loggers, 5: final model,
    6: progress): keep the order, append new handlers at the end.
    """
    return [
        {
            # carries the validator's best metric and its epoch, so a resumed run replaces model.pt only with a better one
            "_target_": "custom_nets.handlers.ResumableCheckpoint",
            "save_dir": "@ckpt_dir",
            "save_dict": {"model": "@network", "optimizer": "@optimizer", "lr_scheduler": "@lr_scheduler"},
            "resume": "@resume",
            "map_location": "@device",
            "validator": "@validate#evaluator",
        },
        {"_target_": "LrScheduleHandler", "lr_scheduler": "@lr_scheduler", "print_lr": False},
        # every val_interval epochs and after the last one, so that every finished run has validated its weights
        {"_target_": "custom_nets.handlers.PeriodicValidation", "validator": "@validate#evaluator",
         "interval": "@val_interval"},
        {"_target_": "StatsHandler", "tag_name": "train_loss", "output_transform": LOSS_OUTPUT},
        {"_target_": "TensorBoardStatsHandler", "log_dir": "@log_dir", "tag_name": "train_loss", "output_transform": LOSS_OUTPUT},
        # a run too short to validate leaves its weights as model.pt, or as model_final.pt beside a validated model.pt
        {"_target_": "custom_nets.handlers.FinalModelSaver", "save_dir": "@ckpt_dir", "network": "@network"},
        {"_target_": "custom_nets.handlers.TrainingProgressLogger"},
    ]


def trainer() -> dict:
    return {
        "_target_": "SupervisedTrainer",
        "max_epochs": "@epochs",
        "device": "@device",
        "train_data_loader": "@train#dataloader",
        "network": "@network",
        "loss_function": "@loss",
        "optimizer": "@optimizer",
        "inferer": "@train#inferer",
        "train_handlers": "@train#handlers",
        "amp": "@amp",
    }


def train_section(deterministic: list, random: list, augmentation: list, label_transforms: list | None = None) -> dict:
    """``train``: the cached deterministic chain, the random patch sampling (``random_transforms``), the augmentation
    (``augmentation``, see :func:`augmentation`) and, for some networks, training-only targets (``label_transforms``)."""
    parts = {"deterministic_transforms": deterministic, "random_transforms": random, "augmentation": augmentation,
             "label_transforms": deepcopy(label_transforms)}
    parts = {name: value for name, value in parts.items() if value or name == "augmentation"}
    return {
        **parts,
        "preprocessing": {"_target_": "Compose", "transforms": "$" + " + ".join(f"@train#{name}" for name in parts)},
        "dataset": cached_dataset(TRAIN_DATA, "@train#preprocessing"),
        # workers that live across epochs (issue #18, benchmark.py --training): re-forking them at every epoch of a
        # small data set made the trainer wait ~1 s for the first batch of each epoch
        "dataloader": {**dataloader("@train#dataset", "@batch_size", shuffle=True),
                       "persistent_workers": "$@train#dataloader#num_workers > 0"},
        "inferer": {"_target_": "SimpleInferer"},
        "handlers": train_handlers(),
        "trainer": trainer(),
    }


def validate_section(inferer: dict, postprocessing: list[dict], handlers: list[dict], additional_metrics: str | None = None,
                     preprocessing: Any = "@train#deterministic_transforms") -> dict:
    """``validate``: the validation cases (batch 1: they keep their own sizes) through ``preprocessing``, mean Dice
    as the key metric (``additional_metrics``: per-channel ones), ``handlers`` (the best model saver last)."""
    section = {
        "preprocessing": {"_target_": "Compose", "transforms": preprocessing},
        "dataset": cached_dataset(VAL_DATA, "@validate#preprocessing"),
        "dataloader": dataloader("@validate#dataset", 1, shuffle=False),
        "inferer": inferer,
        "postprocessing": {"_target_": "Compose", "transforms": postprocessing},
        "key_metric": {"val_mean_dice": MEAN_DICE},
        "additional_metrics": additional_metrics,
        "handlers": [
            {"_target_": "StatsHandler", "iteration_log": False},
            {"_target_": "TensorBoardStatsHandler", "log_dir": "@log_dir", "iteration_log": False},
            *handlers,
            best_model_saver(),
        ],
    }
    if additional_metrics is None:
        del section["additional_metrics"]
    section["evaluator"] = evaluator("@validate#dataloader", "@validate#inferer", "@validate#postprocessing",
                                     "@validate#handlers", "@validate#key_metric",
                                     "@validate#additional_metrics" if additional_metrics else None)
    return section


MEAN_DICE = {"_target_": "MeanDice", "include_background": True, "output_transform": "$from_engine(['pred', 'label'])"}


def evaluator(loader: str, inferer: str, postprocessing: str, handlers: str, key_metric: Any = None,
              additional_metrics: Any = None) -> dict:
    """MONAI's ``SupervisedEvaluator`` of validation, inference and evaluation."""
    built = {
        "_target_": "SupervisedEvaluator",
        "device": "@device",
        "val_data_loader": loader,
        "network": "@network",
        "inferer": inferer,
        "postprocessing": postprocessing,
        "key_val_metric": key_metric,
        "additional_metrics": additional_metrics,
        "val_handlers": handlers,
        "amp": "@amp",
    }
    return {key: value for key, value in built.items() if value is not None}


def isolated_evaluator(key_metric: Any = None, additional_metrics: Any = None) -> dict:
    """The evaluator of inference and evaluation: cases through the isolated loader, report last."""
    return evaluator("@isolated_loader", "@inferer", "@postprocessing", ISOLATED_HANDLERS, key_metric,
                     additional_metrics)


def multi_gpu_train_config() -> dict:
    """``configs/multi_gpu_train.json`` of every bundle: DDP overrides layered on ``train.json`` (launch with torchrun)."""
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
        "training": TRAINING,
        # barrier, destroy the process group, end torchrun workers before interpreter teardown (see its docstring)
        "finalize": ["$custom_nets.bundle.end_distributed_run()"],
    }


# Per-case isolation of inference and evaluation (custom_nets.isolation, issue 21): a case that cannot be read or
# preprocessed fails alone with one line naming its file, and the run ends non-zero after the good cases. The report
# is the last handler, so handlers that write when the run completes (metrics, submission) write first.
ISOLATED_LOADER = {"_target_": "custom_nets.isolation.IsolatedLoader", "loader": "@dataloader"}
ISOLATED_HANDLERS = "$@handlers + [@isolated_loader]"


def isolated_dataset(transform: str = "@preprocessing") -> dict:
    """``@datalist`` through ``transform``, each case failing alone (items with an ``error`` are never read)."""
    return {"_target_": "custom_nets.isolation.IsolatedCases",
            "dataset": {"_target_": "Dataset", "data": "@datalist", "transform": transform}}


# The plan of the data (custom_nets.planning, issue 15): "plan" is a plan file (--plan PATH); empty: computed on the first
# training run on a dataset folder (not the demo) and cached in models/plans.json, which inference and evaluation read.
# Planned values are at most the bundle's own (its network was sized for them) and stay overridable (--roi_size ...).
TRAIN_PLAN = {"plan": "", "plans": "$custom_nets.planning.training_plan(@data, @ckpt_dir, @plan, @dataset_dir)"}
TRAINED_PLAN = {"plans": "$custom_nets.planning.trained_plan(@ckpt_dir)"}
NORMALIZATION = "$custom_nets.transforms.intensity_normalization(@task, plan=@plans)"
PIXDIM = "$custom_nets.planning.planned_pixdim(@plans, @task)"


def planned_patch(default: list[int], divisor: list[int]) -> str:
    return f"$custom_nets.planning.planned_patch_size(@plans, {list(default)}, {list(divisor)})"


def planned_batch(default: int, spatial_dims: int) -> str:
    return f"$custom_nets.planning.planned_batch_size(@plans, {int(default)}, {spatial_dims})"


# The datalists of train.json live in train#dataset#data / validate#dataset#data, the ids MONAI Label overrides with
# its own, and train_datalist / val_datalist refer to them: a run of the root id (MONAI Label's default) then builds
# no datalist of the bundle's dataset (nor generates its demo)
SPLIT = "@data.split(val_fraction=@val_fraction, seed=@seed, num_folds=@num_folds, fold=@fold)"
DATALISTS = {"train_datalist": "@train#dataset#data", "val_datalist": "@validate#dataset#data"}
TRAIN_DATA, VAL_DATA = f"${SPLIT}[0]", f"${SPLIT}[1]"


def cached_dataset(data: str, transform: str) -> dict:
    return {
        "_target_": "CacheDataset",
        "data": data,
        "transform": transform,
        "cache_rate": "@cache_rate",
        "num_workers": "@num_workers",
        "progress": False,
    }


def dataloader(dataset: str, batch_size: int | str, shuffle: bool) -> dict:
    return {
        "_target_": "DataLoader",
        "dataset": dataset,
        "batch_size": batch_size,
        "shuffle": shuffle,
        "num_workers": "@num_workers",
    }


def best_model_saver() -> dict:
    """Keeps the best validation model as ``models/model.pt`` (what inference, export and MONAI Label load).

    ``BestModelSaver`` rather than MONAI's ``CheckpointSaver``: its best score survives a resume (through
    ``ResumableCheckpoint``), and ``models/model.json`` records which epoch and metric ``model.pt`` is.
    """
    return {"_target_": "custom_nets.handlers.BestModelSaver", "save_dir": "@ckpt_dir", "network": "@network"}


def checkpoint_loader() -> dict:
    return {
        "_target_": "CheckpointLoader",
        "load_path": "$os.path.join(@ckpt_dir, 'model.pt')",
        "load_dict": {"model": "@network"},
        "map_location": "@device",
    }


def invert_to_input(transform: str = "@preprocessing") -> dict:
    """``Invertd``: the prediction back to the input's geometry (undoing ``transform``'s spatial steps)."""
    return {"_target_": "Invertd", "keys": "pred", "transform": transform, "orig_keys": "image",
            "nearest_interp": False, "to_tensor": True}


POSTPROCESSING_CHOICE = "$os.path.join(@ckpt_dir, 'postprocessing.json')"
"""Where evaluation writes nnU-Net's post-processing choice and inference reads it (beside the weights)."""


def keep_largest_components(threshold: float | str = 0.5) -> dict:
    """The largest connected component of the output channels that evaluation chose (``models/postprocessing.json``;
    nothing without the file): :class:`custom_nets.postprocessing.KeepLargestComponentsd`."""
    return {"_target_": "custom_nets.postprocessing.KeepLargestComponentsd", "keys": "pred",
            "choice_file": POSTPROCESSING_CHOICE, "threshold": threshold}


def postprocessing_chooser() -> dict:
    """The evaluation handler that makes that choice per output channel (where it raises the mean Dice)."""
    return {"_target_": "custom_nets.postprocessing.PostprocessingChooser", "output_path": POSTPROCESSING_CHOICE,
            "channel_names": "$list(@task.label_names)"}


def sigmoid_postprocessing(invert: bool, final_output_ndim: int | None = None, label_map: bool = False,
                           threshold: float | str = 0.5, preprocessing: str = "@preprocessing") -> list[dict]:
    """Sigmoid, optionally undo ``preprocessing`` (``Invertd``: back to the input's geometry), threshold.

    ``final_output_ndim`` first keeps only the final output of a stacked deep-supervision prediction. With
    ``label_map`` (inference), the post-processing choice of evaluation is applied to the probabilities
    (:func:`keep_largest_components`) and the thresholded channels become one label map of the task's label values.
    """
    steps: list[dict] = []
    if final_output_ndim is not None:
        steps.append(
            {"_target_": "custom_nets.transforms.SelectFinalOutputd", "keys": "pred", "reference_ndim": final_output_ndim}
        )
    steps.append({"_target_": "Activationsd", "keys": "pred", "sigmoid": True})
    if label_map:
        steps.append(keep_largest_components(threshold))
    if invert:
        steps.append(invert_to_input(preprocessing))
    if label_map:
        steps.append(LABEL_MAP | {"threshold": threshold})
    else:
        steps.append({"_target_": "AsDiscreted", "keys": "pred", "threshold": threshold})
    return steps


# probabilities -> the label map of the task's values (regions nested, labels by the most probable channel)
LABEL_MAP = {
    "_target_": "custom_nets.transforms.RegionsToLabelMapd",
    "keys": "pred",
    "regions": "$@task.region_values",
    "output_values": "$list(@task.output_values)",
}


# configs/metadata.json (MONAI bundle specification; checked against custom_nets/schemas/meta_schema.json)
SCHEMA_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20220324.json"
INTENDED_USE = ("Research and education only; not for clinical or diagnostic use. No pretrained weights ship with this "
                "bundle: train it on your data first.")


def metadata(bundle: BundleEntry, versions: dict[str, str], packages: dict[str, str], task: str, **fields: Any) -> dict:
    """``metadata.json`` of a bundle: versions, ``packages`` (``required_packages_version``, the name MONAI 1.6 reads),
    the registry entry's name, description and references, the task's ``fields`` (data_source ... pred_classes, the
    custom_nets extensions, ``network_data_format``)."""
    data_format = fields.pop("network_data_format")
    return {
        "schema": SCHEMA_URL,
        "version": bundle["version"],
        "changelog": bundle["changelog"],
        "monai_version": versions["monai"],
        "pytorch_version": versions["torch"],
        "numpy_version": versions["numpy"],
        "required_packages_version": dict(sorted(packages.items())),
        "name": bundle["title"],
        "task": task,
        "description": bundle["description"],
        "authors": "custom_nets contributors",
        "copyright": "Copyright (c) custom_nets contributors",
        **fields,
        "eval_metrics": {},
        "intended_use": INTENDED_USE,
        "references": bundle["references"],
        "network_data_format": data_format,
    }


def network_data_format(modality: str, image_format: str, channel_names: list[str], label_values: dict[str, str],
                        out_channels: int, spatial_shape: list[str], value_range: list, is_patch_data: bool) -> dict:
    """The ``network_data_format`` of metadata: the image input and the ``pred`` output, whose ``channel_def`` is keyed
    by the values of the label map inference writes (what MONAI Label and 3D Slicer show for those values; the
    network's own output channels are in ``network_output_channels``)."""
    tensor = {"type": "image", "spatial_shape": spatial_shape, "dtype": "float32", "is_patch_data": is_patch_data}
    return {
        "inputs": {"image": {**tensor, "format": image_format, "modality": modality,
                             "num_channels": len(channel_names), "value_range": value_range,
                             "channel_def": {str(i): name for i, name in enumerate(channel_names)}}},
        "outputs": {"pred": {**tensor, "format": "classes", "num_channels": out_channels, "value_range": [0, 1],
                             "channel_def": label_values}},
    }


# changelog entries shared by several bundles (the same change made to each)
CHANGELOG_0_2_0_3D = (
    "outputs.pred.channel_def keyed by the label-map values inference writes (MONAI Label / 3D Slicer label names); network output channels in network_output_channels"
)
CHANGELOG_0_2_0_2D = CHANGELOG_0_2_0_3D + "; MONAI Label gets a 2D uint8 label map (MonaiLabelOutputd)"


# ---------------------------------------------------------------------------------------------------------------------
# Default training augmentation (issue 15), nnU-Net-like (Isensee et al. 2021, nnU-Net v2's default training
# transforms), as MONAI transforms written out in train.json (``train#augmentation``), so that a user edits the
# probabilities there. Applied to the training patch (after cropping), so its cost does not grow with the image.
# Not included: elastic deformation (off by default in nnU-Net v2, and measured too slow for 2 CPU cores: see
# docs/own_data.md, "Augmentation") and simulated low resolution.


@dataclass(frozen=True)
class Augmentation:
    """What a task's anatomy and imaging allow, per family.

    ``rotate_degrees``: +- range of the random rotation, about every axis in 3D, in plane in 2D (180: any orientation,
    e.g. polyps and skin lesions; small for brains and abdomens, whose orientation is a cue); ``flip_axes``: spatial
    axes mirrored (each with probability 0.5; none where left and right differ, as abdominal organs); ``bias_field``:
    a smooth multiplicative intensity inhomogeneity (MR); ``clamp``: the range the image is clipped to at the end
    (RGB images scaled to [0, 1], so that a target made from the image stays in range).
    """

    rotate_degrees: float = 15.0
    flip_axes: tuple[int, ...] = ()
    bias_field: bool = False
    clamp: tuple[float, float] | None = None


# probabilities and ranges (nnU-Net v2's where it has them; rotation/scaling combined in one resampling)
AFFINE_PROB, SCALE_RANGE = 0.2, (0.85, 1.25)
BIAS_FIELD_PROB = 0.1
NOISE_PROB, NOISE_STD = 0.1, 0.1  # std drawn from [0, 0.1] (images normalised to unit variance or [0, 1])
BLUR_PROB, BLUR_SIGMA = 0.2, (0.5, 1.0)  # voxels
BRIGHTNESS_PROB, BRIGHTNESS_FACTORS = 0.15, (-0.25, 0.25)  # intensity x (1 + factor)
SHIFT_PROB, SHIFT_OFFSETS = 0.15, 0.1
GAMMA_PROB, INVERTED_GAMMA_PROB, GAMMA = 0.3, 0.1, (0.7, 1.5)
FLIP_PROB = 0.5


def augmentation(spatial_dims: int, keys: list[str], options: Augmentation) -> list[dict]:
    """The training augmentation of a task: random rotation and scaling (``RandAffined``: bilinear for the image,
    nearest for the label), bias field (MR), Gaussian noise, Gaussian blur, brightness (``RandScaleIntensityd``) and
    shift, gamma (``RandAdjustContrastd``, also on the inverted image, statistics retained), mirroring. ``keys``: image
    then label (``"image"`` is the only intensity key)."""
    rotate = round(math.radians(options.rotate_degrees), 4)
    low, high = SCALE_RANGE
    sigma = {f"sigma_{axis}": list(BLUR_SIGMA) for axis in "xyz"[:spatial_dims]}
    steps: list[dict] = [
        {
            "_target_": "RandAffined",
            "keys": keys,
            "prob": AFFINE_PROB,
            "rotate_range": [rotate] * (3 if spatial_dims == 3 else 1),
            "scale_range": [[round(low - 1, 4), round(high - 1, 4)]] * spatial_dims,
            "mode": ["bilinear", "nearest"][: len(keys)],
            "padding_mode": "zeros",
        }
    ]
    if options.bias_field:
        steps.append({"_target_": "RandBiasFieldd", "keys": "image", "prob": BIAS_FIELD_PROB,
                      "coeff_range": [0.0, 0.1]})
    steps += [
        {"_target_": "RandGaussianNoised", "keys": "image", "prob": NOISE_PROB, "std": NOISE_STD},
        {"_target_": "RandGaussianSmoothd", "keys": "image", "prob": BLUR_PROB, **sigma},
        {"_target_": "RandScaleIntensityd", "keys": "image", "prob": BRIGHTNESS_PROB,
         "factors": list(BRIGHTNESS_FACTORS)},
        {"_target_": "RandShiftIntensityd", "keys": "image", "prob": SHIFT_PROB, "offsets": SHIFT_OFFSETS},
        {"_target_": "RandAdjustContrastd", "keys": "image", "prob": INVERTED_GAMMA_PROB, "gamma": list(GAMMA),
         "invert_image": True, "retain_stats": True},
        {"_target_": "RandAdjustContrastd", "keys": "image", "prob": GAMMA_PROB, "gamma": list(GAMMA),
         "retain_stats": True},
    ]
    steps += [{"_target_": "RandFlipd", "keys": keys, "prob": FLIP_PROB, "spatial_axis": axis}
              for axis in options.flip_axes]
    if options.clamp is not None:
        low, high = options.clamp  # the identity mapping, clipped
        steps.append({"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": low, "a_max": high,
                      "b_min": low, "b_max": high, "clip": True})
    return steps
