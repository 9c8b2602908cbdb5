"""Ignite handlers of the UW-Madison GI tract bundles.

- :class:`CaseDayMetricsWriter`: stacks the evaluated slices of each case-day into a volume and writes per-class Dice,
  HD95 and normalised Hausdorff distance and the competition score per case-day, plus a mean row, as one CSV
  (definitions in :mod:`custom_nets.metrics_gi`).
- :class:`RLESubmissionWriter`: writes the thresholded predictions of an inference run as a competition-style CSV
  ``id,class,segmentation`` (run-length encoded, :func:`custom_nets.data.uwmadison.rle_encode`).

Both read the decollated batch (``engine.state.batch``, the datalist fields) next to the decollated output
(``engine.state.output``, ``"pred"`` and ``"label"`` after postprocessing), like
:class:`custom_nets.handlers.GroupedOverlapMetricsWriter`.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

from custom_nets.files import write_csv_atomic
from custom_nets.data.uwmadison import CLASSES, CSV_COLUMNS, masks_to_rle_rows
from custom_nets.data.uwmadison_bundle import DEFAULT_SLICE_THICKNESS, slice_id_from_path
from custom_nets.flags import as_flag
from custom_nets.metrics_gi import case_day_metrics

__all__ = ["CaseDayMetricsWriter", "RLESubmissionWriter"]

logger = logging.getLogger(__name__)


def _scalar(value: Any) -> Any:
    """A collated-then-decollated datalist value back as a Python scalar (strings pass unchanged)."""
    if isinstance(value, (str, int, float)):
        return value
    tensor = torch.as_tensor(value).reshape(-1)
    return tensor[0].item()


def _floats(value: Any) -> list[float]:
    if isinstance(value, (list, tuple)):
        return [float(_scalar(v)) for v in value]
    return [float(v) for v in torch.as_tensor(value).reshape(-1).tolist()]


def _binary(array: Any) -> np.ndarray:
    tensor = array.as_tensor() if hasattr(array, "as_tensor") else torch.as_tensor(array)
    return tensor.detach().cpu().numpy() > 0


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else float("nan")


class CaseDayMetricsWriter:
    """Per case-day Dice, HD95, normalised Hausdorff distance and competition score, written as one CSV.

    Every evaluated slice (``pred`` and ``label``, ``(C, W, H)`` binary, each at the slice's original size) is kept
    until the next case-day starts; the slices of the finished case-day are then ordered by slice number and stacked
    into ``(C, W, H, slices)`` volumes and scored by :func:`custom_nets.metrics_gi.case_day_metrics` with the spacing
    ``(sx, sy, slice_thickness)`` (``sx, sy`` from the datalist's ``spacing``). So the datalist must list the slices
    of a case-day together (as :func:`custom_nets.convert.uwmadison.uwmadison_datalist` does, sorted by case, day and
    slice); a case-day that reappears later is an error.

    CSV ``output_dir/filename``: ``case_day, slices, dice_<class>..., hd95_<class>... (mm), nhd_<class>...,
    score``, one row per case-day and a ``mean`` row (HD95 means leave out the undefined, ``nan``, values: exactly one
    of prediction and ground truth empty).

    Args:
        output_dir: folder of the CSV (created if missing).
        class_names: one name per output channel.
        slice_thickness: slice spacing in mm (3 for the UW-Madison scans; not stored in their file names).
        filename: CSV name.
        case_key, day_key, slice_key, spacing_key: datalist fields naming the case, day, slice number and in-plane
            spacing ``(sx, sy)`` of each slice.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        class_names: Sequence[str] = CLASSES,
        slice_thickness: float = DEFAULT_SLICE_THICKNESS,
        filename: str = "metrics.csv",
        case_key: str = "case",
        day_key: str = "day",
        slice_key: str = "slice",
        spacing_key: str = "spacing",
    ) -> None:
        if not slice_thickness > 0:
            raise ValueError(f"slice_thickness must be positive (mm), got {slice_thickness}")
        self.output_path = Path(output_dir) / filename
        self.class_names = list(class_names)
        self.slice_thickness = float(slice_thickness)
        self.keys = (case_key, day_key, slice_key, spacing_key)
        self.rows: list[tuple[str, int, dict[str, Any]]] = []
        self._current: tuple[str, int] | None = None
        self._slices: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._spacing: list[float] = []
        self._done: set[tuple[str, int]] = set()

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._accumulate)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def _reset(self, engine: Engine | None = None) -> None:
        self.rows = []
        self._current = None
        self._slices = []
        self._done = set()

    def _accumulate(self, engine: Engine) -> None:
        case_key, day_key, slice_key, spacing_key = self.keys
        for source, item in zip(engine.state.batch, engine.state.output):
            key = (str(_scalar(source[case_key])), int(_scalar(source[day_key])))
            if key != self._current:
                self._flush()
                if key in self._done:
                    raise ValueError(
                        f"slices of {key[0]} day {key[1]} arrive after those of other case-days; the datalist must "
                        "list each case-day's slices together (sorted by case, day and slice)"
                    )
                self._current = key
                self._spacing = _floats(source[spacing_key])[:2]
            pred, label = _binary(item["pred"]), _binary(item["label"])
            if pred.shape != label.shape:
                raise ValueError(
                    f"{key[0]} day {key[1]} slice {_scalar(source[slice_key])}: prediction {pred.shape} and label "
                    f"{label.shape} differ; the postprocessing must restore the slice's size (Invertd)"
                )
            self._slices.append((int(_scalar(source[slice_key])), pred, label))

    def _flush(self) -> None:
        if self._current is None or not self._slices:
            return
        self._slices.sort(key=lambda s: s[0])
        shapes = {s[1].shape for s in self._slices}
        if len(shapes) > 1:
            case, day = self._current
            raise ValueError(f"{case} day {day} has slices of different sizes {sorted(shapes)}")
        pred = np.stack([s[1] for s in self._slices], axis=-1)
        label = np.stack([s[2] for s in self._slices], axis=-1)
        spacing = [*self._spacing, self.slice_thickness]
        metrics = case_day_metrics(pred, label, spacing, self.class_names)
        case, day = self._current
        self.rows.append((f"{case}_day{day}", len(self._slices), metrics))
        self._done.add(self._current)
        self._current = None
        self._slices = []

    def columns(self) -> list[str]:
        names = [f"{metric}_{name}" for metric in ("dice", "hd95", "nhd") for name in self.class_names]
        return [*names, "score"]

    @staticmethod
    def _values(metrics: dict[str, Any]) -> list[float]:
        return [*metrics["dice"], *metrics["hd95"], *metrics["nhd"], metrics["score"]]

    def write(self, engine: Engine | None = None) -> None:
        self._flush()
        values = [self._values(m) for _, _, m in self.rows]
        means = [_nanmean(column) for column in zip(*values)] if values else [float("nan")] * len(self.columns())
        rows = [[name, n, *(_fmt(v) for v in vals)] for (name, n, _), vals in zip(self.rows, values)]
        rows.append(["mean", sum(n for _, n, _ in self.rows), *(_fmt(v) for v in means)])
        write_csv_atomic(self.output_path, [["case_day", "slices", *self.columns()], *rows])
        summary = ", ".join(f"{name}={_fmt(v)}" for name, v in zip(self.columns(), means))
        logger.info(f"{len(self.rows)} case-days; mean {summary}; per case-day values in {self.output_path}")


class RLESubmissionWriter:
    """Write the thresholded predictions as a competition-style CSV ``id,class,segmentation`` (one row per slice
    and class, in datalist order; an empty ``segmentation`` where a class is absent).

    The run-length strings number the pixels row by row over ``(height, width)`` (starts 1-indexed), the Kaggle
    convention; predictions of slices loaded by MONAI's ``PILReader`` are ``(C, width, height)`` arrays, hence the
    default ``spatial_order="wh"``. The slice id comes from the datalist field ``id_key`` (or, if missing, from the
    image file name, :func:`custom_nets.data.uwmadison_bundle.slice_id_from_path`).

    Args:
        output_dir: folder of the CSV (created if missing).
        class_names: class of each prediction channel.
        filename: CSV name.
        id_key: datalist field holding the slice id.
        spatial_order: ``"wh"`` (MONAI ``PILReader`` arrays) or ``"hw"``.
        enabled: ``False`` (or the text ``"false"``, see :func:`custom_nets.flags.as_flag`) attaches nothing (the
            bundles switch the CSV on with ``--write_rle true``).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        class_names: Sequence[str] = CLASSES,
        filename: str = "submission.csv",
        id_key: str = "id",
        spatial_order: str = "wh",
        enabled: bool | str = True,
    ) -> None:
        self.output_path = Path(output_dir) / filename
        self.class_names = list(class_names)
        self.id_key = id_key
        self.spatial_order = spatial_order
        self.enabled = as_flag(enabled, "write_rle (RLE submission CSV enabled)")
        self.rows: list[tuple[str, str, str]] = []

    def attach(self, engine: Engine) -> None:
        if not self.enabled:
            return
        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: self.rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def _collect(self, engine: Engine) -> None:
        for source, item in zip(engine.state.batch, engine.state.output):
            slice_id = source.get(self.id_key)
            if slice_id is None:
                meta = getattr(item["pred"], "meta", {}) or {}
                slice_id = slice_id_from_path(str(meta.get("filename_or_obj", "unknown")))
            mask = _binary(item["pred"]).astype(np.uint8)
            self.rows.extend(masks_to_rle_rows(str(slice_id), mask, self.class_names, self.spatial_order))

    def write(self, engine: Engine | None = None) -> None:
        write_csv_atomic(self.output_path, [list(CSV_COLUMNS), *self.rows])
        slices = len(self.rows) // max(len(self.class_names), 1)
        logger.info(f"{len(self.rows)} rows ({slices} slices) in {self.output_path}")
