"""Config pieces every task template shares: network, optimiser, schedule, training handlers, trainer, loaders.

Task templates (``brats3d``, ``seg2d`` and those built on it) call these so that a fix to, say, checkpointing or
logging reaches every bundle at once. They return fresh dicts, safe to modify.
"""

from __future__ import annotations

from copy import deepcopy

LOSS_OUTPUT = "$from_engine(['loss'], first=True)"
# "monai.bundle run training" is "run": a reference, so that evaluating the whole config (MONAI Label's and 3D
# Slicer's root run_id "") starts the trainer once, not once per id
TRAINING = "@run"
# first in a training run's initialize: read and check the dataset (one line per problem, naming the file) before
# anything is written (logs, checkpoints, models/task.json)
CHECK_DATA_FIRST = "$@task.name"


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


def planned_patch(default: list[int]) -> str:
    return f"$custom_nets.planning.planned_patch_size(@plans, {list(default)})"


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


def sigmoid_postprocessing(invert: bool, final_output_ndim: int | None = None, label_map: bool = False,
                           threshold: float | str = 0.5) -> list[dict]:
    """Sigmoid, optionally undo the preprocessing (``Invertd``: back to the input's geometry), threshold at 0.5.

    ``final_output_ndim`` first keeps only the final output of a stacked deep-supervision prediction. With
    ``label_map``, the thresholded channels become one label map of the task's label values (what inference writes).
    """
    steps: list[dict] = []
    if final_output_ndim is not None:
        steps.append(
            {"_target_": "custom_nets.transforms.SelectFinalOutputd", "keys": "pred", "reference_ndim": final_output_ndim}
        )
    steps.append({"_target_": "Activationsd", "keys": "pred", "sigmoid": True})
    if invert:
        steps.append(
            {
                "_target_": "Invertd",
                "keys": "pred",
                "transform": "@preprocessing",
                "orig_keys": "image",
                "nearest_interp": False,
                "to_tensor": True,
            }
        )
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


# changelog entries shared by several bundles (the same change made to each)
CHANGELOG_0_2_0_3D = (
    "outputs.pred.channel_def keyed by the label-map values inference writes (MONAI Label / 3D Slicer label names); network output channels in network_output_channels"
)
CHANGELOG_0_2_0_2D = CHANGELOG_0_2_0_3D + "; MONAI Label gets a 2D uint8 label map (MonaiLabelOutputd)"
