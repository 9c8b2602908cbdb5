"""A bundle's inference pipeline as one object: network, preprocessing, sliding window and postprocessing.

:class:`BundleSegmenter` parses ``configs/inference.json`` (and ``metadata.json``) of a bundle folder or exported bundle
zip with MONAI's ``ConfigParser``, applies ``KEY=VALUE`` overrides, builds ``network_def``, loads the checkpoint (with
``weights_only=True``, checking every key and shape first) and takes ``preprocessing``, ``inferer`` and
``postprocessing`` from the config. Reading and writing files is left to the caller: ``LoadImaged`` and ``SaveImaged``
are removed from the Composes (found by type), so the pipeline starts from the MetaTensor of
:func:`custom_nets.inference.io.to_meta_tensor` and ends with a label map.

Postprocessing is split after its first ``Activations(d)`` transform: the steps up to the activation (the sigmoid)
run on every network output, and the rest (``Invertd``, ``AsDiscreted``, label conversion) once on the result. That is
what makes flip test-time augmentation average *probabilities* before thresholding: every flipped input is run
through the sliding window, its logits are flipped back and turned into probabilities, and the mean probability goes on
to ``Invertd``/``AsDiscreted``. Without TTA there is one pass and the pipeline is exactly the bundle's. The rest is
split once more after its last ``Invertd``: there the probabilities (and the TTA uncertainty map, inverted with them
as one more channel) are on the input's grid, before any threshold, which is where ``--save-probabilities`` and
``--uncertainty`` take them (:mod:`custom_nets.inference.outputs`).

The sliding window computes on ``device`` but stitches the full-size output on the CPU
(``SlidingWindowInferer(sw_device=device, device="cpu")``), so large volumes fit on small GPUs.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from custom_nets.bundle import default_device, parse_override
from custom_nets.data.dataset import TASK_FILE
from custom_nets.ensemble import load_ensemble

from .backends import first_output
from .discovery import InputSpec
from .errors import CaseError, SetupError, one_line
from .io import Reader2DOptions, torch_load_reason
from .outputs import PassAgreement, plain_tensor

__all__ = ["BundleSegmenter", "CheckpointMismatch", "extract_bundle", "find_bundle", "parse_overrides",
           "load_state_dict", "resolve_device"]

logger = logging.getLogger(__name__)

CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml")
META_NAMES = ("metadata.json", "metadata.yaml", "metadata.yml")


class CheckpointMismatch(SetupError):
    """The checkpoint's keys or shapes do not fit the network built from ``network_def``."""


# ----------------------------------------------------------------------------------------------------------------------
# Locating the bundle
# ----------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BundleFiles:
    root: Path
    config: Path
    meta: Path | None


def _first_existing(folder: Path, names: Sequence[str]) -> Path | None:
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def _bundle_files(root: Path) -> BundleFiles | None:
    config = _first_existing(root / "configs", CONFIG_NAMES)
    if config is None:
        return None
    return BundleFiles(root, config, _first_existing(root / "configs", META_NAMES))


def extract_bundle(zip_path: Path, target: Path) -> Path:
    """Extract an exported bundle zip into ``target`` (refusing members outside it) and return the bundle folder."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            base = target.resolve()
            for member in archive.infolist():
                destination = (target / member.filename).resolve()
                if destination != base and base not in destination.parents:
                    raise SetupError(f"{zip_path}: unsafe member path {member.filename!r} in the bundle zip")
            archive.extractall(target)
    except zipfile.BadZipFile as exc:
        raise SetupError(f"{zip_path}: not a valid zip file ({exc})") from None
    candidates = [target, *sorted(p for p in target.iterdir() if p.is_dir())]
    for candidate in candidates:
        if _bundle_files(candidate):
            return candidate
    raise SetupError(f"{zip_path}: no configs/inference.json in the zip (at its top or in one top-level folder)")


def find_bundle(path: str | os.PathLike, workdir: Path | None = None) -> BundleFiles:
    """The bundle at ``path``: a bundle folder, its ``configs`` folder, its ``inference.json``, or a bundle zip.

    Zips are extracted into ``workdir`` (a temporary folder owned by the caller).

    Raises:
        SetupError: when ``path`` is none of these.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise SetupError(f"bundle {path} does not exist")
    if path.is_file() and zipfile.is_zipfile(path):
        if workdir is None:
            raise SetupError(f"{path}: a bundle zip needs a folder to extract into")
        path = extract_bundle(path, workdir)
    elif path.is_file() and path.name in CONFIG_NAMES and path.parent.name == "configs":
        path = path.parent.parent
    elif path.is_dir() and path.name == "configs" and _first_existing(path, CONFIG_NAMES):
        path = path.parent
    files = _bundle_files(path.resolve()) if path.is_dir() else None
    if files is None:
        raise SetupError(f"{path} is not a bundle: expected a folder with configs/inference.json (or a bundle zip)")
    from custom_nets.packaging import MANIFEST_NAME, verify_manifest

    problem = verify_manifest(files.root)
    if problem:
        raise SetupError(f"{path}: {problem}; the bundle was changed or damaged after packaging, do not run it")
    if (files.root / MANIFEST_NAME).is_file():
        logger.info(f"{path}: every file matches the bundle's {MANIFEST_NAME}")
    return files


# ----------------------------------------------------------------------------------------------------------------------
# Options
# ----------------------------------------------------------------------------------------------------------------------


def parse_overrides(items: Sequence[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """``["network_def#channels=[8,16,32,64]", "roi_size=[32,32,32]"]`` -> dict; values are JSON, else strings
    (:func:`custom_nets.bundle.parse_override`)."""
    if not items:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    out: dict[str, Any] = {}
    for item in items:
        try:
            key, value = parse_override(item)
        except ValueError as error:
            raise SetupError(str(error)) from None
        out[key] = value
    return out


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``"auto"`` (or None): CUDA when present, else CPU; anything else as torch understands it, checked to exist."""
    if name is None or str(name) == "auto":
        return default_device()
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise SetupError(f"bad device {name!r} ({exc})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SetupError(f"device {name!r} requested but CUDA is not available; use --device cpu (or auto)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise SetupError(f"device {name!r} does not exist ({torch.cuda.device_count()} CUDA device(s))")
    return device


# ----------------------------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------------------------


def _listing(items: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _unreadable_checkpoint(checkpoint: Path, exc: BaseException) -> str:
    """One line for a file ``torch.load(weights_only=True)`` cannot read (garbage, truncated, or pickled objects)."""
    text = one_line(exc)
    if "Unsupported global" in text:
        return (f"{checkpoint} holds Python objects besides tensors, which are not loaded for safety (weights_only); "
                "save the network's state_dict() instead")
    head = checkpoint.read_bytes()[:4] if checkpoint.is_file() else b""
    kind = "a truncated or damaged PyTorch checkpoint" if head == b"PK\x03\x04" else "not a PyTorch checkpoint"
    return (f"{checkpoint} is {kind} (torch.load: {torch_load_reason(exc)}); expected the models/model.pt that "
            "training writes")


def load_state_dict(network: torch.nn.Module, checkpoint: str | os.PathLike, what: str = "network_def") -> None:
    """Load ``checkpoint`` (``weights_only=True``; a state dict or ``{"model": state dict}``) into ``network``.

    Raises:
        SetupError: the file is missing (train first) or not a checkpoint.
        CheckpointMismatch: listing missing keys, unexpected keys and shape mismatches.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise SetupError(
            f"no checkpoint at {checkpoint}: no pretrained weights ship with the bundles, train it first "
            "(python -m monai.bundle run training --config_file <bundle>/configs/train.json) or pass --checkpoint PATH"
        )
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - pickle, zip and unsafe-global errors
        raise SetupError(_unreadable_checkpoint(checkpoint, exc)) from None
    if isinstance(state, Mapping) and isinstance(state.get("model"), Mapping):
        state = state["model"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SetupError(f"{checkpoint} is not a state dict (nor {{'model': state_dict}}); keys: "
                         f"{_listing([str(k) for k in state]) if isinstance(state, Mapping) else type(state).__name__}")
    if state and all(str(k).startswith("module.") for k in state):  # saved from DataParallel/DDP
        state = {str(k)[len("module."):]: v for k, v in state.items()}
    expected = network.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {tuple(state[k].shape)} in the checkpoint vs {tuple(expected[k].shape)} in the network"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:
        common = len(expected) - len(missing)
        if common < len(expected) / 2:  # most names differ: not a checkpoint of this network at all
            raise CheckpointMismatch(
                f"checkpoint {checkpoint} is not one of {type(network).__name__} ({what}): only {common} of the "
                f"network's {len(expected)} parameter names are in it (it has e.g. {_listing(unexpected, 3)}); it is "
                "probably another network's or another bundle's checkpoint: use the models/model.pt that this "
                "bundle's training wrote, or pass --checkpoint with it")
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_listing(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatch(es): {_listing(mismatched, 4)}")
        raise CheckpointMismatch(
            f"checkpoint {checkpoint} does not match the network built from {what} ({type(network).__name__}): "
            + "; ".join(parts)
            + ". Was it trained with other network settings? Pass the same overrides as in training "
            "(e.g. --override network_def#channels=[...])."
        )
    network.load_state_dict(state, strict=True)


# ----------------------------------------------------------------------------------------------------------------------
# Transforms
# ----------------------------------------------------------------------------------------------------------------------


def _remove_by_type(compose: Any, types: tuple[type, ...]) -> list[Any]:
    """Remove (in place, recursively) the transforms of the given types from a Compose; returns the removed ones."""
    from monai.transforms import Compose

    removed, kept = [], []
    for t in compose.transforms:
        if isinstance(t, types):
            removed.append(t)
            continue
        if isinstance(t, Compose):
            removed += _remove_by_type(t, types)
        kept.append(t)
    compose.transforms = tuple(kept)
    return removed


def _as_compose(obj: Any, name: str):
    from monai.transforms import Compose

    if isinstance(obj, Compose):
        return obj
    if isinstance(obj, (list, tuple)):
        return Compose(list(obj))
    if callable(obj):
        return Compose([obj])
    raise SetupError(f"config item {name!r} is not a transform or Compose ({type(obj).__name__})")


def _reader_2d_options(loaders: Sequence[Any]) -> Reader2DOptions:
    """What the bundle's ``LoadImaged`` would do with a PNG: its PILReader converter and axis order."""
    from monai.data import ITKReader, PILReader

    for load in loaders:
        inner = getattr(load, "_loader", load)
        readers = list(getattr(inner, "readers", []))[::-1]  # the last registered is tried first
        for reader in readers:
            if isinstance(reader, PILReader):
                return Reader2DOptions(converter=reader.converter, transpose=bool(reader.reverse_indexing))
            if isinstance(reader, ITKReader) and reader.verify_suffix("x.png"):
                return Reader2DOptions(converter=None, transpose=not bool(getattr(reader, "reverse_indexing", False)))
    return Reader2DOptions()


def _split_after_activation(postprocessing: Any) -> tuple[Any, Any, bool]:
    """``(up to and including the first Activations(d), the rest, found)`` as Composes."""
    from monai.transforms import Activations, Activationsd, Compose

    flat = list(postprocessing.flatten().transforms)
    for i, t in enumerate(flat):
        if isinstance(t, (Activations, Activationsd)):
            return Compose(flat[: i + 1]), Compose(flat[i + 1:]), True
    return Compose([]), Compose(flat), False


def _split_after_inversion(after_activation: Any) -> tuple[Any, Any]:
    """``(up to and including the last Invertd, the rest)``: the probabilities are taken between the two (on the
    input's grid, before any threshold). No ``Invertd``: ``(empty, everything)``."""
    from monai.transforms import Compose, Invertd

    flat = list(after_activation.transforms)
    last = max((i for i, t in enumerate(flat) if isinstance(t, Invertd)), default=-1)
    return Compose(flat[: last + 1]), Compose(flat[last + 1:])


def _label_threshold(transforms: Any, default: float = 0.5) -> float:
    """The probability threshold of the label conversion (``RegionsToLabelMapd``), else ``default``. By class name:
    a packaged bundle brings its own copy of ``custom_nets``."""
    for t in transforms.transforms:
        if type(t).__name__ == "RegionsToLabelMapd" and isinstance(getattr(t, "threshold", None), (int, float)):
            return float(t.threshold)
    return default


def _checkpoint_list(checkpoint: str | os.PathLike | Sequence[str | os.PathLike] | None) -> list[Path]:
    """``None`` -> ``[]``; one path -> ``[path]``; several (the folds of a cross-validation) -> their paths."""
    if checkpoint is None:
        return []
    if isinstance(checkpoint, (str, os.PathLike)):
        return [Path(checkpoint)]
    return [Path(c) for c in checkpoint]


def _check_same_task(checkpoints: Sequence[Path]) -> None:
    """The members of an ensemble must be models of one task (the ``task.json`` beside each, where there is one)."""
    tasks = {}
    for checkpoint in checkpoints:
        path = checkpoint.parent / TASK_FILE
        if path.is_file():
            tasks[checkpoint] = path.read_text(encoding="utf-8")
    if len(set(tasks.values())) > 1:
        first, *others = tasks
        other = next(c for c in others if tasks[c] != tasks[first])
        raise SetupError(f"the checkpoints to ensemble are models of different tasks: {first.parent / TASK_FILE} and "
                         f"{other.parent / TASK_FILE} differ (channels, labels or spacing)")


def _flip_sets(spatial_dims: int) -> list[tuple[int, ...]]:
    """All subsets of the spatial axes of a batch ``(B, C, *spatial)``: 2**spatial_dims flips (identity first)."""
    axes = list(range(2, 2 + spatial_dims))
    return [combo for r in range(len(axes) + 1) for combo in itertools.combinations(axes, r)]


# ----------------------------------------------------------------------------------------------------------------------
# The segmenter
# ----------------------------------------------------------------------------------------------------------------------


class BundleSegmenter:
    """Everything needed to turn one input MetaTensor into one label map with a bundle.

    Args:
        bundle: bundle folder (or its ``configs`` folder or ``inference.json``) or exported bundle zip.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda:1"``, ...
        checkpoint: weights to load; default ``<ckpt_dir>/model.pt`` of the bundle (``models/model.pt``). Several
            checkpoints (the folds of a cross-validation) make one :class:`~custom_nets.ensemble.ProbabilityEnsemble`
            that averages their probabilities (nnU-Net's default); the task is the first one's.
        overrides: config overrides ``{"network_def#channels": [8, 16, 32, 64]}`` or ``["KEY=VALUE", ...]``.
        sw_batch_size, overlap: override the sliding window's settings (when the inferer is a sliding window).
        amp: mixed precision on CUDA (ignored with a warning on CPU).
        backend: how the network runs inside the inferer: ``"eager"`` (the PyTorch module), ``"torchscript"``
            (scripted or traced, frozen, optimised for inference) or ``"onnxruntime"`` (exported to ONNX, CPU only);
            see :mod:`custom_nets.inference.backends`. Exported backends are checked against eager before any case.
        workdir: where a bundle zip is extracted (a temporary folder, removed by :meth:`close`, if not given).

    Attributes:
        task: the model's :class:`custom_nets.data.Task` (the config's ``task``: ``models/task.json`` written by
            training, else the bundle's demo task); ``None`` for a bundle whose config has none.
        spec: the input the bundle expects (:class:`~custom_nets.inference.discovery.InputSpec`), from the task.
        label_values: the label values of the output maps and their names (the task's output values).
        reader_2d: how 2D images are read to match the bundle's ``LoadImaged``.

    Raises:
        SetupError: bad bundle, override or device; missing checkpoint; CheckpointMismatch.
    """

    def __init__(
        self,
        bundle: str | os.PathLike,
        device: str | torch.device | None = "auto",
        checkpoint: str | os.PathLike | Sequence[str | os.PathLike] | None = None,
        overrides: Sequence[str] | Mapping[str, Any] | None = None,
        sw_batch_size: int | None = None,
        overlap: float | None = None,
        amp: bool = False,
        workdir: str | os.PathLike | None = None,
        backend: str = "eager",
    ) -> None:
        from monai.bundle import ConfigParser

        self._tmp: str | None = None
        if workdir is None and Path(bundle).is_file() and zipfile.is_zipfile(bundle):
            self._tmp = tempfile.mkdtemp(prefix="bundle-")
            workdir = self._tmp
        try:
            self.files = find_bundle(bundle, Path(workdir) if workdir else None)
            self.device = resolve_device(device)
            self.amp = bool(amp) and self.device.type == "cuda"
            if amp and not self.amp:
                logger.warning("--amp works on CUDA only; ignored on %s", self.device)
            parser = ConfigParser()
            try:
                parser.read_config(str(self.files.config))
                if self.files.meta is not None:
                    parser.read_meta(str(self.files.meta))
            except Exception as exc:  # noqa: BLE001
                raise SetupError(f"cannot read the bundle configs in {self.files.root}: {exc}") from None
            parser["bundle_root"] = str(self.files.root)
            if "device" in parser.get(""):
                parser["device"] = self.device
            for key, value in parse_overrides(overrides).items():
                try:
                    parser[key] = value
                except Exception as exc:  # noqa: BLE001
                    raise SetupError(f"cannot apply override {key}={value!r}: {type(exc).__name__}: {exc}") from None
            checkpoints = _checkpoint_list(checkpoint)
            if checkpoints and "ckpt_dir" in parser.get("") and (checkpoints[0].parent / TASK_FILE).is_file():
                parser["ckpt_dir"] = str(checkpoints[0].parent)  # the task of these weights: their task.json
            self.parser = parser
            self.task = self._task()
            self.spec = self._input_spec()
            self.label_values = self._label_values()
            self._configure_inferer(sw_batch_size, overlap)
            self.checkpoints = checkpoints or [self._default_checkpoint()]
            self.checkpoint = self.checkpoints[0]
            _check_same_task(self.checkpoints)
            self.network = load_ensemble(self._network_def, self.checkpoints, load_state_dict)
            self.network.to(self.device).eval()
            self._build_transforms()
            self.backend = self._build_backend(backend)
        except BaseException:
            self.close()
            raise

    # -- construction helpers ------------------------------------------------------------------------------------------

    def _network_def(self) -> torch.nn.Module:
        network = self._parse("network_def", lazy=False)  # a new module each call (one per ensemble member)
        if not isinstance(network, torch.nn.Module):
            raise SetupError(f"network_def of {self.files.root} is not a torch module")
        return network

    def _parse(self, key: str, lazy: bool = True) -> Any:
        if key not in self.parser.get(""):
            raise SetupError(f"{self.files.config} has no {key!r}")
        try:
            return self.parser.get_parsed_content(key, lazy=lazy)
        except Exception as exc:  # noqa: BLE001
            raise SetupError(f"cannot build {key!r} of {self.files.config}: {type(exc).__name__}: {exc}") from None

    def _meta(self) -> dict:
        meta = self.parser.get("_meta_", {})
        return meta if isinstance(meta, dict) else {}

    def _task(self) -> Any:
        """The model's task (``custom_nets.data.Task``: the config's ``task``, i.e. ``models/task.json`` written by
        training, else the bundle's demo task), or ``None`` for a bundle whose config has no ``task``."""
        if "task" not in self.parser.get(""):
            return None
        return self._parse("task")

    def _input_spec(self) -> InputSpec:
        """Input channels, their names and 2D/3D from the task; the metadata's file-name suffixes (BraTS ``_flair``
        ...) apply when its channel names are the task's. Bundles without a ``task`` are described by their metadata."""
        meta = self._meta()
        image = meta.get("network_data_format", {}).get("inputs", {}).get("image", {})
        channel_def = image.get("channel_def", {}) or {}
        if self.task is not None:
            names, spatial_dims = tuple(self.task.channel_names), int(self.task.spatial_dims)
            meta_names = tuple(str(channel_def.get(str(i), channel_def.get(i, ""))) for i in range(len(names)))
            num_channels = len(names)
            suffixes = meta.get("input_channel_suffixes") if meta_names == names else None
        else:
            net_def = self.parser.get("network_def", {}) or {}
            declared_in = net_def.get("in_channels") if isinstance(net_def, dict) else None
            num_channels = image.get("num_channels", declared_in if isinstance(declared_in, int) else 1)
            try:
                num_channels = int(num_channels)
            except (TypeError, ValueError):
                raise SetupError(f"metadata num_channels {num_channels!r} is not an integer") from None
            if isinstance(declared_in, int) and declared_in != num_channels:
                raise SetupError(f"metadata says {num_channels} input channel(s) but network_def#in_channels is "
                                 f"{declared_in}; override both consistently")
            shape = image.get("spatial_shape")
            dims = net_def.get("spatial_dims") if isinstance(net_def, dict) else None
            spatial_dims = len(shape) if shape else int(dims) if isinstance(dims, int) else 3
            names = tuple(str(channel_def.get(str(i), channel_def.get(i, f"channel {i}"))) for i in range(num_channels))
            suffixes = meta.get("input_channel_suffixes")
        if spatial_dims not in (2, 3):
            raise SetupError(f"bundles with {spatial_dims} spatial dimensions are not supported (2 or 3)")
        table = None
        if isinstance(suffixes, dict) and suffixes and num_channels > 1:  # {} : every channel in one file
            table = tuple(tuple(str(s) for s in suffixes.get(str(i), suffixes.get(i, ())) or ()) for i in range(num_channels))
            if not all(table):
                missing = [names[i] for i, t in enumerate(table) if not t]
                raise SetupError(f"metadata input_channel_suffixes gives no suffix for {', '.join(missing)}")
        return InputSpec(spatial_dims=spatial_dims, num_channels=num_channels, channel_names=names,
                         channel_suffixes=table)

    def _label_values(self) -> dict[int, str]:
        """``{value: name}`` of the label maps: the task's output values, else the metadata's ``label_values``."""
        values = self.task.label_values if self.task is not None else self._meta().get("label_values") or {}
        out = {}
        for key, name in values.items() if isinstance(values, dict) else []:
            try:
                out[int(key)] = str(name)
            except (TypeError, ValueError):
                logger.warning(f"metadata label_values: ignoring non-integer value {key!r}")
        return dict(sorted(out.items()))

    def _configure_inferer(self, sw_batch_size: int | None, overlap: float | None) -> None:
        config = self.parser.get("inferer")
        target = str(config.get("_target_", "")) if isinstance(config, dict) else ""
        if target.endswith("SlidingWindowInferer"):
            self.parser["inferer#sw_device"] = self.device
            self.parser["inferer#device"] = torch.device("cpu")
            self.parser["inferer#progress"] = False
            if sw_batch_size is not None:
                self.parser["inferer#sw_batch_size"] = int(sw_batch_size)
            if overlap is not None:
                self.parser["inferer#overlap"] = float(overlap)
        elif sw_batch_size is not None or overlap is not None:
            logger.warning(f"the bundle's inferer is {target or type(config).__name__}, not a sliding window: "
                           "--sw-batch-size and --overlap are ignored")

    def _default_checkpoint(self) -> Path:
        try:
            ckpt_dir = Path(self.parser.get_parsed_content("ckpt_dir"))
        except Exception:  # noqa: BLE001 - no or unusual ckpt_dir: the bundle convention
            ckpt_dir = self.files.root / "models"
        return ckpt_dir / "model.pt"

    def _build_transforms(self) -> None:
        from monai.transforms import LoadImage, LoadImaged, SaveImage, SaveImaged

        from monai.inferers import SlidingWindowInferer

        self.inferer = self._parse("inferer")
        # a sliding window moves each window to sw_device itself; any other inferer gets the input on the device
        self._input_device = torch.device("cpu") if isinstance(self.inferer, SlidingWindowInferer) else self.device
        self.preprocessing = _as_compose(self._parse("preprocessing"), "preprocessing")
        postprocessing = _as_compose(self._parse("postprocessing"), "postprocessing")
        loaders = _remove_by_type(self.preprocessing, (LoadImaged, LoadImage))
        self.reader_2d = _reader_2d_options(loaders)
        _remove_by_type(postprocessing, (SaveImaged, SaveImage))
        self.activation, self.after_activation, found = _split_after_activation(postprocessing)
        self.inversion, self.after_inversion = _split_after_inversion(self.after_activation)
        self.threshold = _label_threshold(self.after_inversion)
        self.has_activation = found
        if not found:
            logger.warning("the postprocessing has no Activations(d): TTA (if used) averages raw network outputs")
        self.postprocessing = postprocessing

    def _example_shape(self) -> tuple[list[int], bool, int]:
        """``(B, C, *spatial)`` of a typical network input, whether any spatial size occurs, the size divisor."""
        from monai.inferers import SlidingWindowInferer

        image = self._meta().get("network_data_format", {}).get("inputs", {}).get("image", {})
        divisor = 1
        for axis in image.get("spatial_shape") or []:
            head = str(axis).split("*")[0].strip()
            if head.isdigit():
                divisor = max(divisor, int(head))
        dims, channels = self.spec.spatial_dims, self.spec.num_channels
        if isinstance(self.inferer, SlidingWindowInferer):
            roi = list(self.inferer.roi_size)
            roi = [int(r) if int(r) > 0 else 64 for r in roi]
            return [int(self.inferer.sw_batch_size), channels, *roi], False, divisor
        minimum = 32 if dims == 3 else 64
        side = max(divisor, -(-minimum // divisor) * divisor)
        return [1, channels, *([side] * dims)], True, divisor

    def _build_backend(self, name: str) -> Any:
        from .backends import build_backend

        shape, any_size, divisor = self._example_shape()
        if name != "eager" and self.amp:
            raise SetupError(f"--amp works with the eager backend only (not {name})")
        cache = None
        if name == "onnxruntime":
            if self._tmp is None:
                self._tmp = tempfile.mkdtemp(prefix="bundle-")
            cache = Path(self._tmp) / "onnx"
        return build_backend(name, self.network, shape, self.device, cache, any_spatial_size=any_size,
                             divisor=divisor)

    # -- running ---------------------------------------------------------------------------------------------------------

    def predict(self, image: Any, tta: bool = False, timings: dict[str, float] | None = None,
                probabilities_out: list | None = None, probabilities: Any = None, uncertainty: bool = False,
                extras: dict[str, Any] | None = None) -> np.ndarray:
        """Label map (spatial shape of ``image``) for one channel-first input MetaTensor, as an integer numpy array.

        The same as ``finish(infer(prepare(image), tta, ...), extras=extras)``; the batch runner calls the three steps
        in different threads (preprocessing in the read-ahead thread, the rest of the postprocessing in the writer
        thread).

        Args:
            image: ``(C, *spatial)`` MetaTensor as given by :func:`custom_nets.inference.io.to_meta_tensor`.
            tta: average the probabilities of the ``2**spatial_dims`` flips of the input over its spatial axes.
            timings: if given, filled with ``pre`` (preprocessing), ``network`` (time in the network calls) and
                ``post`` (the rest: sliding-window assembly, activation, TTA averaging, postprocessing) seconds.
            probabilities_out: if given, a copy of the (mean) probabilities before the rest of the postprocessing
                (network space, ``(C, *spatial)``) is appended to it (for checks).
            probabilities, uncertainty, extras: see :meth:`infer` and :meth:`finish`.
        """
        timings = {} if timings is None else timings
        holder = [image]
        del image
        prepared = self.prepare(holder.pop(), timings)
        inferred = self.infer(prepared, tta, timings, probabilities_out, probabilities=probabilities,
                              uncertainty=uncertainty)
        del prepared
        return self.finish(inferred, timings, extras=extras)

    def prepare(self, image: Any, timings: dict[str, float] | None = None) -> dict[str, Any]:
        """The bundle's preprocessing of one input MetaTensor (``timings["pre"]``: seconds)."""
        start = time.perf_counter()
        spatial_shape = tuple(image.shape[1:])
        data = self.preprocessing({"image": image})
        del image
        data["_spatial_shape"] = spatial_shape
        if timings is not None:
            timings["pre"] = time.perf_counter() - start
        return data

    def infer(self, data: dict[str, Any], tta: bool = False, timings: dict[str, float] | None = None,
              probabilities_out: list | None = None, probabilities: Any = None,
              uncertainty: bool = False) -> dict[str, Any]:
        """The network (sliding window, TTA) and the postprocessing up to its activation: ``data["pred"]``.

        Args:
            probabilities: keep the probabilities for :meth:`finish` to return, stored as this dtype
                (``torch.float32`` or ``torch.float16``; the label map is then made from the stored values, so
                thresholding them gives it back exactly).
            uncertainty: follow the agreement of the TTA passes (implies ``tta``;
                :class:`~custom_nets.inference.outputs.PassAgreement`): :meth:`finish` returns the uncertainty map
                and the per-case scores.

        ``timings``: ``network`` (seconds in the network calls) and ``post`` (the rest) are set.
        """
        start = time.perf_counter()
        self.backend.reset()
        prepared = data["image"]
        batch = torch.as_tensor(prepared.as_tensor() if hasattr(prepared, "as_tensor") else prepared)[None]
        flips = _flip_sets(batch.ndim - 2) if tta or uncertainty else [()]
        agreement = PassAgreement(self.threshold) if uncertainty else None
        mean = None
        with torch.no_grad():
            for dims in flips:
                x = torch.flip(batch, dims) if dims else batch
                x = x.to(self._input_device)
                with torch.autocast(device_type="cuda", dtype=torch.float16) if self.amp else nullcontext():
                    output = first_output(self.inferer(x, self.backend))
                del x
                output = torch.as_tensor(output).detach().to("cpu", torch.float32)
                if dims:
                    output = torch.flip(output, dims)
                step = self.activation({"image": prepared, "pred": output[0]})["pred"]
                del output
                if agreement is not None:
                    agreement.add(step)
                if mean is None:
                    mean = step
                else:
                    mean += step
                del step
            del batch
            if len(flips) > 1:
                mean /= len(flips)
        if probabilities_out is not None:
            probabilities_out.append(plain_tensor(mean).clone())
        data["pred"] = mean
        if probabilities is not None:
            data["_probabilities"] = probabilities
        if agreement is not None:
            data["_uncertainty"] = agreement.uncertainty()
            data["_tta_scores"] = agreement.scores(data["_uncertainty"])
            del agreement
        if timings is not None:
            network = self.backend.reset()
            timings["network"] = network
            timings["post"] = max(0.0, time.perf_counter() - start - network)
        return data

    def finish(self, data: dict[str, Any], timings: dict[str, float] | None = None,
               extras: dict[str, Any] | None = None) -> np.ndarray:
        """The rest of the postprocessing (``Invertd``, threshold, labels) -> label map; adds to ``timings["post"]``.

        The postprocessing runs in two parts: up to its last ``Invertd`` (on the probabilities, with the uncertainty
        map of :meth:`infer` as one more channel, so both reach the input's grid in the same inversion), then the
        rest (threshold, label conversion) on the probabilities alone.

        Args:
            extras: if given, filled with what :meth:`infer` was asked to keep, on the input's grid as numpy arrays:
                ``"probabilities"`` ``(C, *spatial)`` (clipped to [0, 1], in the requested dtype), ``"uncertainty"``
                ``(*spatial)`` float32 and ``"tta_scores"`` (``{"tta_uncertainty": ..., "tta_agreement": ...}``).
        """
        start = time.perf_counter()
        spatial_shape = data.pop("_spatial_shape")
        keep = data.pop("_probabilities", None)
        uncertainty = data.pop("_uncertainty", None)
        scores = data.pop("_tta_scores", None)
        with torch.no_grad():
            channels = data["pred"].shape[0]
            if uncertainty is not None:
                data["pred"] = torch.cat([data["pred"], uncertainty.to(data["pred"].dtype)])
                uncertainty = None
            data = self.inversion(data)
            if data["pred"].shape[0] > channels:
                inverted = data["pred"]
                uncertainty = plain_tensor(inverted[channels:])[0].numpy().astype(np.float32)
                data["pred"] = inverted[:channels]
                del inverted
            if keep is not None:
                stored = torch.clamp(data["pred"], 0.0, 1.0).to(keep)
                probabilities = plain_tensor(stored).numpy().copy()
                data["pred"] = stored.to(torch.float32)
                del stored
            data = self.after_inversion(data)
        pred = data.pop("pred")
        data.clear()
        label = _label_map(pred)
        del pred
        if tuple(label.shape) != spatial_shape:
            raise CaseError(
                f"the postprocessing returned a label map of shape {tuple(label.shape)} for an input of shape "
                f"{spatial_shape}; the bundle's postprocessing must invert its spatial preprocessing (Invertd)"
            )
        if extras is not None:
            if keep is not None:
                extras["probabilities"] = probabilities
            if uncertainty is not None:
                extras["uncertainty"] = uncertainty
                extras["tta_scores"] = scores
        if timings is not None:
            timings["post"] = timings.get("post", 0.0) + time.perf_counter() - start
        return label

    def close(self) -> None:
        """Remove the folder a bundle zip was extracted to (if this object created it)."""
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.close()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> "BundleSegmenter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_warned_multichannel = False


def _label_map(pred: Any) -> np.ndarray:
    """Postprocessing output ``(1, *spatial)`` (or ``(C, *spatial)`` binary channels) -> integer label map."""
    global _warned_multichannel
    array = plain_tensor(pred)
    if array.dtype.is_floating_point:
        rounded = torch.round(array)
        if not torch.equal(rounded, array):
            raise CaseError("the postprocessing output is not a label map (non-integer values); "
                            "does the bundle's postprocessing threshold (AsDiscreted)?")
        array = rounded.to(torch.int32)
    elif array.dtype == torch.bool:
        array = array.to(torch.uint8)
    array = array.numpy()
    if array.ndim >= 1 and array.shape[0] == 1:
        return array[0]
    if array.ndim >= 1 and array.shape[0] > 1 and set(np.unique(array).tolist()) <= {0, 1}:
        if not _warned_multichannel:
            logger.warning(f"the postprocessing gives {array.shape[0]} binary channels, not one label map: channel i "
                           "is written as label i+1 (later channels win where they overlap)")
            _warned_multichannel = True
        label = np.zeros(array.shape[1:], dtype=np.uint8)
        for c in range(array.shape[0]):
            label[array[c] > 0] = c + 1
        return label
    raise CaseError(f"the postprocessing output has shape {tuple(array.shape)}; expected one label-map channel")
