"""The batch loop: read ahead in background threads, segment, write, record every case in ``summary.csv``.

Each case runs on its own: a case that fails (unreadable input, wrong channels, an error in the network) is recorded as
``failed`` with a one-line error naming the file and the problem, and the batch goes on. A case whose output files
(the label map and every optional output asked for: probabilities, uncertainty, statistics) already exist is
``skipped`` (unless ``overwrite``), so a re-run after an interruption does only the missing ones; outputs are written
atomically, so an existing output is always a finished one.

Three stages overlap: the read-ahead threads (``workers``) read the next cases and run the bundle's preprocessing on
them, the main thread runs the network (sliding window, TTA, activation) on the current case, and one writer thread
finishes the postprocessing of the previous case (``Invertd``, threshold, labels), counts its labels, draws its preview
and writes its label map atomically. With ``workers=0`` everything runs in turn in the calling thread.

Memory stays flat over many cases: at most ``workers + 2`` cases are in memory (those read ahead, the one in the
network and the one being written), and nothing of a finished case is kept but its row of the summary.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import logging
import os
import re
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from custom_nets.files import file_sha256, remove_stale_partials, write_csv_atomic

from .discovery import OUTPUT_TYPES, SUMMARY_HEADER, Case
from .errors import CaseError, OutputError, one_line
from .io import (
    MIN_FREE_BYTES,
    LoadedCase,
    check_output_folder,
    count_labels,
    needs_itk,
    read_case,
    read_label_counts,
    to_meta_tensor,
    warm_up_itk,
    write_label_map,
)

__all__ = ["CaseResult", "RunOptions", "SummaryWriter", "output_path", "run_provenance", "segment_cases"]

logger = logging.getLogger(__name__)

SUMMARY_NAME = "summary.csv"
TIMING_KEYS = ("read", "pre", "network", "post", "write")  # summary.csv columns read_s, pre_s, ... (seconds)
PREVIEW_FOLDER = "preview"
PROVENANCE_KEYS = ("model_sha256", "bundle_version", "settings")  # summary.csv columns: what made each output
_VOLUME_COLUMN = re.compile(r"^label_-?\d+_(ml|pixels)$")  # SummaryWriter.column


@dataclass
class RunOptions:
    """Options of :func:`segment_cases` (see ``scripts/segment.py --help``)."""

    overwrite: bool = False
    workers: int = 1
    tta: bool = False
    preview: bool = False
    verbose: bool = False
    progress: bool = True
    allow_resample: bool = False  # resample a channel on another grid onto the first one (noted in the summary)
    settings: Mapping[str, Any] = field(default_factory=dict)  # more result-changing settings to record (backend...)
    free_bytes_needed: int = MIN_FREE_BYTES  # free space the output folder needs to go on after a failed write
    probabilities: str | None = None  # also write <case>_probabilities.*: "nifti" (3D), "npz" or "auto"
    uncertainty: bool = False  # also write <case>_uncertainty.* and the TTA scores (implies tta)
    statistics: bool = False  # also write <case>_statistics.json and its summary.csv columns


@dataclass
class CaseResult:
    """One row of ``summary.csv``. ``counts``: voxels per label value; ``voxel_mm3``: volume of a voxel (1 in 2D)."""

    case: str
    status: str
    seconds: float = 0.0
    error: str = ""
    counts: dict[int, int] | None = None
    voxel_mm3: float = 1.0
    timings: dict[str, float] = field(default_factory=dict)
    cells: dict[str, str] | None = None  # label columns carried over from an earlier summary.csv (skipped cases)
    note: str = ""  # what was done to the input (a resampled channel)
    provenance: dict[str, str] = field(default_factory=dict)  # model and settings that made the output
    output_error: bool = False  # failed while writing to the output folder (not in summary.csv)
    extra: dict[str, str] = field(default_factory=dict)  # columns of --uncertainty and --statistics


@dataclass
class _ReadOutcome:
    loaded: LoadedCase | None  # the case as read (geometry; image None once preprocessed; notes)
    error: str
    seconds: float  # reading
    prepared: dict | None = None  # the bundle's preprocessing output (segmenters with prepare())
    shown: np.ndarray | None = None  # the image for the preview
    pre_seconds: float = 0.0
    image: np.ndarray | None = None  # the image as read, for --statistics


class SummaryWriter:
    """``summary.csv``: case, status, seconds, error, one column per label value, the time split, a note, and what
    made each output (checkpoint SHA-256, bundle version, settings); rewritten atomically.

    3D bundles get ``label_<value>_ml`` columns (voxel count x voxel volume / 1000), 2D bundles ``label_<value>_pixels``.
    Label values come from the bundle's metadata; values found in outputs but not declared get columns too.
    """

    def __init__(self, path: str | os.PathLike, label_values: Iterable[int], spatial_dims: int,
                 min_interval: float = 2.0) -> None:
        self.path = Path(path)
        self.values = sorted({int(v) for v in label_values})
        self.spatial_dims = spatial_dims
        self.rows: list[CaseResult] = []
        self.extra_columns: list[str] = []  # --uncertainty and --statistics columns, after the others
        self.min_interval = min_interval
        self._last_write = float("-inf")

    def previous_rows(self) -> dict[str, dict[str, str]]:
        """Rows of the ``summary.csv`` an earlier run left (empty if there is none or it cannot be read)."""
        try:
            with open(self.path, newline="", encoding="utf-8") as f:
                return {row["case"]: row for row in csv.DictReader(f) if row.get("case")}
        except (OSError, csv.Error, KeyError, UnicodeDecodeError):
            return {}

    def column(self, value: int) -> str:
        return f"label_{value}_ml" if self.spatial_dims == 3 else f"label_{value}_pixels"

    def add(self, result: CaseResult) -> None:
        for value in (result.counts or {}):
            if value not in self.values:
                logger.warning(f"{result.case}: label value {value} is not in the bundle's metadata label_values")
                self.values = sorted({*self.values, value})
        self.extra_columns += [c for c in result.extra if c not in self.extra_columns]
        self.rows.append(result)

    def _cells(self, result: CaseResult) -> list[str]:
        cells = [result.case, result.status, f"{result.seconds:.2f}", result.error]
        for value in self.values:
            if result.cells is not None:
                cells.append(result.cells.get(self.column(value), ""))
            elif result.counts is None:
                cells.append("")
            elif self.spatial_dims == 3:
                cells.append(f"{result.counts.get(value, 0) * result.voxel_mm3 / 1000.0:.3f}")
            else:
                cells.append(str(result.counts.get(value, 0)))
        cells += [f"{result.timings[k]:.3f}" if k in result.timings else "" for k in TIMING_KEYS]
        cells += [result.note, *(result.provenance.get(k, "") for k in PROVENANCE_KEYS)]
        cells += [result.extra.get(c, "") for c in self.extra_columns]
        return cells

    def extra_cells(self, row: Mapping[str, str]) -> dict[str, str]:
        """The cells of an earlier ``summary.csv`` row beyond this writer's own columns (kept for skipped cases)."""
        own = {*SUMMARY_HEADER.split(","), *(f"{k}_s" for k in TIMING_KEYS), "note", *PROVENANCE_KEYS}
        return {k: v for k, v in row.items() if k and k not in own and not _VOLUME_COLUMN.match(k) and v is not None}

    def write(self) -> None:
        header = [*SUMMARY_HEADER.split(","), *(self.column(v) for v in self.values), *(f"{k}_s" for k in TIMING_KEYS),
                  "note", *PROVENANCE_KEYS, *self.extra_columns]
        write_csv_atomic(self.path, [header, *(self._cells(row) for row in sorted(self.rows, key=lambda r: r.case))])
        self._last_write = time.monotonic()

    def write_soon(self) -> None:
        """Write unless the last write was less than ``min_interval`` seconds ago (many small cases)."""
        if time.monotonic() - self._last_write >= self.min_interval:
            self.write()


def output_path(output_dir: Path, case: Case) -> Path:
    """``output_dir/<case><ext>``, checked to stay inside ``output_dir``."""
    path = output_dir / case.output_name
    if path.resolve().parent != output_dir.resolve():
        raise CaseError(f"unsafe case name {case.name!r}")
    return path


def current_rss_mb() -> float | None:
    """Resident memory of this process in MiB (Linux ``/proc``), or None where unavailable."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _error_text(case: Case, exc: BaseException) -> str:
    """A one-line message naming the input file(s) and the problem."""
    if isinstance(exc, CaseError) and exc.path:
        return one_line(exc)
    if not isinstance(exc, CaseError):  # a bundle transform's own error, not MONAI's "applying transform <...>"
        from custom_nets.isolation import innermost_error

        exc = innermost_error(exc)
    message = str(exc) if isinstance(exc, CaseError) else f"{type(exc).__name__}: {exc}"
    return one_line(f"{case.describe()}: {message}")


def _read(case: Case, segmenter: Any, preview: bool = False, allow_resample: bool = False,
          keep_image: bool = False) -> _ReadOutcome:
    """Read one case and run the bundle's preprocessing on it (in a read-ahead thread). Never raises.

    Preprocessing runs here, overlapped with the network of the previous case, when the segmenter has ``prepare``.
    ``keep_image``: keep a copy of the image as read (``outcome.image``, for ``--statistics``).
    """
    start = time.perf_counter()
    try:
        loaded = read_case(case, segmenter.spec, segmenter.reader_2d, allow_resample=allow_resample)
    except Exception as exc:  # noqa: BLE001 - every failure is a per-case error
        return _ReadOutcome(None, _error_text(case, exc), time.perf_counter() - start)
    outcome = _ReadOutcome(loaded, "", time.perf_counter() - start)
    if preview:
        outcome.shown = loaded.image[:1].copy() if loaded.geometry.spatial_dims == 3 else loaded.image.copy()
    if keep_image:  # a copy: the preprocessing may work in place on the array it is given
        outcome.image = loaded.image.copy()
    if not hasattr(segmenter, "prepare"):
        return outcome
    start = time.perf_counter()
    try:
        # hand the pixels over without keeping a reference, so they are freed after preprocessing
        holder = [to_meta_tensor(loaded)]
        loaded.image = None
        outcome.prepared = segmenter.prepare(holder.pop())
    except Exception as exc:  # noqa: BLE001
        outcome.loaded = None
        outcome.error = _error_text(case, exc)
    outcome.pre_seconds = time.perf_counter() - start
    return outcome


def _prefetch(cases: Sequence[Case], read: Callable[[Case], _ReadOutcome], workers: int
              ) -> Iterator[tuple[Case, _ReadOutcome, float]]:
    """``(case, outcome, seconds waited)`` in order; ``workers`` cases are read ahead while one is being processed."""
    if workers <= 0:
        for case in cases:
            outcome = read(case)
            yield case, outcome, outcome.seconds
            del outcome
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="segment-read")
    try:
        todo = iter(cases)
        pending = deque((case, pool.submit(read, case)) for case in itertools.islice(todo, workers))
        while pending:
            case, future = pending.popleft()
            following = next(todo, None)
            if following is not None:
                pending.append((following, pool.submit(read, following)))
            start = time.perf_counter()
            outcome = future.result()
            waited = time.perf_counter() - start
            del future
            yield case, outcome, waited
            del outcome
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _existing_result(case: Case, path: Path, previous: Mapping[str, str] | None, columns: Sequence[str]
                     ) -> CaseResult:
    """A ``skipped`` row with the volumes of the label map written by an earlier run (blank if unreadable).

    The volumes come from the earlier run's ``summary.csv`` row when it has them all, else from the file.
    """
    if previous and previous.get("status") in ("ok", "skipped") and all(previous.get(c) for c in columns):
        return CaseResult(case.name, "skipped", cells={c: previous[c] for c in columns})
    try:
        counts, voxel = read_label_counts(path)
        return CaseResult(case.name, "skipped", counts=counts, voxel_mm3=voxel)
    except Exception as exc:  # noqa: BLE001
        logger.warning(f"{path}: cannot read the existing output for the summary ({type(exc).__name__}: {exc})")
        return CaseResult(case.name, "skipped")


@dataclass
class _Computed:
    """A segmented case waiting to be finished and written (by the background writer)."""

    case: Case
    target: Path
    geometry: Any
    shown: np.ndarray | None
    timings: dict[str, float]
    seconds: float
    inferred: dict | None = None  # segmenters with finish(): the network output, postprocessing still to do
    label: np.ndarray | None = None  # other segmenters: the label map
    note: str = ""
    image: np.ndarray | None = None  # the image as read (--statistics)
    extras: dict | None = None  # probabilities / uncertainty map / TTA scores, filled by finish()


def _asked(options: RunOptions) -> dict[str, Any]:
    """The keywords of ``infer``/``predict`` for the optional outputs asked for (none: the plain call)."""
    import torch

    asked: dict[str, Any] = {}
    if options.probabilities:
        asked["probabilities"] = torch.float16 if options.probabilities == "npz" else torch.float32
    if options.uncertainty:
        asked["uncertainty"] = True
    return asked


def _compute(segmenter: Any, case: Case, outcome: _ReadOutcome, waited: float, output_dir: Path,
             options: RunOptions) -> _Computed | CaseResult:
    """Run the network on one read case: what is left to write, or a ``failed`` result. Never raises (but Ctrl-C)."""
    timings = {"read": outcome.seconds, "wait": waited}
    if outcome.prepared is not None or outcome.pre_seconds:
        timings["pre"] = outcome.pre_seconds
    if outcome.loaded is None:
        seconds = outcome.seconds + outcome.pre_seconds
        return CaseResult(case.name, "failed", seconds, outcome.error, timings=timings)
    loaded, prepared, shown, image = outcome.loaded, outcome.prepared, outcome.shown, outcome.image
    outcome.loaded = outcome.prepared = outcome.shown = outcome.image = None
    start = time.perf_counter()
    try:
        target = output_path(output_dir, case)
        geometry = loaded.geometry
        computed = _Computed(case, target, geometry, shown, timings, 0.0, note="; ".join(loaded.notes), image=image)
        asked = _asked(options)  # only asked-for keywords: segmenters without the optional outputs keep working
        if asked:
            computed.extras = {}
        if prepared is not None:
            computed.inferred = segmenter.infer(prepared, tta=options.tta, timings=timings, **asked)
            del prepared
        else:
            holder = [to_meta_tensor(loaded)]
            loaded.image = None
            del loaded
            computed.label = segmenter.predict(holder.pop(), tta=options.tta, extras=computed.extras, **asked) \
                if asked else segmenter.predict(holder.pop(), tta=options.tta)
            timings["post"] = time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001 - every failure is a per-case error
        seconds = outcome.seconds + outcome.pre_seconds + time.perf_counter() - start
        return CaseResult(case.name, "failed", seconds, _error_text(case, exc), timings=timings)
    computed.seconds = outcome.seconds + outcome.pre_seconds + time.perf_counter() - start
    return computed


def _stage_extras(staged: Any, computed: _Computed, label: np.ndarray, segmenter: Any, output_dir: Path,
                  options: RunOptions) -> dict[str, str]:
    """Write the optional outputs of a case under temporary names (renamed with the label map); their summary cells."""
    from .outputs import (channel_description, extra_output_paths, label_statistics, statistics_columns,
                          write_json, write_probabilities, write_uncertainty)

    geometry, extras = computed.geometry, computed.extras or {}
    paths = extra_output_paths(output_dir, computed.case.name, geometry.spatial_dims, options.probabilities,
                               options.uncertainty, options.statistics)
    cells: dict[str, str] = {}
    if "probabilities" in paths:
        channels = channel_description(getattr(segmenter, "task", None), segmenter.label_values)
        probabilities = extras.pop("probabilities")
        staged.stage(paths["probabilities"],
                     lambda tmp: write_probabilities(tmp, probabilities, geometry, options.probabilities, channels))
        del probabilities
    if "uncertainty" in paths:
        uncertainty = extras.pop("uncertainty")
        staged.stage(paths["uncertainty"], lambda tmp: write_uncertainty(tmp, uncertainty, geometry))
        cells.update({k: f"{v:.6f}" for k, v in extras.pop("tta_scores").items()})
    if "statistics" in paths:
        spec = segmenter.spec
        names = [spec.channel_name(i) for i in range(spec.num_channels)]
        stats = label_statistics(label, computed.image, geometry, segmenter.label_values, names)
        computed.image = None
        stats = {"case": computed.case.name, "label_map": computed.target.name, **stats}
        staged.stage(paths["statistics"], lambda tmp: write_json(tmp, stats))
        cells.update(statistics_columns(stats))
    return cells


def _write(computed: _Computed, segmenter: Any, output_dir: Path, options: RunOptions | None = None) -> CaseResult:
    """Finish the postprocessing, count the labels, draw the preview, write the label map atomically (in the writer
    thread, overlapped with the network of the next case). Never raises (but Ctrl-C).

    The optional outputs (``options``: probabilities, uncertainty, statistics) are written first under temporary
    names and renamed only after the label map is written, so a failed case leaves none of its files."""
    from .outputs import StagedFiles

    options = options or RunOptions()
    case, timings = computed.case, computed.timings
    start = time.perf_counter()
    writing = False
    cells: dict[str, str] = {}
    staged = StagedFiles()
    try:
        if computed.inferred is not None:
            inferred, computed.inferred = computed.inferred, None
            label = segmenter.finish(inferred, timings, extras=computed.extras) if computed.extras is not None \
                else segmenter.finish(inferred, timings)
            del inferred
        else:
            label, computed.label = computed.label, None
        post_end = time.perf_counter()
        counts = count_labels(label)
        if computed.shown is not None:
            preview = output_dir / PREVIEW_FOLDER / f"{case.name}.png"
            write_preview_safe(preview, computed.shown, label, computed.geometry, segmenter.label_values)
            computed.shown = None
        writing = True
        cells = _stage_extras(staged, computed, label, segmenter, output_dir, options)
        if computed.target.name.endswith(OUTPUT_TYPES["dicom-seg"]):
            from .dicom_seg import write_dicom_seg

            write_dicom_seg(label, computed.geometry, case, computed.target, segmenter)
        else:
            write_label_map(label, computed.geometry, computed.target)
        del label
        staged.commit()
    except Exception as exc:  # noqa: BLE001 - every failure is a per-case error
        timings["write"] = time.perf_counter() - start
        return CaseResult(case.name, "failed", computed.seconds + timings["write"], _error_text(case, exc),
                          timings=timings, note=computed.note,
                          output_error=writing and not isinstance(exc, CaseError))
    finally:
        staged.discard()  # whatever was not committed (a failure, Ctrl-C)
        computed.image = computed.extras = None
    timings["write"] = time.perf_counter() - post_end
    return CaseResult(case.name, "ok", computed.seconds + time.perf_counter() - start, counts=counts,
                      voxel_mm3=computed.geometry.voxel_volume_mm3, timings=timings, note=computed.note, extra=cells)


def write_preview_safe(path: Path, image: np.ndarray, label: np.ndarray, geometry: Any,
                       names: Mapping[int, str]) -> None:
    """Write the preview; a failure there is logged and does not fail the case."""
    from .preview import write_preview

    try:
        write_preview(path, image, label, geometry, names)
    except Exception as exc:  # noqa: BLE001
        logger.warning(f"{path}: preview not written ({type(exc).__name__}: {exc})")


def segment_cases(segmenter: Any, cases: Sequence[Case], output_dir: str | os.PathLike,
                  options: RunOptions | None = None) -> list[CaseResult]:
    """Segment ``cases`` into ``output_dir`` and write ``output_dir/summary.csv``; returns one result per case.

    Args:
        segmenter: a :class:`~custom_nets.inference.model.BundleSegmenter` (or anything with ``spec``,
            ``reader_2d``, ``label_values`` and ``predict(image, tta)``).
        cases: from :func:`~custom_nets.inference.discovery.discover_cases`.
        output_dir: created if missing.
        options: overwrite, background readers, TTA, previews, verbosity, progress bar.
    """
    from tqdm import tqdm

    from .outputs import CHANNELS_FILE, channel_description, extra_output_paths, probability_format, write_channels_file

    options = options or RunOptions()
    spatial_dims = segmenter.spec.spatial_dims
    try:
        fmt = probability_format(options.probabilities, spatial_dims)
    except ValueError as exc:
        raise OutputError(str(exc)) from None
    options = replace(options, probabilities=fmt, tta=options.tta or options.uncertainty)
    output_dir = Path(output_dir)
    problem = check_output_folder(output_dir, options.free_bytes_needed)
    if problem:
        raise OutputError(problem)
    remove_stale_partials(output_dir)
    remove_stale_partials(output_dir / PREVIEW_FOLDER)
    summary = SummaryWriter(output_dir / SUMMARY_NAME, segmenter.label_values, segmenter.spec.spatial_dims)
    results: list[CaseResult] = []
    provenance = run_provenance(segmenter, options)

    previous = summary.previous_rows() if not options.overwrite else {}
    columns = [summary.column(v) for v in summary.values]
    todo: list[Case] = []
    changed, unknown = [], []
    for case in cases:
        try:
            target = output_path(output_dir, case)
            wanted = [target, *extra_output_paths(output_dir, case.name, spatial_dims, options.probabilities,
                                                  options.uncertainty, options.statistics).values()]
        except CaseError as exc:
            results.append(CaseResult(case.name, "failed", error=_error_text(case, exc)))
            continue
        if options.overwrite or not all(path.exists() for path in wanted):  # every output asked for, or redo it
            todo.append(case)
            continue
        row = previous.get(case.name) or {}
        made_by = {k: row.get(k) or "" for k in PROVENANCE_KEYS}
        if not all(made_by.values()):
            unknown.append(case.name)  # an output from before summary.csv recorded provenance, or without a row
        elif made_by != provenance:
            changed.append(case.name)
            todo.append(case)
            continue
        skipped_result = _existing_result(case, target, previous.get(case.name), columns)
        skipped_result.provenance = {k: v for k, v in made_by.items() if v}
        skipped_result.note = row.get("note") or ""
        skipped_result.extra = summary.extra_cells(row)
        results.append(skipped_result)
    skipped = sum(r.status == "skipped" for r in results)
    if skipped:
        logger.info(f"skipping {skipped} finished case(s) whose output exists (--overwrite redoes them)")
    if unknown:
        logger.warning(f"{len(unknown)} existing output(s) have no record of the model and settings that made them "
                       f"in {SUMMARY_NAME} (e.g. {unknown[0]}): skipped as they are; --overwrite redoes them")
    if changed:
        logger.warning(f"redoing {len(changed)} case(s) whose output was made by another model, bundle version or "
                       f"settings (e.g. {changed[0]}; see the {', '.join(PROVENANCE_KEYS)} columns of {SUMMARY_NAME})")
    for result in results:
        summary.add(result)
    summary.write()
    if options.probabilities:
        try:
            write_channels_file(output_dir / CHANNELS_FILE,
                                channel_description(getattr(segmenter, "task", None), segmenter.label_values),
                                float(getattr(segmenter, "threshold", 0.5)), options.probabilities, options.uncertainty)
        except OSError as exc:
            raise OutputError(f"{output_dir / CHANNELS_FILE} cannot be written ({one_line(exc)})") from None

    if needs_itk([s for case in todo for s in case.sources]):
        warm_up_itk()
    counts = {"ok": 0, "failed": sum(r.status == "failed" for r in results)}
    bar = tqdm(total=len(todo), unit="case", file=sys.stderr, disable=not options.progress or not todo,
               dynamic_ncols=True, desc="segmenting")
    done: list[CaseResult] = []
    stop: list[str] = []  # why no further case can be written

    def output_failed() -> None:
        """After a failed write: stop the batch if the output folder can take no further case."""
        problem = check_output_folder(output_dir, options.free_bytes_needed)
        if problem and not stop:
            stop.append(problem)

    def record(result: CaseResult) -> None:
        result.provenance = result.provenance or (provenance if result.status == "ok" else {})
        results.append(result)
        done.append(result)
        summary.add(result)
        try:
            summary.write_soon()
        except OSError as exc:
            logger.error(f"{summary.path} not written: {one_line(exc)}")
            output_failed()
        counts[result.status] = counts.get(result.status, 0) + 1
        if result.status == "failed":
            logger.error(f"FAILED {result.case}: {result.error}")
        elif options.verbose:
            t = result.timings
            rss = current_rss_mb()
            logger.info(f"{result.case}: read {t.get('read', 0):.2f} s (waited {t.get('wait', 0):.2f} s), "
                        f"pre {t.get('pre', 0):.2f} s, network {t.get('network', 0):.2f} s, "
                        f"post {t.get('post', 0):.2f} s, write {t.get('write', 0):.2f} s"
                        + (f", memory {rss:.0f} MiB" if rss is not None else ""))
        bar.update(1)
        bar.set_postfix(ok=counts["ok"], failed=counts["failed"], refresh=False)
        if result.output_error:
            output_failed()

    # the label map of case k is written in a background thread while case k+1 is segmented (with --workers > 0);
    # at most one write is in flight, so at most two label maps are in memory
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="segment-write") if options.workers > 0 else None
    in_flight: Future | None = None
    wall = time.perf_counter()
    try:
        read = lambda c: _read(c, segmenter, options.preview, options.allow_resample, options.statistics)  # noqa: E731
        for case, outcome, waited in _prefetch(todo, read, options.workers):
            if stop:
                break
            item = _compute(segmenter, case, outcome, waited, output_dir, options)
            del outcome
            if in_flight is not None:  # the previous case's write, overlapped with this case's segmentation
                written = in_flight.result()
                in_flight = None  # only now: on Ctrl-C while waiting, the finally below still records it
                record(written)
                del written
            if stop:  # that write showed the folder can take no further case: this one is not written either
                break
            if isinstance(item, CaseResult):
                record(item)
            elif writer is not None:
                in_flight = writer.submit(_write, item, segmenter, output_dir, options)
            else:
                record(_write(item, segmenter, output_dir, options))
            del item
    finally:
        try:
            if in_flight is not None:
                record(in_flight.result())  # a label map being written is finished (atomically), never dropped
        finally:
            if writer is not None:
                writer.shutdown(wait=True)
            bar.close()
            try:
                summary.write()
            except OSError as exc:
                stop.append(f"{summary.path} cannot be written ({one_line(exc)})")
    if done:
        _log_totals(done, time.perf_counter() - wall)
    if stop:
        left = len(todo) - len(done)
        raise OutputError(f"stopped: {stop[0]}; {len(done)} case(s) done (listed in {SUMMARY_NAME}), {left} not "
                          "attempted; free space or fix the folder and run again to do the rest")
    return results


def run_provenance(segmenter: Any, options: RunOptions) -> dict[str, str]:
    """What makes an output what it is, as ``summary.csv`` records it: the checkpoint's SHA-256, the bundle version
    and the result-changing settings (TTA, sliding-window overlap, and ``options.settings``: backend, AMP, config
    overrides). A re-run with other values redoes the cases instead of skipping them."""
    checkpoints = getattr(segmenter, "checkpoints", None) or [getattr(segmenter, "checkpoint", None)]
    parser = getattr(segmenter, "parser", None)

    def config(key: str) -> Any:
        try:
            return parser.get(key) if parser is not None else None
        except Exception:  # noqa: BLE001 - a config without the key
            return None

    # not allow_resample: it changes only cases that would fail without it (and those record it in their note)
    settings = {"tta": bool(options.tta), "overlap": config("inferer#overlap"), **options.settings}
    text = "; ".join(f"{key}={json.dumps(value, sort_keys=True, default=str)}"
                     for key, value in sorted(settings.items()) if value is not None)
    return {
        "model_sha256": _checkpoints_sha256(checkpoints),
        "bundle_version": str(config("_meta_#version") or "unknown"),
        "settings": text,
    }


def _checkpoints_sha256(checkpoints: Sequence[Any]) -> str:
    """The checkpoint's SHA-256; for an ensemble, the SHA-256 of its members' (in order); ``none`` without a file."""
    digests = [file_sha256(c) for c in checkpoints if c and Path(c).is_file()]
    if not digests:
        return "none"
    return digests[0] if len(digests) == 1 else hashlib.sha256(" ".join(digests).encode()).hexdigest()


def _log_totals(done: Sequence[CaseResult], wall: float) -> None:
    """One line: wall clock of the batch against the time in the network (the overhead of everything else)."""
    total = {k: sum(r.timings.get(k, 0.0) for r in done) for k in ("read", "wait", "pre", "network", "post", "write")}
    ratio = f" = {wall / total['network']:.2f}x the time in the network ({total['network']:.1f} s)" \
        if total["network"] > 0 else ""
    logger.info(f"timing: {len(done)} case(s) in {wall:.1f} s{ratio}; sliding window and postprocessing "
                f"{total['post']:.1f} s; overlapped in background threads: reading {total['read']:.1f} s and "
                f"preprocessing {total['pre']:.1f} s (waited for them {total['wait']:.1f} s), writing "
                f"{total['write']:.1f} s")
