"""Config template of every 2D segmentation task: LGG brain MRI slices (``LGG`` below), RGB lesions (``polyp2d``), the
UW-Madison GI tract (``gi2d``).

A task (:class:`Task2D`, typed options) says how its data is read and augmented and which configs it gets; a bundle
(its registry entry, ``common.BundleEntry``) adds its network, loss and sizes. Every 2D bundle is generated from this
template by ``scripts/build_bundle_configs.py``; no task patches another's configs.

Configs written per bundle:

- ``train.json``: training with validation every ``val_interval`` epochs, best and last checkpoints;
- ``inference.json``: every 2D image of ``dataset_dir`` (TIF/PNG/JPG) to a mask of the same size and name stem; its
  postprocessing ends with ``MonaiLabelOutputd``, which only under MONAI Label makes the prediction a 2D label map;
- ``inference_volume.json`` (``Task2D.volume``): every NIfTI volume of ``dataset_dir`` segmented slice by slice into
  a 3D NIfTI label map with the input's geometry;
- ``evaluate.json``: Dice and IoU (and precision, recall) per group (patient or image) and their mean, computed over
  all slices of a group, empty ones included;
- the task's own configs (``Task2D.extra_configs``, e.g. the UW-Madison competition layout's), built with the keyword
  options of :func:`inference_config` and :func:`evaluate_config`;
- ``multi_gpu_train.json``: DDP overrides (``common.multi_gpu_train_config``).
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, Callable

from bundle_templates import common

IMPORTS = common.IMPORTS[:1] + ["$import numpy"] + common.IMPORTS[1:]


@dataclass(frozen=True)
class VolumeInference:
    """``inference_volume.json``: NIfTI volumes segmented slice by slice along ``@slice_axis``.

    ``datalist``: the expression listing the volumes; ``preprocessing(size_divisor)``: the volume's transforms;
    ``inferer``: the slice inferer; ``values``: top-level values the expressions use (after the task's values).
    """

    datalist: str
    preprocessing: Callable[[int], list]
    inferer: dict
    values: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Task2D:
    """What a 2D task is and how its data is read, augmented and written; one per task family.

    Metadata and card text: ``name``, ``task``, ``data_source``, ``image_classes``, ``label_classes``,
    ``pred_classes`` (default: the sigmoid channels), ``modality``, ``image_format``, ``data_type``, ``packages``
    (extra ``required_packages_version`` entries: a key of the generator's VERSIONS table, or a version).
    Pipeline:

    - ``demo``: the expression naming the demo data set (``"'lgg'"``, ``"@layout"``);
    - ``values``: top-level values of every config (e.g. ``image_size``, ``threshold``: with ``threshold`` the
      sigmoid channels are thresholded at ``@threshold`` rather than 0.5);
    - ``spatial_transforms(keys, size_divisor)``: the task's spatial steps after reading (default: pad to a multiple
      of the network's divisor);
    - ``augmentation``: the training augmentation's options (``common.augmentation``);
    - ``patch_crop``: training pads and crops random ``roi_size`` patches (else the whole, resized, image);
    - ``validate_at_original_size`` / ``evaluate_at_original_size``: the label keeps its size and the prediction is
      inverted to it (validation / evaluation);
    - ``size_divisor_value``: the network's size divisor as the top-level value ``size_divisor`` (for expressions);
    - ``epochs``, ``cache_rate``: training defaults;
    - ``volume``: ``inference_volume.json`` (None: none written); ``extra_configs``: the task's own configs,
      ``{file name: callable(task, bundle)}``;
    - ``monai_label_output``: keyword arguments of the ``MonaiLabelOutputd`` ending the inference postprocessing;
    - ``output_ext``, ``output_postfix``: the written masks' extension and name suffix.
    """

    name: str
    demo: str
    in_channels: list[str]
    out_channels: list[str]
    modality: str
    task: str
    data_source: str
    image_classes: str
    label_classes: str
    augmentation: common.Augmentation
    pred_classes: str | None = None
    image_format: str = "magnitude"
    data_type: str = "tiff"
    packages: dict[str, str] = field(default_factory=dict)
    values: dict = field(default_factory=dict)
    spatial_transforms: Callable[[list[str], int], list] | None = None
    patch_crop: bool = True
    validate_at_original_size: bool = False
    evaluate_at_original_size: bool = False
    size_divisor_value: bool = False
    epochs: int = 50
    cache_rate: float = 1.0
    volume: VolumeInference | None = None
    extra_configs: dict[str, Callable[["Task2D", dict], dict]] = field(default_factory=dict)
    monai_label_output: dict = field(default_factory=dict)
    output_ext: str = ".png"
    output_postfix: str = "mask"


def _lgg_volume_preprocessing(size_divisor: int) -> list[dict]:
    """A volume's channel repeated to the network's inputs, scaled per channel to its 0.5-99.5 percentile range."""
    return [
        {"_target_": "LoadImaged", "keys": "image", "reader": "NibabelReader", "image_only": True},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {"_target_": "custom_nets.transforms.RepeatChannelsd", "keys": "image", "channels": "$@task.in_channels"},
        {"_target_": "ScaleIntensityRangePercentilesd", "keys": "image", "lower": 0.5, "upper": 99.5, "b_min": 0.0,
         "b_max": 1.0, "clip": True, "channel_wise": True},
        {"_target_": "DivisiblePadd", "keys": "image", "k": [size_divisor, size_divisor, 1]},
    ]


LGG = Task2D(
    name="LGG brain MRI slices",
    # the training patch (random crops; LGG slices are 256 x 256, the demo's 128 x 128)
    values={"roi_size": [128, 128]},
    demo="'lgg'",
    in_channels=["pre-contrast", "FLAIR", "post-contrast"],
    out_channels=["tumour"],
    modality="MR",
    # brains: small rotations; axial slices mirrored both ways; MR: bias field
    augmentation=common.Augmentation(rotate_degrees=15.0, flip_axes=(0, 1), bias_field=True),
    volume=VolumeInference(
        datalist="$custom_nets.data.images.find_volumes(@dataset_dir)",
        preprocessing=_lgg_volume_preprocessing,
        inferer={"_target_": "SliceInferer", "spatial_dim": "@slice_axis", "roi_size": "$[-1, -1]",
                 "sw_batch_size": 16, "progress": False},
    ),
    task="Lower-grade glioma segmentation on 2D brain MRI slices (LGG, TCGA)",
    data_source="Any 2D dataset in the nnU-Net v2 / Decathlon layout (dataset.json), the LGG segmentation dataset "
    "(Buda et al. 2019; Kaggle lgg-mri-segmentation, kaggle_3m) read in place or converted (python -m "
    "custom_nets.convert lgg), or the synthetic demo data (custom_nets.data.demo)",
    image_classes="3 channels: pre-contrast, FLAIR and post-contrast MRI as RGB, scaled from 0-255 to 0-1 (a "
    "dataset's channel_names otherwise)",
    label_classes="1 channel: tumour (a dataset's labels otherwise, one sigmoid channel each)",
)

LABEL_TO_REGIONS = {"_target_": "custom_nets.transforms.LabelToRegionsd", "keys": "label",
                    "regions": "$@task.region_values"}
# the middle slice of a 2.5D case as the image the outputs are named after and inverted to
CENTRE_SLICE = {"_target_": "custom_nets.transforms.CentreSliceSourced", "keys": "image", "source_key": "center_image"}


def _data(task: Task2D) -> str:
    return (f"$custom_nets.data.open_dataset(@dataset_dir, demo={task.demo}, demo_dir=@demo_dir, spatial_dims=2, "
            "model_dir=@ckpt_dir)")


def trained_task(task: Task2D) -> str:
    return f"$custom_nets.data.trained_task(@ckpt_dir, {task.demo})"


def _load_image_transforms(task: Task2D, keys: list[str], size_divisor: int, spatial_keys: list[str] | None = None,
                           centre_slice: bool = False, label_regions: bool = True) -> list:
    """Reading any 2D image (PNG/TIFF/JPEG with MONAI's PIL reader, 2D NIfTI ...), its label as one target channel
    per label or region of the task (``label_regions``; else the label is used as read), the task's intensity
    normalisation, then the task's spatial steps on ``spatial_keys`` (default all keys; a label kept at its size
    is scored against the inverted prediction). ``centre_slice``: the outputs of a 2.5D case follow its middle
    slice."""
    transforms: list = [
        {"_target_": "LoadImaged", "keys": keys, "image_only": True},
        {"_target_": "EnsureChannelFirstd", "keys": keys},
        *([dict(CENTRE_SLICE)] if centre_slice else []),
        {"_target_": "custom_nets.transforms.TaskInputd", "keys": keys if label_regions else "image", "task": "@task"},
        {"_target_": "EnsureTyped", "keys": keys, "dtype": "$torch.float32"},
        common.NORMALIZATION,
    ]
    if "label" in keys and label_regions:
        transforms.append(dict(LABEL_TO_REGIONS))
    spatial_keys = spatial_keys or keys
    transforms += (task.spatial_transforms(spatial_keys, size_divisor) if task.spatial_transforms
                   else [{"_target_": "DivisiblePadd", "keys": spatial_keys, "k": size_divisor}])
    return transforms


def _patches(task: Task2D, keys: list[str]) -> list[dict]:
    """The random training patch: one ``roi_size`` per batch whatever the images' sizes."""
    if not task.patch_crop:
        return []
    return [
        {"_target_": "SpatialPadd", "keys": keys, "spatial_size": "@roi_size"},
        {"_target_": "RandSpatialCropd", "keys": keys, "roi_size": "@roi_size", "random_size": False},
    ]


def _loss(bundle: dict) -> dict:
    """The loss entries of train.json: the bundle's own ``loss_config``, or the ``loss_name`` choice."""
    if "loss_config" in bundle:
        return deepcopy(bundle["loss_config"])
    return {
        "loss_name": bundle["loss_name"],
        "positive_class_weight": "$(custom_nets.data.lgg.positive_class_weight(@train_datalist) "
        "if @loss_name == 'wce' else None)",
        "loss": {
            "_target_": "custom_nets.losses.StackedDeepSupervisionLoss",
            "loss": "$custom_nets.losses.segmentation_loss(@loss_name, pos_weight=@positive_class_weight)",
            "weights": bundle.get("deep_supervision_weights"),
        },
    }


def _common(task: Task2D, bundle: dict, **values: Any) -> dict:
    """The first values of every config: paths, device, the task's values, then a config's own ``values``."""
    return {
        **common.run_values(IMPORTS),
        "num_workers": 2,
        **deepcopy(task.values),
        **({"size_divisor": bundle["size_divisor"][0]} if task.size_divisor_value else {}),
        **deepcopy(values),
    }


def _network(bundle: dict, inference: bool = False) -> dict:
    """The network (channels from ``@task``); its ``top_level_network_values`` become top-level values, so that the
    loss can share them (UNet 3+'s ``cgm``)."""
    shared = bundle.get("top_level_network_values", [])
    definition = {**bundle["network_def"], **{name: f"@{name}" for name in shared}}
    return {**{name: bundle["network_def"][name] for name in shared},
            **common.network(definition, inference=inference)}


def _postprocessing(task: Task2D, invert: bool, label_map: bool = False, preprocessing: str = "@preprocessing"
                    ) -> list[dict]:
    threshold = "@threshold" if "threshold" in task.values else 0.5
    return common.sigmoid_postprocessing(invert, final_output_ndim=3, label_map=label_map, threshold=threshold,
                                         preprocessing=preprocessing)


def monai_label_output(task: Task2D) -> dict:
    """The last inference postprocessing step: the 2D label map for MONAI Label (identity in every other run)."""
    return {"_target_": "custom_nets.transforms.MonaiLabelOutputd", "keys": "pred", **deepcopy(task.monai_label_output)}


def train_config(task: Task2D, bundle: dict) -> dict:
    keys = ["image", "label"]
    divisor = bundle["size_divisor"][0]
    roi_size = bundle.get("roi_size") or task.values.get("roi_size")
    validate_keys = ["image"] if task.validate_at_original_size else None
    return {
        **_common(task, bundle),
        "epochs": task.epochs,
        "val_interval": 2,
        "learning_rate": bundle["learning_rate"],
        "batch_size": common.planned_batch(bundle["batch_size"], 2),
        **({"roi_size": common.planned_patch(roi_size, bundle["size_divisor"])} if roi_size else {}),
        **common.SPLIT_VALUES,
        "resume": True,
        "cache_rate": task.cache_rate,
        "data": _data(task),
        "task": common.TRAIN_TASK,
        **common.TRAIN_PLAN,
        **common.DATALISTS,
        **_network(bundle),
        **_loss(bundle),
        "optimizer": {**common.optimizer(), **bundle.get("optimizer_values", {})},
        "lr_scheduler": common.lr_scheduler(),
        "train": common.train_section(_load_image_transforms(task, keys, divisor), _patches(task, keys),
                                      common.augmentation(2, keys, task.augmentation),
                                      bundle.get("train_label_transforms")),
        "validate": common.validate_section(
            {"_target_": "SimpleInferer"},
            _postprocessing(task, invert=bool(validate_keys), preprocessing="@validate#preprocessing"),
            handlers=[],
            preprocessing=(_load_image_transforms(task, keys, divisor, validate_keys) if validate_keys
                           else "@train#deterministic_transforms"),
        ),
        "initialize": common.train_initialize(),
        "run": ["$@train#trainer.run()"],
        "training": common.TRAINING,
    }


def _inference_run(bundle: dict, values: dict, preprocessing: list, postprocessing: list,
                   handlers: list[dict], inferer: dict | None = None, plan: bool = True) -> dict:
    """What inference, volume inference and evaluation share: their values, the trained network (and ``plan``: its
    plan), the cases through ``preprocessing`` one at a time (each failing alone), ``inferer`` (default: the whole
    image at once), ``postprocessing``, the checkpoint loader, progress and ``handlers``."""
    return {
        **values,
        **(common.TRAINED_PLAN if plan else {}),
        **_network(bundle, inference=True),
        "preprocessing": {"_target_": "Compose", "transforms": preprocessing},
        "dataset": common.isolated_dataset(),
        "dataloader": common.dataloader("@dataset", 1, shuffle=False),  # images keep their own sizes
        "isolated_loader": common.ISOLATED_LOADER,
        "inferer": deepcopy(inferer) if inferer else {"_target_": "SimpleInferer"},
        "postprocessing": {"_target_": "Compose", "transforms": postprocessing},
        "handlers": [common.checkpoint_loader(), {"_target_": "custom_nets.handlers.CaseProgressLogger"}, *handlers],
        "evaluator": common.isolated_evaluator(),
        "initialize": common.quiet_init(),
        "run": ["$@evaluator.run()"],
    }


def inference_config(task: Task2D, bundle: dict, *, values: dict | None = None, datalist: str | None = None,
                     data_root: str | None = None, centre_slice: bool = False, saver: dict | None = None,
                     handlers: list[dict] | None = None) -> dict:
    """Every image of ``dataset_dir`` (a dataset's test images, or a plain folder) to a label map of the same size and
    name stem, with the task's label values (MONAI Label: a 2D label map).

    Options of a task's own inference config: ``values`` (top-level values, e.g. ``demo_dir``), ``datalist`` (its
    expression), ``data_root`` (a folder the outputs mirror), ``centre_slice`` (2.5D cases named after their middle
    slice), ``saver`` (instead of the label map: thresholded channels written by this ``SaveImaged``), ``handlers``
    (after the checkpoint loader and the progress)."""
    saver_of_label_map = {
        "_target_": "SaveImaged",
        "keys": "pred",
        "output_dir": "@output_dir",
        "output_postfix": task.output_postfix,
        "output_ext": "@output_ext",
        "output_dtype": "$numpy.uint8",
        "output_name_formatter": "$custom_nets.data.naming.case_output_name",
        "separate_folder": False,
        "resample": False,
        "print_log": False,
    }
    default_datalist = (f"$custom_nets.data.inference_datalist(@dataset_dir, @task, {task.demo}, @demo_dir, "
                        "isolate=True)")
    postprocessing = (_postprocessing(task, invert=True, label_map=True) + [saver_of_label_map, monai_label_output(task)]
                      if saver is None else _postprocessing(task, invert=True) + [saver])
    return _inference_run(
        bundle,
        {
            **_common(task, bundle, **(values or {})),
            "output_dir": "$os.path.join(@bundle_root, 'eval')",
            "output_ext": task.output_ext,
            "task": trained_task(task),
            "datalist": datalist or default_datalist,
            **({"data_root": data_root} if data_root else {}),
        },
        _load_image_transforms(task, ["image"], bundle["size_divisor"][0], centre_slice=centre_slice),
        postprocessing,
        handlers or [],
    )


def inference_volume_config(task: Task2D, bundle: dict) -> dict:
    """NIfTI volumes of ``dataset_dir`` segmented slice by slice into 3D label maps with the input's geometry."""
    volume = task.volume
    threshold = "@threshold" if "threshold" in task.values else 0.5
    return _inference_run(
        bundle,
        {
            **_common(task, bundle, **volume.values),
            "output_dir": "$os.path.join(@bundle_root, 'eval')",
            "slice_axis": 2,
            "task": trained_task(task),
            "datalist": volume.datalist,
        },
        volume.preprocessing(bundle["size_divisor"][0]),
        [
            {"_target_": "Activationsd", "keys": "pred", "sigmoid": True},
            common.invert_to_input(),
            common.LABEL_MAP | {"threshold": threshold},
            {
                "_target_": "SaveImaged",
                "keys": "pred",
                "output_dir": "@output_dir",
                "output_postfix": task.output_postfix,
                "output_dtype": "$torch.uint8",
                "separate_folder": False,
                "resample": False,
                "print_log": False,
            },
        ],
        [],
        inferer=volume.inferer,
        plan=False,  # volumes are scaled by their own percentiles, not by the plan of the training slices
    )


def evaluate_config(task: Task2D, bundle: dict, *, values: dict | None = None, datalist: str | None = None,
                    centre_slice: bool = False, label_regions: bool = True, metrics_writer: dict | None = None
                    ) -> dict:
    """Dice, IoU, precision and recall per group (patient, or case) over all its images, and their mean; a labelled
    dataset checked against the model's task.

    Options of a task's own evaluation config: ``values`` (top-level values), ``datalist`` (its expression, instead
    of the dataset's training cases; the task is then the trained model's, unchecked), ``centre_slice`` (see
    :func:`inference_config`), ``label_regions`` (False: the labels are the network's channels already),
    ``metrics_writer`` (instead of the grouped overlap metrics)."""
    keys = ["image", "label"]
    original_size = task.evaluate_at_original_size
    data = ({"task": trained_task(task), "datalist": datalist} if datalist else
            {"data": _data(task), "task": f"$custom_nets.data.check_task({trained_task(task)[1:]}, @data)",
             "datalist": "$@data.training"})
    writer = metrics_writer or {
        "_target_": "custom_nets.handlers.GroupedOverlapMetricsWriter",
        "output_dir": "@output_dir",
        "group_key": "group",
        "class_names": "$[custom_nets.bundle.label_slug(n) for n in @task.label_names]",
    }
    return _inference_run(
        bundle,
        {**_common(task, bundle, **(values or {})), "output_dir": "$os.path.join(@bundle_root, 'eval')", **data},
        _load_image_transforms(task, keys, bundle["size_divisor"][0], ["image"] if original_size else None,
                               centre_slice=centre_slice, label_regions=label_regions),
        _postprocessing(task, invert=original_size),
        [writer] if metrics_writer else [writer, common.postprocessing_chooser()],
    )


def metadata(task: Task2D, bundle: dict, versions: dict[str, str]) -> dict:
    shape = [f"{d}*n" for d in bundle["size_divisor"]]
    label_values = {str(i + 1): name for i, name in enumerate(task.out_channels)}
    packages = {"custom-nets": versions["custom_nets"], "pillow": versions["pillow"],
                "pytorch-ignite": versions["ignite"], "tensorboard": versions["tensorboard"],
                **{name: versions.get(version, version) for name, version in task.packages.items()}}
    return common.metadata(
        bundle, versions, packages,
        task=task.task,
        data_source=task.data_source,
        data_type=task.data_type,
        image_classes=task.image_classes,
        label_classes=task.label_classes,
        pred_classes=task.pred_classes or f"{len(task.out_channels)} sigmoid channel(s): {', '.join(task.out_channels)}",
        input_channel_suffixes={},
        label_values=label_values,
        network_output_channels={str(i): name for i, name in enumerate(task.out_channels)},
        network_data_format=common.network_data_format(task.modality, task.image_format, task.in_channels,
                                                       label_values, len(task.out_channels), shape, [0, 1],
                                                       is_patch_data=False),
    )


def bundle_configs(bundle: dict, versions: dict[str, str]) -> dict[str, dict]:
    task: Task2D = bundle["task"]
    configs = {
        "metadata.json": metadata(task, bundle, versions),
        "train.json": train_config(task, bundle),
        "inference.json": inference_config(task, bundle),
        **({"inference_volume.json": inference_volume_config(task, bundle)} if task.volume else {}),
        "evaluate.json": evaluate_config(task, bundle),
        **{name: build(task, bundle) for name, build in task.extra_configs.items()},
        "multi_gpu_train.json": common.multi_gpu_train_config(),
    }
    return configs
