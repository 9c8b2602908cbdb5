"""The batch loop: read ahead in background threads, segment, write, record every case in ``summary.csv``.

Each case runs on its own: a case that fails (unreadable input, wrong channels, an error in the network) is recorded as
``failed`` with a one-line error naming the file and the problem, and the batch goes on. A case whose output file
already exists is ``skipped`` (unless ``overwrite``), so a re-run after an interruption does only the missing ones;
outputs are written atomically, so an existing output is always a finished one.

Memory stays flat over many cases: at most ``workers + 1`` cases are in memory (the one being segmented and those read
ahead), and nothing of a finished case is kept but its row of the summary.
"""

from __future__ import annotations

import csv
import itertools
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .discovery import Case
from .errors import CaseError
from .io import (
    TEMP_MARKER,
    LoadedCase,
    atomic_write,
    count_labels,
    needs_itk,
    read_case,
    read_label_counts,
    to_meta_tensor,
    warm_up_itk,
    write_label_map,
)

__all__ = ["CaseResult", "RunOptions", "SummaryWriter", "output_path", "segment_cases"]

logger = logging.getLogger(__name__)

SUMMARY_NAME = "summary.csv"
PREVIEW_FOLDER = "preview"


@dataclass
class RunOptions:
    """Options of :func:`segment_cases` (see ``scripts/segment.py --help``)."""

    overwrite: bool = False
    workers: int = 1
    tta: bool = False
    preview: bool = False
    verbose: bool = False
    progress: bool = True


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


@dataclass
class _ReadOutcome:
    loaded: LoadedCase | None
    error: str
    seconds: float


class SummaryWriter:
    """``summary.csv``: case, status, seconds, error, then one column per label value, rewritten atomically.

    3D bundles get ``label_<value>_ml`` columns (voxel count x voxel volume / 1000), 2D bundles ``label_<value>_pixels``.
    Label values come from the bundle's metadata; values found in outputs but not declared get columns too.
    """

    def __init__(self, path: str | os.PathLike, label_values: Iterable[int], spatial_dims: int,
                 min_interval: float = 2.0) -> None:
        self.path = Path(path)
        self.values = sorted({int(v) for v in label_values})
        self.spatial_dims = spatial_dims
        self.rows: list[CaseResult] = []
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
        return cells

    def write(self) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.writer(f)
                writer.writerow(["case", "status", "seconds", "error", *(self.column(v) for v in self.values)])
                for row in sorted(self.rows, key=lambda r: r.case):
                    writer.writerow(self._cells(row))

        atomic_write(self.path, write)
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


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _remove_stale_temporaries(folder: Path) -> None:
    """Remove temporary files left by an interrupted (killed) earlier run; never those of a running one."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        name = path.name
        if not (name.startswith(".") and TEMP_MARKER in name and path.is_file()):
            continue
        try:
            pid = int(name.split(TEMP_MARKER, 1)[1].split("-", 1)[0])
        except ValueError:
            continue
        if not _pid_alive(pid):
            try:
                path.unlink()
                logger.debug(f"removed {path}, left by an interrupted run")
            except OSError:
                pass


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _error_text(case: Case, exc: BaseException) -> str:
    """A one-line message naming the input file(s) and the problem."""
    if isinstance(exc, CaseError) and exc.path:
        return _one_line(str(exc))
    message = str(exc) if isinstance(exc, CaseError) else f"{type(exc).__name__}: {exc}"
    return _one_line(f"{case.describe()}: {message}")


def _read(case: Case, segmenter: Any) -> _ReadOutcome:
    """Read one case (in a background thread): the image, or the error message. Never raises."""
    start = time.perf_counter()
    try:
        loaded = read_case(case, segmenter.spec, segmenter.reader_2d)
        return _ReadOutcome(loaded, "", time.perf_counter() - start)
    except Exception as exc:  # noqa: BLE001 - every failure is a per-case error
        return _ReadOutcome(None, _error_text(case, exc), time.perf_counter() - start)


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


def _segment_one(segmenter: Any, case: Case, outcome: _ReadOutcome, waited: float, output_dir: Path,
                 options: RunOptions) -> CaseResult:
    if outcome.loaded is None:
        return CaseResult(case.name, "failed", outcome.seconds, outcome.error)
    timings = {"read": outcome.seconds, "wait": waited}
    loaded = outcome.loaded
    outcome.loaded = None
    begin = start = time.perf_counter()
    try:
        target = output_path(output_dir, case)
        geometry = loaded.geometry
        shown = None
        if options.preview:
            shown = loaded.image[:1].copy() if geometry.spatial_dims == 3 else loaded.image.copy()
        # hand the pixels over without keeping a reference here, so predict() can free them after preprocessing
        holder = [to_meta_tensor(loaded)]
        loaded.image = None
        del loaded
        label = segmenter.predict(holder.pop(), tta=options.tta)
        timings["compute"] = time.perf_counter() - start
        start = time.perf_counter()
        counts = count_labels(label)
        if shown is not None:
            preview = output_dir / PREVIEW_FOLDER / f"{case.name}.png"
            write_preview_safe(preview, shown, label, geometry, segmenter.label_values)
        write_label_map(label, geometry, target)
        timings["write"] = time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001 - every failure is a per-case error
        seconds = outcome.seconds + time.perf_counter() - begin
        return CaseResult(case.name, "failed", seconds, _error_text(case, exc), timings=timings)
    seconds = outcome.seconds + time.perf_counter() - begin
    return CaseResult(case.name, "ok", seconds, counts=counts, voxel_mm3=geometry.voxel_volume_mm3, timings=timings)


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

    options = options or RunOptions()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(output_dir)
    _remove_stale_temporaries(output_dir / PREVIEW_FOLDER)
    summary = SummaryWriter(output_dir / SUMMARY_NAME, segmenter.label_values, segmenter.spec.spatial_dims)
    results: list[CaseResult] = []

    previous = summary.previous_rows() if not options.overwrite else {}
    columns = [summary.column(v) for v in summary.values]
    todo: list[Case] = []
    for case in cases:
        try:
            target = output_path(output_dir, case)
        except CaseError as exc:
            results.append(CaseResult(case.name, "failed", error=_error_text(case, exc)))
            continue
        if target.exists() and not options.overwrite:
            results.append(_existing_result(case, target, previous.get(case.name), columns))
        else:
            todo.append(case)
    skipped = sum(r.status == "skipped" for r in results)
    if skipped:
        logger.info(f"skipping {skipped} finished case(s) whose output exists (--overwrite redoes them)")
    for result in results:
        summary.add(result)
    summary.write()

    if needs_itk([s for case in todo for s in case.sources]):
        warm_up_itk()
    counts = {"ok": 0, "failed": sum(r.status == "failed" for r in results)}
    bar = tqdm(total=len(todo), unit="case", file=sys.stderr, disable=not options.progress or not todo,
               dynamic_ncols=True, desc="segmenting")
    try:
        for case, outcome, waited in _prefetch(todo, lambda c: _read(c, segmenter), options.workers):
            result = _segment_one(segmenter, case, outcome, waited, output_dir, options)
            del outcome
            results.append(result)
            summary.add(result)
            summary.write_soon()
            counts[result.status] = counts.get(result.status, 0) + 1
            if result.status == "failed":
                logger.error(f"FAILED {case.name}: {result.error}")
            elif options.verbose:
                t = result.timings
                rss = current_rss_mb()
                logger.info(f"{case.name}: read {t.get('read', 0):.2f} s (waited {t.get('wait', 0):.2f} s), "
                            f"compute {t.get('compute', 0):.2f} s, write {t.get('write', 0):.2f} s"
                            + (f", memory {rss:.0f} MiB" if rss is not None else ""))
            bar.update(1)
            bar.set_postfix(ok=counts["ok"], failed=counts["failed"], refresh=False)
    finally:
        bar.close()
        summary.write()
    return results
