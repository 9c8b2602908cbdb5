"""Helpers that bundle configs call at parse time.

The configs in ``bundles/<name>/configs`` compute ``bundle_root`` with :func:`bundle_root` so that every path a bundle
writes (checkpoints, logs, demo data, evaluation CSVs) lands inside the bundle folder whatever the current working
directory is. MONAI's own convention (``"bundle_root": "."``) means the current directory, which scatters outputs when a
user runs ``python -m monai.bundle run --config_file bundles/x/configs/train.json`` from the repository root.
MONAI Label and users can still override it (``--bundle_root DIR``).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from . import locate
from .locate import config_file_from_argv

__all__ = [
    "amp_enabled",
    "bundle_root",
    "channel_metrics",
    "channel_output_transform",
    "label_slug",
    "config_file_from_argv",
    "default_device",
    "end_distributed_run",
    "inference_network",
    "log_to_file",
    "parse_override",
    "prepare_run",
    "quiet_library_warnings",
    "report_dataset_errors_briefly",
]

logger = logging.getLogger(__name__)


def bundle_root(default: str | os.PathLike | None = None) -> str:
    """Return the absolute path of the bundle whose config is being parsed (see :func:`custom_nets.locate.bundle_root`).

    Looked up in order: the config file MONAI is parsing (found on the call stack of ``ConfigWorkflow``,
    ``verify_net_in_out`` or ``ckpt_export``), the ``--config_file`` argument on the command line, ``default``, and
    finally the current directory (MONAI's model-zoo convention), with a warning.
    """
    return locate.bundle_root(default)


def parse_override(text: str) -> tuple[str, Any]:
    """``"network_def#channels=[8,16,32,64]"`` -> ``("network_def#channels", [8, 16, 32, 64])``: the value is JSON when
    it parses, else the string itself (the one override syntax of the command-line programs).

    Raises:
        ValueError: no ``=``, or nothing before it (one line, with an example).
    """
    key, sep, value = str(text).partition("=")
    key = key.strip().lstrip("-")
    if not sep or not key:
        raise ValueError(f"bad override {text!r}: expected KEY=VALUE, e.g. network_def#channels=[8,16,32,64]")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def default_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


def amp_enabled(device: torch.device | str) -> bool:
    """Automatic mixed precision only where it pays and is supported for these nets: on CUDA."""
    return torch.device(device).type == "cuda"


def log_to_file(path: str | os.PathLike, level: int = logging.INFO) -> str:
    """Also write the log of this run (MONAI's, ignite's and ours) to ``path``; returns the path.

    Called from a bundle's ``initialize`` so that the training log lands next to its checkpoints. Adding the same
    file twice is a no-op.
    """
    path = Path(path).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    if not any(isinstance(h, logging.FileHandler) and Path(h.baseFilename) == path for h in root.handlers):
        handler = logging.FileHandler(path)
        handler.setLevel(level)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
        if root.level > level or root.level == logging.NOTSET:
            root.setLevel(level)
    return str(path)


def channel_output_transform(channel: int, keys: Sequence[str] = ("pred", "label")):
    """An ignite ``output_transform`` that keeps one channel of each decollated item, for per-region metrics.

    ``MeanDice(output_transform=channel_output_transform(2))`` is the Dice of the third channel (ET for BraTS).
    """

    def transform(output):
        return tuple([item[key][channel : channel + 1] for item in output] for key in keys)

    return transform


def inference_network(network: torch.nn.Module) -> torch.nn.Module:
    """The network of an inference or evaluation config, with the CPU speed-ups applied in place
    (:func:`custom_nets.inference.speedups.apply`; outputs unchanged up to float rounding). Training configs use the
    plain network."""
    from custom_nets.inference.speedups import apply

    return apply(network)


def label_slug(name: str) -> str:
    """A label name as a metric or column name: ``"tumor core"`` -> ``"tumor_core"``."""
    return "_".join(str(name).replace("/", " ").split())


def channel_metrics(label_names: Sequence[str], prefix: str, hd95: bool = False) -> dict:
    """One MONAI ``MeanDice`` (and ``HausdorffDistance`` 95 %) handler per output channel, named
    ``<prefix>_dice_<label>``: the per-label validation metrics of any dataset's task."""
    from monai.handlers import HausdorffDistance, MeanDice

    metrics: dict = {}
    for index, name in enumerate(label_names):
        transform = channel_output_transform(index)
        metrics[f"{prefix}_dice_{label_slug(name)}"] = MeanDice(include_background=True, output_transform=transform)
        if hd95:
            metrics[f"{prefix}_hd95_{label_slug(name)}"] = HausdorffDistance(
                include_background=True, percentile=95, output_transform=transform)
    return metrics


_NOISY_WARNINGS = (
    # raised once per LoadImage construction on machines without NVIDIA's nvImageCodec; harmless
    r"NvImgCodecPydicomReader",
    # MONAI-internal deprecations a bundle user cannot act on
    r".*has been deprecated since version",
    r".*Current default value of argument",
    # per-case notes of MONAI's surface-distance metrics; the metrics CSV shows these cases as nan
    r"the (prediction|ground truth) of class \d+ is all 0",
    # MONAI's ITKReader on a folder of several DICOM series: segment.py reads each series as its own case by name
    r".*contains more than one DICOM series",
)


def quiet_library_warnings() -> None:
    """Silence library warnings that repeat on every case or epoch and that a bundle user cannot act on.

    Called from a bundle's ``initialize``; it leaves every other warning (and all errors) visible.
    """
    import warnings

    for pattern in _NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)


def report_dataset_errors_briefly() -> None:
    """Make an uncaught :class:`~custom_nets.data.DatasetError` (or :class:`~custom_nets.handlers.ResumeError`, or
    :class:`~custom_nets.nets.ssformer.PretrainedCheckpointError`) print one line instead of a traceback.

    MONAI wraps whatever a config expression raises in ``RuntimeError: Failed to evaluate ...``, so a missing dataset
    folder would otherwise end a bundle run with a long traceback whose useful line is buried in the middle. Any
    other exception keeps its full traceback. The process still exits with status 1.
    """
    from custom_nets.data.errors import DatasetError

    previous = sys.excepthook

    def hook(exc_type, exc, tb):
        from custom_nets.handlers import ResumeError  # a checkpoint training cannot resume from: also one line
        from custom_nets.isolation import CasesFailed  # the failed cases of an isolated inference run
        from custom_nets.nets.ssformer import PretrainedCheckpointError  # a user's weights that do not fit

        error: BaseException | None = exc
        while error is not None:
            if isinstance(error, (DatasetError, ResumeError, PretrainedCheckpointError, CasesFailed)):
                sys.stderr.write(f"error: {type(error).__name__}: {error}\n")
                return
            error = error.__cause__ or error.__context__
        previous(exc_type, exc, tb)

    sys.excepthook = hook


def prepare_run() -> None:
    """What every bundle's ``initialize`` does first: quiet library noise, report dataset errors in one line."""
    quiet_library_warnings()
    report_dataset_errors_briefly()


def _is_bundle_cli_process() -> bool:
    """Whether this process is ``python -m monai.bundle ...`` (nothing of the user's runs after the workflow)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return getattr(spec, "name", None) == "monai.bundle.__main__"


def end_distributed_run() -> None:
    """The ``finalize`` step of ``multi_gpu_train.json``: wait for every rank, destroy the process group, and, in a
    ``torchrun`` worker running ``python -m monai.bundle``, end the process without interpreter teardown.

    Why: ``destroy_process_group`` does not stop the gloo backend's threads while DistributedDataParallel's C++
    reducer still holds the group, so the group is destroyed only when the interpreter tears down its objects at exit.
    There a backend thread can still reach for the GIL and the worker aborts ("terminate called without an active
    exception", SIGABRT) after a successful run, which fails the whole ``torchrun`` job (seen rarely in the
    2-process CPU test, ``tests/bundles/test_multi_gpu.py``, under load). So the worker does what a normal exit does first
    (join the non-daemon threads, run the ``atexit`` handlers, e.g. logging's final flush), flushes stdout and
    stderr, and exits with status 0 before the teardown. Anywhere else (a Python session, a test, a notebook) this
    only destroys the process group and returns.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    if not (_is_bundle_cli_process() and "TORCHELASTIC_RUN_ID" in os.environ):
        return
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # the handlers a normal exit would run, while the interpreter is whole
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)
