"""Ignite handlers the bundles need beyond MONAI's.

- :class:`ResumableCheckpoint`: saves the whole training state to one fixed file after every epoch (atomically) and
  resumes from it when training starts again, so an interrupted run picks up where it stopped.
- :class:`CaseProgressLogger`: one log line per finished case of an inference or evaluation run, with an ETA.
- :class:`RegionMetricsWriter`: writes the per-case values that MONAI's metric handlers already computed
  (``engine.state.metric_details``) as one CSV with named regions, plus a mean row, and logs the means.
- :class:`GroupedOverlapMetricsWriter`: Dice, IoU, precision and recall per group of 2D slices (a patient, an image),
  pooled over every slice of the group, empty ones included, written as one CSV with a mean row.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader

from custom_nets.data.naming import case_names_from_batch
from custom_nets.flags import as_flag
from custom_nets.inference.io import atomic_write

__all__ = [
    "CaseProgressLogger",
    "FinalModelSaver",
    "GroupedOverlapMetricsWriter",
    "RegionMetricsWriter",
    "ResumableCheckpoint",
]

logger = logging.getLogger(__name__)

class CaseProgressLogger:
    """Log ``[i/n] <case> (s) ETA hh:mm:ss`` after every batch of an evaluator, so long inference shows progress.

    Args:
        batch_transform: maps ``engine.state.batch`` to the case names; by default read from the image metadata.
    """

    def __init__(self, batch_transform: Callable[[Any], list[str]] = case_names_from_batch) -> None:
        self.batch_transform = batch_transform
        self._start = 0.0
        self._last = 0.0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._log)

    def _started(self, engine: Engine) -> None:
        self._start = self._last = time.perf_counter()

    def _log(self, engine: Engine) -> None:
        now = time.perf_counter()
        done, total = engine.state.iteration - (engine.state.epoch - 1) * engine.state.epoch_length, engine.state.epoch_length
        remaining = (now - self._start) / max(done, 1) * (total - done) if total else 0.0
        names = ", ".join(self.batch_transform(engine.state.batch))
        eta = time.strftime("%H:%M:%S", time.gmtime(remaining))
        logger.info(f"[{done}/{total}] {names} ({now - self._last:.1f} s) ETA {eta}")
        self._last = now


class ResumableCheckpoint:
    """Save ``save_dict`` to ``save_dir/filename`` after every epoch; load it when the trainer starts, if present.

    The file is written to a temporary name and renamed, so an interruption never leaves a truncated checkpoint.
    Loading is done by MONAI's :class:`~monai.handlers.CheckpointLoader` (``weights_only`` loading), so the trainer
    continues from the saved epoch with the saved optimizer, scheduler and AMP scaler states.

    Args:
        save_dir: folder of the checkpoint (created if missing).
        save_dict: objects with ``state_dict``/``load_state_dict``, e.g. ``{"model": net, "optimizer": opt}``; the
            engine the handler is attached to is added as ``"trainer"`` (so that the epoch count is restored, and
            configs need not reference the trainer from its own handler list).
        resume: whether to load an existing checkpoint at start (a bool, or a command-line spelling such as
            ``"false"``: :func:`custom_nets.flags.as_flag`).
        filename: checkpoint file name.
        map_location: device for loading.
        enabled: ``False`` turns the handler off (multi-GPU: only rank 0 saves).
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        save_dict: Mapping[str, Any],
        resume: bool = True,
        filename: str = "checkpoint_last.pt",
        map_location: Any = None,
        enabled: bool = True,
    ) -> None:
        self.path = Path(save_dir) / filename
        self.save_dict = {k: v for k, v in save_dict.items() if v is not None}
        self.resume = as_flag(resume, "resume")
        self.map_location = map_location
        self.enabled = as_flag(enabled, "enabled")

    def attach(self, engine: Engine) -> None:
        self.save_dict.setdefault("trainer", engine)
        if self.resume and self.path.is_file():
            load_dict = dict(self.save_dict)
            finished = self._finished_epochs(engine)
            if finished is not None and "model" in load_dict:
                # resuming a finished run would train nothing (MONAI Label's repeated training requests did exactly
                # that): start a new run of max_epochs from the last weights, with a fresh optimizer and epoch count
                logger.info(f"{self.path} is from a finished run ({finished} epochs): starting a new run of "
                            f"{engine.state.max_epochs} epochs from its model weights")
                load_dict = {"model": load_dict["model"]}
            else:
                logger.info(f"resuming training from {self.path}")
            CheckpointLoader(load_path=str(self.path), load_dict=load_dict, map_location=self.map_location).attach(engine)
        if self.enabled:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)

    def _finished_epochs(self, engine: Engine) -> int | None:
        """The saved run's epoch count when it already reached this run's ``max_epochs``, else None."""
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True).get("trainer", {})
        except Exception as error:  # noqa: BLE001 - CheckpointLoader reports an unreadable file with its own error
            logger.debug(f"could not peek at {self.path}: {error}")
            return None
        epoch = saved.get("epoch")
        if epoch is None and saved.get("epoch_length"):
            epoch = int(saved.get("iteration", 0)) // int(saved["epoch_length"])
        max_epochs = engine.state.max_epochs
        return int(epoch) if epoch is not None and max_epochs is not None and int(epoch) >= max_epochs else None

    def save(self, engine: Engine) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {}
        for key, obj in self.save_dict.items():
            module = getattr(obj, "module", obj) if isinstance(obj, torch.nn.parallel.DistributedDataParallel) else obj
            state[key] = module.state_dict()
        atomic_write(self.path, lambda tmp: torch.save(state, tmp))


class FinalModelSaver:
    """Save the network as ``save_dir/filename`` when a run ends without having written that file itself.

    ``models/model.pt`` is the best validated model (MONAI's ``CheckpointSaver`` on the key metric). A run with fewer
    epochs than ``val_interval`` (MONAI Label's short training requests, a quick test) validates never and would leave
    the previous weights in place, so inference and MONAI Label would silently keep using them. This handler then
    writes the final weights there instead (atomically) and says so; a run that validated keeps its best model.

    Args:
        save_dir: folder of the model file.
        network: the trained network (a ``DistributedDataParallel`` wrapper is unwrapped).
        filename: the model file that inference loads.
        enabled: ``False`` turns the handler off (multi-GPU: only rank 0 saves).
    """

    def __init__(self, save_dir: str | os.PathLike, network: torch.nn.Module, filename: str = "model.pt",
                 enabled: bool = True) -> None:
        self.path = Path(save_dir) / filename
        self.network = network
        self.enabled = as_flag(enabled, "enabled")
        self._started = 0.0

    def attach(self, engine: Engine) -> None:
        if self.enabled:
            engine.add_event_handler(Events.STARTED, self._start)
            engine.add_event_handler(Events.COMPLETED, self._complete)

    def _start(self, engine: Engine) -> None:
        self._started = time.time()

    def _complete(self, engine: Engine) -> None:
        if self.path.is_file() and self.path.stat().st_mtime >= self._started:
            return
        module = getattr(self.network, "module", self.network)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, lambda tmp: torch.save(module.state_dict(), tmp))
        logger.info(f"no validation in this run: saved the final weights as {self.path}")


class RegionMetricsWriter:
    """Write per-case, per-region metrics to ``output_dir/filename`` (CSV) and log their means.

    It reads the details MONAI's metric handlers store in ``engine.state.metric_details`` (one ``(cases, regions)``
    array per metric, for handlers created with ``save_details=True``) and the case names of every batch.

    Args:
        output_dir: folder of the CSV (created if missing).
        metric_names: the names under which the metric handlers were registered, e.g. ``["dice", "hd95"]``.
        region_names: one name per channel, e.g. ``["TC", "WT", "ET"]``.
        filename: the CSV name.
        batch_transform: maps ``engine.state.batch`` to the case names; by default read from the image metadata.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        metric_names: Sequence[str],
        region_names: Sequence[str],
        filename: str = "metrics.csv",
        batch_transform: Callable[[Any], list[str]] = case_names_from_batch,
    ) -> None:
        self.output_path = Path(output_dir) / filename
        self.metric_names = list(metric_names)
        self.region_names = list(region_names)
        self.batch_transform = batch_transform
        self._cases: list[str] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: self._cases.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect_cases)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def _collect_cases(self, engine: Engine) -> None:
        self._cases.extend(self.batch_transform(engine.state.batch))

    def columns(self) -> list[str]:
        return [f"{metric}_{region}" for metric in self.metric_names for region in self.region_names]

    def write(self, engine: Engine) -> None:
        details = engine.state.metric_details
        rows = [[] for _ in self._cases]
        for metric in self.metric_names:
            if metric not in details:
                raise KeyError(f"metric '{metric}' has no details; create its handler with save_details=True")
            values = torch.as_tensor(details[metric]).float().reshape(len(self._cases), -1).cpu()
            if values.shape[1] != len(self.region_names):
                raise ValueError(f"metric '{metric}' has {values.shape[1]} channels, expected {len(self.region_names)}")
            for row, case_values in zip(rows, values.tolist()):
                row.extend(case_values)
        means = [_nanmean([row[i] for row in rows]) for i in range(len(self.columns()))]
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.output_path.with_name(f".{self.output_path.name}.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["case", *self.columns()])
            for case, row in zip(self._cases, rows):
                writer.writerow([case, *(_fmt(v) for v in row)])
            writer.writerow(["mean", *(_fmt(v) for v in means)])
        os.replace(tmp, self.output_path)
        summary = ", ".join(f"{name}={_fmt(v)}" for name, v in zip(self.columns(), means))
        logger.info(f"{len(self._cases)} cases; mean {summary}; per-case values in {self.output_path}")


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v) and not math.isinf(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"


class GroupedOverlapMetricsWriter:
    """Dice, IoU, precision and recall per group (patient, image, case), pooled over all the group's slices.

    Every batch adds its true positives, false positives and false negatives to its group's counts, per output
    channel; at the end of the run the metrics of each group come from its pooled counts. Slices with empty masks
    count like any other (a false positive on a tumour-free slice lowers the patient's Dice), and every group enters
    the mean: where a ratio is 0/0 (nothing to find and nothing predicted) it is 1, a perfect result.

    Args:
        output_dir: folder of the CSV (created if missing).
        group_key: the datalist key naming each item's group, e.g. ``"patient"`` or ``"case"``.
        class_names: one name per output channel.
        filename: the CSV name.
    """

    METRICS = ("dice", "iou", "precision", "recall")

    def __init__(
        self, output_dir: str | os.PathLike, group_key: str, class_names: Sequence[str], filename: str = "metrics.csv"
    ) -> None:
        self.output_path = Path(output_dir) / filename
        self.group_key = group_key
        self.class_names = list(class_names)
        self._counts: dict[str, torch.Tensor] = {}
        self._slices: dict[str, int] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._accumulate)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def _reset(self, engine: Engine) -> None:
        self._counts.clear()
        self._slices.clear()

    def _accumulate(self, engine: Engine) -> None:
        for source, item in zip(engine.state.batch, engine.state.output):
            group = str(source[self.group_key])
            pred = torch.as_tensor(item["pred"]).detach().bool().flatten(1)
            label = torch.as_tensor(item["label"]).detach().bool().flatten(1)
            counts = torch.stack([(pred & label).sum(1), (pred & ~label).sum(1), (~pred & label).sum(1)]).double().cpu()
            self._counts[group] = self._counts.get(group, torch.zeros_like(counts)) + counts
            self._slices[group] = self._slices.get(group, 0) + 1

    @staticmethod
    def scores(counts: torch.Tensor) -> dict[str, torch.Tensor]:
        """Metrics per channel from pooled ``(3, channels)`` counts of TP, FP, FN; 0/0 gives 1."""
        tp, fp, fn = counts

        def ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
            return torch.where(den > 0, num / den.clamp(min=1), torch.ones_like(num))

        return {
            "dice": ratio(2 * tp, 2 * tp + fp + fn),
            "iou": ratio(tp, tp + fp + fn),
            "precision": ratio(tp, tp + fp),
            "recall": ratio(tp, tp + fn),
        }

    def columns(self) -> list[str]:
        return [f"{metric}_{name}" for name in self.class_names for metric in self.METRICS]

    def write(self, engine: Engine) -> None:
        rows = []
        for group in sorted(self._counts):
            scores = self.scores(self._counts[group])
            rows.append([scores[m][c].item() for c in range(len(self.class_names)) for m in self.METRICS])
        means = [sum(col) / len(col) for col in zip(*rows)] if rows else []
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.output_path.with_name(f".{self.output_path.name}.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow([self.group_key, "slices", *self.columns()])
            for group, row in zip(sorted(self._counts), rows):
                writer.writerow([group, self._slices[group], *(_fmt(v) for v in row)])
            writer.writerow(["mean", sum(self._slices.values()), *(_fmt(v) for v in means)])
        os.replace(tmp, self.output_path)
        summary = ", ".join(f"{name}={_fmt(v)}" for name, v in zip(self.columns(), means))
        logger.info(f"{len(rows)} {self.group_key}s; mean {summary}; per-{self.group_key} values in {self.output_path}")
