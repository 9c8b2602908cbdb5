"""The UW-Madison GI tract task of the 2D template: large bowel, small bowel and stomach on 16-bit MRI slices.

A :class:`~bundle_templates.seg2d.Task2D` (``GI``) and the task's own configs, built with the 2D template's keyword
options. What the task needs beyond LGG:

- slices of different sizes: training pads to ``roi_size`` and crops ``roi_size`` at random; validation, evaluation
  and inference pad each slice to a multiple of the network's ``size_divisor`` (or, with ``"resize_to": [W, H]``,
  resize every slice, training included, to that size) and restore every prediction to the slice's own size
  (``Invertd``), so labels are compared and label maps written at the original size; channels thresholded at
  ``@threshold``;
- the demo (and ``python -m custom_nets.convert uwmadison``) is 2.5D: each case is a slice with its neighbours at
  -2 and +2 as three channels (any dataset's channels work the same way);
- configs for the competition's own layout (``train.csv`` with run-length masks, ``train/case*/case*_day*/scans``):
  ``inference_uwmadison.json`` writes RGB mask PNGs mirroring the input tree and, with ``--write_rle True``, a
  competition-style ``submission.csv``; ``evaluate_uwmadison.json`` scores per case-day in 3D (Dice, HD95 in mm,
  competition score; :mod:`custom_nets.metrics_gi`); ``inference_volume.json`` segments NIfTI volumes with the
  neighbouring slices as channels.
"""

from __future__ import annotations

from bundle_templates import common, seg2d
from bundle_templates.seg2d import Task2D

CLASSES = ["large_bowel", "small_bowel", "stomach"]


# Training: resize image and mask when resize_to is set (random crops of roi_size follow).
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


def _spatial_transforms(keys: list[str], size_divisor: int) -> list[str]:
    """Training resizes image and label (``resize_to``) before its random crops; validation, evaluation and inference
    pad or resize the image only."""
    return [TRAIN_SPATIAL if "label" in keys else IMAGE_SPATIAL]


# the competition layout (train.csv + train/case*/case*_day*/scans): 2.5D neighbours as today's demo and converter
UW_OFFSETS = [-2, 0, 2]
UW_DEMO_DIR = "$os.path.join(@bundle_root, 'demo_data', 'uwmadison_layout')"
SLICE_THICKNESS = 3.0


def _volume_preprocessing(size_divisor: int) -> list:
    """A volume scaled as the slices are (its [0th, 99.8th] percentile range to [0, 1]), padded or resized in plane."""
    return [
        {"_target_": "LoadImaged", "keys": "image", "reader": "NibabelReader", "image_only": True},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
        {"_target_": "ScaleIntensityRangePercentilesd", "keys": "image", "lower": 0.0, "upper": 99.8, "b_min": 0.0,
         "b_max": 1.0, "clip": True, "channel_wise": False},
        VOLUME_SPATIAL,
    ]


def inference_uwmadison_config(task: Task2D, bundle: dict) -> dict:
    """A UW-Madison folder of slice PNGs to RGB mask PNGs (same size, same stem + ``_mask``, mirroring the input
    tree) and optionally a competition ``submission.csv``."""
    return seg2d.inference_config(
        task, bundle,
        values={"demo_dir": UW_DEMO_DIR, "offsets": UW_OFFSETS, "write_rle": False},
        datalist="$custom_nets.data.uwmadison_bundle.slice_datalist(@dataset_dir, demo_dir=@demo_dir, "
                 "offsets=@offsets)",
        data_root="$custom_nets.data.uwmadison_bundle.slice_root(@dataset_dir, demo_dir=@demo_dir, generate=False)",
        centre_slice=True,
        # mirror the input tree in output_dir (slice file names repeat across case-days); RGB masks, 0/255
        saver={
            "_target_": "SaveImaged",
            "keys": "pred",
            "output_dir": "@output_dir",
            "output_postfix": task.output_postfix,
            "output_ext": ".png",
            "output_dtype": "$numpy.uint8",
            "scale": 255,
            "writer": "PILWriter",
            "data_root_dir": "@data_root",
            "separate_folder": False,
            "resample": False,
            "print_log": False,
        },
        handlers=[{
            "_target_": "custom_nets.handlers_gi.RLESubmissionWriter",
            "output_dir": "@output_dir",
            "class_names": "$[str(n) for n in @task.label_names]",
            "filename": "submission.csv",
            "enabled": "@write_rle",
        }],
    )


def evaluate_uwmadison_config(task: Task2D, bundle: dict) -> dict:
    """On the competition layout: per case-day (3D) Dice, HD95, normalised Hausdorff distance and competition score,
    and their means."""
    return seg2d.evaluate_config(
        task, bundle,
        values={"demo_dir": UW_DEMO_DIR, "offsets": UW_OFFSETS, "slice_thickness": SLICE_THICKNESS, "role": "all",
                **common.SPLIT_VALUES},
        datalist="$custom_nets.convert.uwmadison.uwmadison_datalist(@dataset_dir, demo_dir=@demo_dir, role=@role, "
                 "offsets=@offsets, val_fraction=@val_fraction, seed=@seed, num_folds=@num_folds, fold=@fold)",
        centre_slice=True,
        label_regions=False,  # the layout's masks are 3 binary channels already (run-length decoded)
        metrics_writer={
            "_target_": "custom_nets.handlers_gi.CaseDayMetricsWriter",
            "output_dir": "@output_dir",
            "class_names": "$[str(n) for n in @task.label_names]",
            "slice_thickness": "@slice_thickness",
        },
    )


GI = Task2D(
    name="UW-Madison GI tract MRI slices",
    demo="'uwmadison'",
    in_channels=["MRI slice -2", "MRI slice 0", "MRI slice +2"],
    out_channels=CLASSES,
    modality="MR",
    data_type="png",
    packages={"nibabel": "nibabel", "scipy": "1.17.1"},  # scipy: MONAI's surface distances (HD95)
    values={"resize_to": None, "threshold": 0.5},
    spatial_transforms=_spatial_transforms,
    # no flips (left and right differ in the abdomen) and small rotations: organ positions are a cue; MR: bias field
    augmentation=common.Augmentation(rotate_degrees=15.0, flip_axes=(), bias_field=True),
    validate_at_original_size=True,
    evaluate_at_original_size=True,
    size_divisor_value=True,
    epochs=30,
    cache_rate=0.0,
    volume=seg2d.VolumeInference(
        datalist="$custom_nets.data.uwmadison_bundle.volume_datalist(@dataset_dir, demo_dir=@demo_dir, "
                 "slice_thickness=@slice_thickness)",
        preprocessing=_volume_preprocessing,
        inferer={"_target_": "custom_nets.inferers.NeighbourSliceInferer", "offsets": "@offsets",
                 "spatial_dim": "@slice_axis", "sw_batch_size": 16},
        values={"offsets": UW_OFFSETS, "slice_thickness": SLICE_THICKNESS, "demo_dir": UW_DEMO_DIR},
    ),
    extra_configs={"inference_uwmadison.json": inference_uwmadison_config,
                   "evaluate_uwmadison.json": evaluate_uwmadison_config},
    task="Segmentation of the large bowel, small bowel and stomach on 2D abdominal MRI slices (UW-Madison GI "
    "Tract Image Segmentation)",
    data_source="Any 2D dataset in the nnU-Net v2 / Decathlon layout (dataset.json), UW-Madison GI Tract Image "
    "Segmentation (Kaggle 2022; train.csv with run-length masks and 16-bit PNG slices) read in place or converted "
    "(python -m custom_nets.convert uwmadison), or the synthetic demo data (custom_nets.data.demo)",
    image_classes="3 channels: a 16-bit MRI slice and its neighbours at -2 and +2, scaled together from their "
    "[0th, 99.8th] percentile range to [0, 1] (a dataset's channel_names otherwise)",
    label_classes="large_bowel 1, small_bowel 2, stomach 3 (where organs overlap, the later one), one sigmoid "
    "channel each (a dataset's labels otherwise)",
    pred_classes="3 sigmoid channels, multi-label (they may overlap): large_bowel, small_bowel, stomach; inference "
    "writes them as the red, green and blue channels of one mask PNG per slice, volume inference as a label map with "
    "values 1, 2, 3 (stomach over small bowel over large bowel where they overlap)",
)
