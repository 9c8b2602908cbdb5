"""nnU-Net's post-processing choice: keep only the largest connected component of an output where validation says
it helps.

nnU-Net (Isensee et al., Nature Methods 2021, "Empirical configuration" of post-processing) removes all but the largest
connected component of a class when that raises the class's mean Dice over the cross-validation cases, and applies
the choice at prediction time. Here the choice is made per output channel (a label, or a region such as BraTS's
whole tumour) by :class:`PostprocessingChooser`, an ignite handler of a bundle's ``evaluate.json``, which writes it to
``models/postprocessing.json`` beside the weights; every inference path (``inference.json``, ``scripts/segment.py``,
MONAI Label) applies it through :class:`KeepLargestComponentsd` in the bundle's postprocessing, before the outputs
become a label map. Delete the file, or set its list to ``[]``, to switch it off.

MONAI has ``KeepLargestConnectedComponentd`` for label maps and binary one-hot outputs (it needs scikit-image, which
the bundles do not otherwise use); this transform works on the probabilities too (before the threshold, so saved
probabilities agree with the label map), labels components with SciPy, and reads the choice from the file that
validation wrote, which MONAI's transform cannot.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from scipy import ndimage

from custom_nets.files import write_text_atomic

__all__ = [
    "POSTPROCESSING_JSON",
    "KeepLargestComponentsd",
    "PostprocessingChooser",
    "keep_largest",
    "largest_component",
    "read_choice",
]

logger = logging.getLogger(__name__)

POSTPROCESSING_JSON = "postprocessing.json"
"""File name of the choice, beside the weights (``models/postprocessing.json``)."""


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest connected component of a boolean mask (full connectivity: faces, edges and corners touch, as
    scikit-image's and MONAI's default); an empty mask comes back empty."""
    components, count = ndimage.label(mask, structure=ndimage.generate_binary_structure(mask.ndim, mask.ndim))
    if count <= 1:
        return components > 0
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == int(sizes.argmax())


def keep_largest(pred: torch.Tensor, channels: Sequence[int], threshold: float = 0.5) -> torch.Tensor:
    """Zero every voxel of ``pred[c]`` (for ``c`` in ``channels``) outside the largest connected component of
    ``pred[c] > threshold``; other channels are returned unchanged.

    Args:
        pred: ``(C, *spatial)`` probabilities or binary masks.
        channels: output channels to post-process.
        threshold: foreground threshold (0.5 for sigmoid probabilities and for 0/1 masks).

    Returns:
        A new tensor of ``pred``'s shape and type (a MetaTensor keeps its metadata).
    """
    out = pred.clone()
    for c in channels:
        foreground = torch.as_tensor(pred[c] > threshold)
        if not bool(foreground.any()):
            continue
        largest = torch.from_numpy(largest_component(foreground.cpu().numpy())).to(out.device)
        out[c][~largest] = 0
    return out


def read_choice(path: str | os.PathLike | None) -> list[int]:
    """The channels whose largest component is kept, from a ``postprocessing.json``; ``[]`` when there is no file.

    Raises:
        ValueError: the file exists but is not a choice written by :class:`PostprocessingChooser` (one line naming it).
    """
    if path is None or not Path(path).is_file():
        return []
    try:
        choice = json.loads(Path(path).read_text(encoding="utf-8"))
        channels = [int(c) for c in choice["channels"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a post-processing choice ({type(error).__name__}: {error}); "
                         "delete it or rerun the bundle's evaluate.json") from None
    return channels


class KeepLargestComponentsd(MapTransform):
    """Keep the largest connected component of the chosen output channels (:func:`keep_largest`).

    Args:
        keys: keys of ``(C, *spatial)`` probabilities or masks.
        channels: the channels to post-process; or
        choice_file: a ``postprocessing.json`` written by :class:`PostprocessingChooser` (read once, here); a missing
            file means no post-processing.
        threshold: foreground threshold.
    """

    def __init__(self, keys: KeysCollection, channels: Sequence[int] | None = None,
                 choice_file: str | os.PathLike | None = None, threshold: float = 0.5,
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.channels = list(channels) if channels is not None else read_choice(choice_file)
        self.threshold = threshold
        if self.channels:
            logger.info(f"post-processing: keeping the largest connected component of output channel(s) "
                        f"{self.channels}" + (f" ({choice_file})" if choice_file else ""))

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        if self.channels:
            for key in self.key_iterator(d):
                d[key] = keep_largest(d[key], self.channels, self.threshold)
        return d


def _dice(pred: torch.Tensor, label: torch.Tensor) -> float:
    """Dice of two boolean masks; NaN when both are empty (the case says nothing about this channel)."""
    total = int(pred.sum()) + int(label.sum())
    return float("nan") if total == 0 else 2.0 * int((pred & label).sum()) / total


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def _decollated(output: Any) -> list[dict]:
    return list(output) if isinstance(output, (list, tuple)) else [output]


class PostprocessingChooser:
    """Decide, per output channel, whether keeping only its largest connected component raises the mean Dice over the
    evaluated cases, and write the choice to ``output_path`` (nnU-Net's rule: keep it where it helps).

    Attach it to an evaluator whose ``engine.state.output`` holds, per case, ``"pred"`` (``(C, *spatial)`` 0/1 after
    the threshold) and ``"label"`` (the same channels as targets). At the end of the run it writes (atomically)::

        {"channels": [1], "keep_largest_component": ["whole tumor"], "cases": 12,
         "dice": {"tumor core": {"as_is": 0.81, "largest_component": 0.80}, ...}}

    Args:
        output_path: where the choice goes; a bundle's ``evaluate.json`` uses ``models/postprocessing.json``.
        channel_names: one name per output channel (the task's label names).
        min_improvement: how much the mean Dice must rise for the channel to be chosen (default: any rise).
        output_transform: maps ``engine.state.output`` to the list of per-case dicts.
    """

    def __init__(self, output_path: str | os.PathLike, channel_names: Sequence[str], min_improvement: float = 0.0,
                 output_transform: Callable[[Any], list[dict]] = _decollated) -> None:
        self.output_path = Path(output_path)
        self.channel_names = list(channel_names)
        self.min_improvement = float(min_improvement)
        self.output_transform = output_transform
        self._as_is: list[list[float]] = []
        self._largest: list[list[float]] = []

    def attach(self, engine: Any) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _reset(self, engine: Any = None) -> None:
        self._as_is = [[] for _ in self.channel_names]
        self._largest = [[] for _ in self.channel_names]

    def _collect(self, engine: Any) -> None:
        if not self._as_is:
            self._reset()
        for item in self.output_transform(engine.state.output):
            pred = torch.as_tensor(item["pred"]).detach().cpu() > 0.5
            label = torch.as_tensor(item["label"]).detach().cpu() > 0.5
            if pred.shape[0] != len(self.channel_names) or label.shape != pred.shape:
                raise ValueError(f"post-processing choice: prediction {tuple(pred.shape)} and label "
                                 f"{tuple(label.shape)} do not both have {len(self.channel_names)} channels")
            largest = keep_largest(pred, range(pred.shape[0]))
            for c in range(pred.shape[0]):
                self._as_is[c].append(_dice(pred[c], label[c]))
                self._largest[c].append(_dice(largest[c], label[c]))

    def choose(self) -> dict[str, Any]:
        """The choice from the cases collected so far (what :meth:`_write` writes)."""
        dice, channels = {}, []
        for c, name in enumerate(self.channel_names):
            as_is, largest = _mean(self._as_is[c]), _mean(self._largest[c])
            dice[name] = {"as_is": round(as_is, 6), "largest_component": round(largest, 6)}
            if not math.isnan(as_is) and largest > as_is + self.min_improvement:
                channels.append(c)
        return {"channels": channels, "keep_largest_component": [self.channel_names[c] for c in channels],
                "cases": len(self._as_is[0]) if self._as_is else 0, "dice": dice,
                "rule": "keep the largest connected component of a channel where it raises the channel's mean Dice"}

    def _write(self, engine: Any = None) -> None:
        choice = self.choose()
        if not choice["cases"]:
            return
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(self.output_path, json.dumps(choice, indent=2) + "\n")
        kept = ", ".join(choice["keep_largest_component"]) or "no channel"
        logger.info(f"post-processing choice over {choice['cases']} case(s): largest connected component kept for "
                    f"{kept}; written to {self.output_path} (inference applies it)")
