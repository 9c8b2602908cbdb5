"""Per-case isolation for MONAI workflows (a bundle's ``inference.json`` / ``evaluate.json``): a case that cannot be
read or preprocessed fails alone, with one log line naming its file, and the run ends with a non-zero exit status
after every good case is done, like ``scripts/segment.py``.

MONAI's workflows stop at the first exception a data loader raises; PyTorch's ``DataLoader`` iterator, however, moves
past an item whose loading raised (in the main process and with worker processes alike), so it can be asked for the
next one. Hence two small pieces:

- :class:`IsolatedCases` wraps a dataset: whatever loading or transforming one item raises becomes a
  :class:`CaseFailure` whose message is one line, ``<first file of the item>: <problem>``. An item that carries an
  ``"error"`` (``custom_nets.data.inference_datalist(..., isolate=True)``: its header is unreadable or does not fit
  the model) fails with that message without being read, so no memory is allocated from a header not checked.
- :class:`IsolatedLoader` wraps a data loader (give it as the evaluator's ``val_data_loader``): it skips items that
  failed, logs ``FAILED <file>: <problem>``, and, attached as a handler of the same engine, raises
  :class:`CasesFailed` (one line: how many failed, which) when the run completes. It has no length, so MONAI leaves
  ``epoch_length`` unset and the epoch ends when the good items are done.

Wiring in a config (as the bundles' ``inference.json`` and ``evaluate.json`` do; the failure report is the last
handler, so handlers that write at the end, such as metrics, run first)::

    "datalist": "$custom_nets.data.inference_datalist(@dataset_dir, @task, 'brats', @demo_dir, isolate=True)",
    "dataset": {"_target_": "custom_nets.isolation.IsolatedCases",
                "dataset": {"_target_": "Dataset", "data": "@datalist", "transform": "@preprocessing"}},
    "dataloader": {"_target_": "DataLoader", "dataset": "@dataset", "batch_size": 1, "num_workers": 2},
    "isolated_loader": {"_target_": "custom_nets.isolation.IsolatedLoader", "loader": "@dataloader"},
    "handlers": [..., "@isolated_loader"],
    "evaluator": {"_target_": "SupervisedEvaluator", "val_data_loader": "@isolated_loader",
                  "val_handlers": "@handlers", ...}

Use batch size 1 (a batch fails as a whole, since the loader collates before the wrapper sees it).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from torch.utils.data import Dataset

__all__ = ["CaseFailure", "CasesFailed", "IsolatedCases", "IsolatedLoader", "innermost_error"]

logger = logging.getLogger(__name__)


class CaseFailure(RuntimeError):
    """One item could not be loaded: ``<first file of the item>: <problem>`` on one line."""


class CasesFailed(RuntimeError):
    """Raised when a run completes with failed cases (after every good case was processed); one line."""


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(str(text).split())[:limit]


def _item_name(item: Any, key: str) -> str:
    """The first file of a datalist item (``{"image": path or [paths]}``), else the item itself."""
    value = item.get(key, item) if isinstance(item, Mapping) else item
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) and value:
        value = value[0]
    return os.fspath(value) if isinstance(value, (str, os.PathLike)) else _one_line(repr(value), 80)


def innermost_error(error: BaseException) -> BaseException:
    """MONAI wraps a transform's error in ``RuntimeError: applying transform ...``: the original one says what."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


class IsolatedCases(Dataset):
    """A dataset whose failing items raise a one-line :class:`CaseFailure` naming the item's first file.

    Args:
        dataset: a map-style dataset (MONAI's ``Dataset``, ``CacheDataset`` ...; its ``data`` names the items).
        name_key: the datalist key whose (first) path names an item.
    """

    def __init__(self, dataset: Any, name_key: str = "image") -> None:
        self.dataset = dataset
        self.name_key = name_key

    def __len__(self) -> int:
        return len(self.dataset)

    def name(self, index: int) -> str:
        data = getattr(self.dataset, "data", None)
        try:
            return _item_name(data[index], self.name_key) if data is not None else f"item {index}"
        except (IndexError, KeyError, TypeError):
            return f"item {index}"

    def __getitem__(self, index: int) -> Any:
        data = getattr(self.dataset, "data", None)
        item = data[index] if data is not None and 0 <= index < len(data) else None
        if isinstance(item, Mapping) and item.get("error"):  # found by the datalist's header check: never read
            name, error = self.name(index), _one_line(item["error"])
            raise CaseFailure(error if error.startswith(f"{name}: ") else f"{name}: {error}")
        try:
            return self.dataset[index]
        except Exception as error:  # noqa: BLE001 - every problem of one case is that case's failure
            cause = innermost_error(error)
            raise CaseFailure(f"{self.name(index)}: {type(cause).__name__}: {_one_line(cause)}") from None


class IsolatedLoader:
    """Iterate over ``loader``, skipping (and logging) the items whose loading failed; report them at the end.

    Attach it to the engine that consumes it (it is also a handler): when that engine completes, failed cases raise
    :class:`CasesFailed`, so ``python -m monai.bundle run`` exits non-zero after writing every good case.

    Args:
        loader: a ``DataLoader`` (over an :class:`IsolatedCases`, for one-line messages naming the file).
    """

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.failures: list[str] = []
        self.succeeded = 0

    def __iter__(self) -> Iterator[Any]:
        self.failures, self.succeeded = [], 0
        iterator = iter(self.loader)
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except Exception as error:  # noqa: BLE001 - a worker re-raises with its traceback in the message
                lines = [line for line in str(error).splitlines() if line.strip()]
                message = lines[-1] if lines else type(error).__name__
                message = message.split(f"{CaseFailure.__module__}.{CaseFailure.__name__}: ", 1)[-1]
                self.failures.append(_one_line(message))
                logger.error(f"FAILED {self.failures[-1]}")
                continue
            self.succeeded += 1
            yield batch

    def __length_hint__(self) -> int:
        """The number of items (an upper bound of the batches yielded); no ``__len__``, so MONAI leaves
        ``epoch_length`` unset and the epoch ends with the last good item."""
        return len(self.loader)

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.COMPLETED, self._report)

    def _report(self, engine: Any) -> None:
        if self.failures:
            names = "; ".join(f.split(": ", 1)[0] for f in self.failures[:5])
            more = f" and {len(self.failures) - 5} more" if len(self.failures) > 5 else ""
            raise CasesFailed(f"{len(self.failures)} of {len(self.failures) + self.succeeded} case(s) failed "
                              f"({names}{more}); the others were processed, see the FAILED lines above")
