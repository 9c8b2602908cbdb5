"""Batch inference with a bundle: every case of a folder to a label map with the input's geometry.

The command line is ``scripts/segment.py`` (also ``python -m custom_nets.inference``); see
``docs/batch_inference.md``. The pieces, usable on their own:

- :mod:`.discovery`: :func:`discover_cases` finds the cases of a folder (NIfTI, NRRD, MetaImage, DICOM series, 2D
  pictures), grouping modality files per case; :func:`sanitize_case_name`.
- :mod:`.io`: :func:`read_case` (checked reading into a channel-first array + geometry), :func:`to_meta_tensor`,
  :func:`write_label_map` (atomic, geometry preserved), :func:`count_labels`.
- :mod:`.dicom_seg`: :func:`~.dicom_seg.write_dicom_seg`, a label map as a DICOM SEG of its source series.
- :mod:`.outputs`: probabilities, TTA uncertainty and per-label statistics (``--save-probabilities``, ...).
- :mod:`.model`: :class:`BundleSegmenter` (bundle folder or zip -> network, checkpoint, transforms; ``predict``).
- :mod:`.backends`: :func:`~.backends.build_backend`, the network call as eager PyTorch, TorchScript or ONNX Runtime.
- :mod:`.runner`: :func:`segment_cases` (read-ahead and preprocessing, network, background writing; per-case errors,
  resume, ``summary.csv`` with the time split).
- :mod:`.preview`: :func:`write_preview` overlay PNGs.
- :mod:`.cli`: :func:`main`, the command line.

Importing this package does not import torch-heavy modules beyond what ``custom_nets`` already imports.
"""

from .discovery import Case, InputSpec, Source, discover_cases, sanitize_case_name
from .errors import CaseError, SetupError
from .io import Geometry, LoadedCase, count_labels, read_case, to_meta_tensor, write_label_map

__all__ = [
    "BundleSegmenter",
    "Case",
    "CaseError",
    "Geometry",
    "InputSpec",
    "LoadedCase",
    "RunOptions",
    "SetupError",
    "Source",
    "count_labels",
    "discover_cases",
    "main",
    "read_case",
    "sanitize_case_name",
    "segment_cases",
    "to_meta_tensor",
    "write_label_map",
]


def __getattr__(name: str):
    """Lazy access to the parts that import MONAI's bundle machinery."""
    if name == "BundleSegmenter":
        from .model import BundleSegmenter

        return BundleSegmenter
    if name in ("RunOptions", "segment_cases"):
        from . import runner

        return getattr(runner, name)
    if name == "main":
        from .cli import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
