"""Ignite handlers the bundles need beyond MONAI's.

- :class:`ResumableCheckpoint`: saves the whole training state to one fixed file after every epoch (atomically) and
  resumes from it when training starts again, so an interrupted run picks up where it stopped, with its best
  validation metric.
- :class:`BestModelSaver`, :class:`FinalModelSaver`: ``model.pt`` is the best validated model, also across resumes; a
  run that never validates keeps a validated ``model.pt`` and saves its final weights beside it. Each model file has a
  record (``model.json``: which epoch and metric, SHA-256), and the log says which model ``model.pt`` is.
- :class:`TrainingProgressLogger`: one log line per training epoch with the elapsed time and an ETA.
- :class:`CaseProgressLogger`: one log line per finished case of an inference or evaluation run, with an ETA.
- :class:`RegionMetricsWriter`: writes the per-case values that MONAI's metric handlers already computed
  (``engine.state.metric_details``) as one CSV with named regions, plus a mean row, and logs the means.
- :class:`GroupedOverlapMetricsWriter`: Dice, IoU, precision and recall per group of 2D slices (a patient, an image),
  pooled over every slice of the group, empty ones included, written as one CSV with a mean row.
"""

from __future__ import annotations

import json
import logging
import math
import operator
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader, ValidationHandler

from custom_nets.data.naming import case_names_from_batch
from custom_nets.files import file_sha256, write_csv_atomic, write_file_atomic
from custom_nets.flags import as_flag
from custom_nets.inference.io import torch_load_reason

__all__ = [
    "BestModelSaver",
    "CaseProgressLogger",
    "FinalModelSaver",
    "GroupedOverlapMetricsWriter",
    "PeriodicValidation",
    "RegionMetricsWriter",
    "ResumableCheckpoint",
    "ResumeError",
    "TrainingProgressLogger",
    "model_record",
    "save_model_file",
]

logger = logging.getLogger(__name__)

class CaseProgressLogger:
    """Log ``[i/n] <case> (s) ETA h:mm:ss`` after every batch of an evaluator, so long inference shows progress.

    ``n`` is the epoch length, or the data's ``__length_hint__`` when the engine has none (an
    :class:`~custom_nets.isolation.IsolatedLoader`, which skips failed cases); ``?`` when neither is known.

    Args:
        batch_transform: maps ``engine.state.batch`` to the case names; by default read from the image metadata.
    """

    def __init__(self, batch_transform: Callable[[Any], list[str]] = case_names_from_batch) -> None:
        self.batch_transform = batch_transform
        self._start = 0.0
        self._last = 0.0
        self._first_iteration = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._log)

    def _started(self, engine: Engine) -> None:
        self._start = self._last = time.perf_counter()
        self._first_iteration = engine.state.iteration

    def _log(self, engine: Engine) -> None:
        now = time.perf_counter()
        done = engine.state.iteration - self._first_iteration
        total = engine.state.epoch_length or operator.length_hint(engine.state.dataloader, 0)
        names = ", ".join(self.batch_transform(engine.state.batch))
        eta = f" ETA {_eta(now - self._start, done, total - done)}" if total else ""
        logger.info(f"[{done}/{total or '?'}] {names} ({now - self._last:.1f} s){eta}")
        self._last = now


class ResumeError(RuntimeError):
    """A training run cannot continue from its checkpoint (unreadable, or from another network); one-line message."""


def model_record_path(path: str | os.PathLike) -> Path:
    """The record beside a model file: ``models/model.pt`` -> ``models/model.json``."""
    return Path(path).with_suffix(".json")


def model_record(path: str | os.PathLike) -> dict | None:
    """What the record beside ``path`` says about the file now there (None: no record, or it describes other bytes).

    The record holds the file's SHA-256, so a record that does not match the file is never believed. It keeps the
    description of the file it replaced as ``previous``, so a kill between writing the record and renaming the file
    into place leaves the old file still described.
    """
    path = Path(path)
    try:
        record = json.loads(model_record_path(path).read_text(encoding="utf-8"))
        digest = file_sha256(path)
    except (OSError, ValueError):
        return None
    for entry in (record, record.get("previous") or {}):
        if isinstance(entry, dict) and entry.get("sha256") == digest:
            return {k: v for k, v in entry.items() if k != "previous"}
    return None


def save_model_file(path: str | os.PathLike, network: torch.nn.Module, **record: Any) -> dict:
    """Save ``network``'s state dict (a plain state dict, as inference and ``ckpt_export`` load) and its record.

    Both are written atomically: the weights to a temporary name, then the record (with the weights' SHA-256 and the
    previous record), then the weights renamed into place. Returns the record.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = getattr(network, "module", network)
    state = module.state_dict()
    previous = model_record(path)
    entry = {"file": path.name, **record, "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    def write(tmp: Path) -> None:
        torch.save(state, tmp)
        entry["sha256"] = file_sha256(tmp)
        text = json.dumps({**entry, "previous": previous}, indent=2) + "\n"
        write_file_atomic(model_record_path(path), lambda t: t.write_text(text, encoding="utf-8"))

    write_file_atomic(path, write)
    return entry


def describe_model(record: dict | None) -> str:
    """``epoch 16, val_mean_dice 0.7176 (validated)`` or ``final weights of a 3-epoch run (not validated)``."""
    if record is None:
        return "of unknown origin (no matching model record)"
    if record.get("kind") == "validated" and isinstance(record.get("metric"), (int, float)):
        metric = f"{record.get('metric_name')} {record.get('metric'):.4f}"
        return f"the validated model of epoch {record.get('epoch')}, {metric}"
    return f"the final weights of a {record.get('epoch')}-epoch run (not validated)"


class _ValidationState:
    """The best-metric bookkeeping of a MONAI evaluator (``best_metric``, ``best_metric_epoch``) and the training
    run's id, as a ``state_dict``/``load_state_dict`` object, so :class:`ResumableCheckpoint` saves and restores it."""

    def __init__(self, validator: Engine) -> None:
        self.validator = validator

    def state_dict(self) -> dict:
        state = self.validator.state
        best = getattr(state, "best_metric", -1)
        return {
            "run": getattr(state, "training_run", None),
            "metric_name": getattr(state, "key_metric_name", None),
            "best_metric": float(best.item() if hasattr(best, "item") else best),
            "best_metric_epoch": int(getattr(state, "best_metric_epoch", -1)),
        }

    def load_state_dict(self, saved: Mapping[str, Any]) -> None:
        state = self.validator.state
        state.training_run = saved.get("run") or state.training_run
        state.best_metric = float(saved.get("best_metric", -1))
        state.best_metric_epoch = int(saved.get("best_metric_epoch", -1))


class ResumableCheckpoint:
    """Save ``save_dict`` to ``save_dir/filename`` after every epoch; load it when the trainer starts, if present.

    The file is written to a temporary name and renamed, so an interruption never leaves a truncated checkpoint.
    Loading is done by MONAI's :class:`~monai.handlers.CheckpointLoader` (``weights_only`` loading), so the trainer
    continues from the saved epoch with the saved optimizer, scheduler and AMP scaler states. With ``validator``, the
    checkpoint also carries the evaluator's best key metric and its epoch (and the run's id), so that a resumed run
    replaces ``model.pt`` (:class:`BestModelSaver`) only with a better model than the best one before the interruption.
    A checkpoint that cannot be resumed (unreadable, or from another network) stops the run with a one-line
    :class:`ResumeError` before anything is overwritten.

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
        validator: the evaluator whose best key metric is kept across resumes (MONAI's ``SupervisedEvaluator``).
        model_filename: the best model's file in ``save_dir`` (:class:`BestModelSaver`), to report and reconcile.
    """

    def __init__(
        self,
        save_dir: str | os.PathLike,
        save_dict: Mapping[str, Any],
        resume: bool = True,
        filename: str = "checkpoint_last.pt",
        map_location: Any = None,
        enabled: bool = True,
        validator: Engine | None = None,
        model_filename: str = "model.pt",
    ) -> None:
        self.path = Path(save_dir) / filename
        self.save_dict = {k: v for k, v in save_dict.items() if v is not None}
        self.resume = as_flag(resume, "resume")
        self.map_location = map_location
        self.enabled = as_flag(enabled, "enabled")
        self.validator = validator
        self.model_path = Path(save_dir) / model_filename
        if validator is not None:
            validator.state.training_run = uuid.uuid4().hex[:12]  # a new run, unless resumed below
            self.save_dict["validation"] = _ValidationState(validator)

    def attach(self, engine: Engine) -> None:
        self.save_dict.setdefault("trainer", engine)
        if self.resume and self.path.is_file():
            saved = self._peek()
            load_dict = {k: v for k, v in self.save_dict.items() if k in saved}
            self._check_fits(saved, load_dict)
            finished = self._finished_epochs(saved, engine)
            if finished is not None and "model" in load_dict:
                # resuming a finished run would train nothing (MONAI Label's repeated training requests did exactly
                # that): start a new run of max_epochs from the last weights, with a fresh optimizer and epoch count
                logger.info(f"{self.path} is from a finished run ({finished} epochs): starting a new run of "
                            f"{engine.state.max_epochs} epochs from its model weights")
                load_dict = {"model": load_dict["model"]}
            else:
                logger.info(f"resuming training from {self.path}")
            loader = CheckpointLoader(load_path=str(self.path), load_dict=load_dict, map_location=self.map_location)
            loader.attach(engine)
            if "validation" in load_dict:
                engine.add_event_handler(Events.STARTED, self._reconcile_best)
        if self.enabled:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)

    def _fail(self, problem: str) -> ResumeError:
        return ResumeError(f"cannot resume training from {self.path}: {problem}; start over with --resume False "
                           "(the file is then replaced) or move the file away")

    def _peek(self) -> dict:
        """The checkpoint's content (weights_only), or a one-line :class:`ResumeError`."""
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001 - any unreadable file is the same problem for the user
            raise self._fail(f"not a readable checkpoint ({torch_load_reason(error)})") from None
        if not isinstance(saved, dict) or "model" not in saved or "trainer" not in saved:
            keys = ", ".join(map(str, list(saved)[:5])) if isinstance(saved, dict) else type(saved).__name__
            raise self._fail(f"not a training checkpoint of these bundles (no 'model' and 'trainer'; found {keys})")
        return saved

    def _check_fits(self, saved: dict, load_dict: Mapping[str, Any]) -> None:
        """The saved model must fit the network (another network's checkpoint fails here, not mid-way)."""
        model = load_dict.get("model")
        if not isinstance(model, torch.nn.Module) or not isinstance(saved.get("model"), dict):
            return
        expected = {k: tuple(v.shape) for k, v in getattr(model, "module", model).state_dict().items()}
        found = {k: tuple(getattr(v, "shape", ())) for k, v in saved["model"].items()}
        if found.keys() != expected.keys() and {k.removeprefix("module.") for k in found} == expected.keys():
            found = {k.removeprefix("module."): v for k, v in found.items()}
        missing = sorted(expected.keys() - found.keys())
        unexpected = sorted(found.keys() - expected.keys())
        shapes = sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
        if missing or unexpected or shapes:
            parts = [f"{len(v)} {what} (e.g. {v[0]})" for what, v in
                     (("missing", missing), ("unexpected", unexpected), ("of another shape", shapes)) if v]
            raise self._fail("its model does not fit this network_def (" + ", ".join(parts) + "): it is from another "
                             "network or other network settings")

    def _finished_epochs(self, saved: dict, engine: Engine) -> int | None:
        """The saved run's epoch count when it already reached this run's ``max_epochs``, else None."""
        trainer = saved.get("trainer", {})
        epoch = trainer.get("epoch")
        if epoch is None and trainer.get("epoch_length"):
            epoch = int(trainer.get("iteration", 0)) // int(trainer["epoch_length"])
        max_epochs = engine.state.max_epochs
        return int(epoch) if epoch is not None and max_epochs is not None and int(epoch) >= max_epochs else None

    def _reconcile_best(self, engine: Engine) -> None:
        """After loading: a best model written after the last checkpoint (killed in between) still counts."""
        state = self.validator.state
        record = model_record(self.model_path)
        if (record and record.get("kind") == "validated" and record.get("run") == state.training_run
                and int(record.get("epoch", -1)) > state.best_metric_epoch):
            state.best_metric, state.best_metric_epoch = float(record["metric"]), int(record["epoch"])
        if state.best_metric_epoch > 0:
            logger.info(f"{self.model_path.name} is {describe_model(record)}; best so far in this run: epoch "
                        f"{state.best_metric_epoch}, {state.key_metric_name} {state.best_metric:.4f}")

    def save(self, engine: Engine) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        state = {}
        for key, obj in self.save_dict.items():
            module = getattr(obj, "module", obj) if isinstance(obj, torch.nn.parallel.DistributedDataParallel) else obj
            state[key] = module.state_dict()
        write_file_atomic(self.path, lambda tmp: torch.save(state, tmp))


class BestModelSaver:
    """Save the network as ``save_dir/filename`` whenever the evaluator's key metric reaches a new best.

    Attach it to the evaluator (MONAI's ``SupervisedEvaluator``, whose ``best_metric`` and ``best_metric_epoch`` it
    reads; they survive a resume through :class:`ResumableCheckpoint`). MONAI's ``CheckpointSaver`` keeps its best score
    to itself, so after a resume the first validation always counted as a new best; hence this handler. The file is a
    plain state dict (what inference and ``ckpt_export`` load), with a record beside it (``model.json``: epoch, metric,
    SHA-256; :func:`save_model_file`). Every validation logs which model the file is.

    Args:
        save_dir: folder of the model file.
        network: the trained network (a ``DistributedDataParallel`` wrapper is unwrapped).
        filename: the model file that inference loads.
    """

    def __init__(self, save_dir: str | os.PathLike, network: torch.nn.Module, filename: str = "model.pt") -> None:
        self.path = Path(save_dir) / filename
        self.network = network
        self._best_before: tuple[float, int] | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._remember_best)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._validated)

    def _remember_best(self, engine: Engine) -> None:
        self._best_before = (float(engine.state.best_metric), int(engine.state.best_metric_epoch))

    def _validated(self, engine: Engine) -> None:
        state = engine.state
        name = getattr(state, "key_metric_name", None)
        if name is None or name not in state.metrics:
            return
        if getattr(state, "training_run", None) is None:
            state.training_run = uuid.uuid4().hex[:12]
        current = float(state.metrics[name])
        # a new best: MONAI's evaluator updated best_metric/best_metric_epoch during this validation (comparing with
        # the epoch alone would take a resumed run's redone epoch for a new best)
        best, before = (float(state.best_metric), int(state.best_metric_epoch)), self._best_before or (0.0, -2)
        if best != before and not (math.isnan(best[0]) and best[1] == before[1]):  # NaN != NaN: not a new best
            save_model_file(self.path, self.network, kind="validated", epoch=int(state.epoch), metric_name=name,
                            metric=float(state.best_metric), run=state.training_run)
            logger.info(f"{name} {current:.4f} at epoch {state.epoch}: new best, saved as {self.path}")
        else:
            logger.info(f"{name} {current:.4f} at epoch {state.epoch}; {self.path.name} stays the model of epoch "
                        f"{state.best_metric_epoch} ({name} {float(state.best_metric):.4f})")


class FinalModelSaver:
    """When a run ends without having validated, keep its final weights without losing a validated model.

    ``models/model.pt`` is the best validated model (:class:`BestModelSaver`). A run with fewer epochs than
    ``val_interval`` (MONAI Label's short training requests, a quick test) never validates. Its final weights then go
    to ``model.pt`` if that file is missing or itself holds unvalidated final weights, and otherwise beside it as
    ``model_final.pt``: a validated model (or one of unknown origin) is never replaced by unvalidated weights. The log
    says which model ``model.pt`` is. Writes are atomic, with a record (:func:`save_model_file`).

    Args:
        save_dir: folder of the model file.
        network: the trained network (a ``DistributedDataParallel`` wrapper is unwrapped).
        filename: the model file that inference loads.
        enabled: ``False`` turns the handler off (multi-GPU: only rank 0 saves).
        final_filename: where the final weights go when ``filename`` holds a validated model.
    """

    def __init__(self, save_dir: str | os.PathLike, network: torch.nn.Module, filename: str = "model.pt",
                 enabled: bool = True, final_filename: str = "model_final.pt") -> None:
        self.path = Path(save_dir) / filename
        self.final_path = Path(save_dir) / final_filename
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
        epochs = int(engine.state.epoch)
        if self.path.is_file() and self.path.stat().st_mtime >= self._started:
            logger.info(f"{self.path} is {describe_model(model_record(self.path))}")
            return
        record = model_record(self.path) if self.path.is_file() else {"kind": "final"}
        if record is not None and record.get("kind") == "final":
            save_model_file(self.path, self.network, kind="final", epoch=epochs)
            logger.info(f"no validation in this run: saved the final weights as {self.path}")
            return
        save_model_file(self.final_path, self.network, kind="final", epoch=epochs)
        logger.warning(f"no validation in this run: saved the final weights as {self.final_path}; {self.path} "
                       f"stays {describe_model(record)} (copy {self.final_path.name} over it to use the new weights)")


class PeriodicValidation(ValidationHandler):
    """MONAI's epoch-level ``ValidationHandler`` that also validates after the last epoch when the interval skipped it.

    So every run that finishes has validated its final weights (a MONAI Label training request of fewer epochs than
    ``interval`` included), and :class:`BestModelSaver` decides whether they become ``model.pt``. Attach it before
    :class:`FinalModelSaver` (it runs first on ``COMPLETED``).
    """

    def __init__(self, validator: Any, interval: int, exec_at_start: bool = False) -> None:
        super().__init__(interval=interval, validator=validator, epoch_level=True, exec_at_start=exec_at_start)

    def attach(self, engine: Engine) -> None:
        super().attach(engine)
        engine.add_event_handler(Events.COMPLETED, self._final)

    def _final(self, engine: Engine) -> None:
        epoch = int(engine.state.epoch)
        if epoch > 0 and epoch % self.interval != 0:
            self.validator.run(epoch)


class TrainingProgressLogger:
    """Log ``epoch 3/50 done in 12.3 s (elapsed 0:00:37, ETA 0:08:50)`` after every training epoch.

    The ETA is the mean time of this run's epochs so far (validation included) times the epochs left.
    """

    def __init__(self) -> None:
        self._start = 0.0
        self._epoch_start = 0.0
        self._first_epoch = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._log)

    def _started(self, engine: Engine) -> None:
        self._start = time.perf_counter()
        self._first_epoch = int(engine.state.epoch)  # epochs already done by a resumed run

    def _epoch_started(self, engine: Engine) -> None:
        self._epoch_start = time.perf_counter()

    def _log(self, engine: Engine) -> None:
        now = time.perf_counter()
        epoch, total = int(engine.state.epoch), int(engine.state.max_epochs or 0)
        eta = _eta(now - self._start, epoch - self._first_epoch, total - epoch)
        logger.info(f"epoch {epoch}/{total} done in {now - self._epoch_start:.1f} s (elapsed "
                    f"{_clock(now - self._start)}, ETA {eta})")


def _clock(seconds: float) -> str:
    """``h:mm:ss`` (hours not wrapped at a day)."""
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _eta(elapsed: float, done: int, left: int) -> str:
    """The time ``left`` units take at this run's mean pace (``elapsed`` seconds for ``done`` units), as ``h:mm:ss``."""
    return _clock(elapsed / max(done, 1) * max(left, 0))


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
        write_csv_atomic(self.output_path, [["case", *self.columns()],
                                            *([case, *(_fmt(v) for v in row)] for case, row in zip(self._cases, rows)),
                                            ["mean", *(_fmt(v) for v in means)]])
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
        write_csv_atomic(self.output_path, [
            [self.group_key, "slices", *self.columns()],
            *([group, self._slices[group], *(_fmt(v) for v in row)] for group, row in zip(sorted(self._counts), rows)),
            ["mean", sum(self._slices.values()), *(_fmt(v) for v in means)],
        ])
        summary = ", ".join(f"{name}={_fmt(v)}" for name, v in zip(self.columns(), means))
        logger.info(f"{len(rows)} {self.group_key}s; mean {summary}; per-{self.group_key} values in {self.output_path}")
