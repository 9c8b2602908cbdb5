"""Command line of batch inference: ``python scripts/segment.py --bundle B -i IN -o OUT`` (see ``--help``).

Exit codes: 0 every case succeeded (skipped cases count as success), 1 some case failed, 2 usage or setup error
(nothing was segmented: bad option, bundle path, untrusted bundle, input or output folder, device, missing or
mismatching checkpoint, no images found) or the output folder could take no further case (full or unwritable; the
batch stopped, ``summary.csv`` lists what was done), 130 interrupted (Ctrl-C; ``summary.csv`` lists the cases
finished so far).

Nothing heavy (torch, MONAI) is imported before the options are parsed and the folders checked, so ``--help`` and
usage errors answer at once.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .discovery import OUTPUT_TYPES

__all__ = ["build_parser", "main"]

logger = logging.getLogger("custom_nets.inference")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

_CHECKOUT = Path(__file__).resolve().parents[2]
REPOSITORY_BUNDLES = _CHECKOUT / "bundles" if (_CHECKOUT / "pyproject.toml").is_file() else None
"""Bundles of this repository, when running from a checkout: trusted. Any other bundle (and every bundle of an
installed package) runs only with ``--trust``."""

_EPILOG = """\
inputs: .nii/.nii.gz, .nrrd/.nhdr, .mha/.mhd and DICOM series folders (3D bundles); .png/.jpg/.jpeg/.tif/.tiff/.bmp
(2D bundles). Multi-channel bundles group files per case by folder or by the modality suffixes of their metadata
(<case>_flair.nii.gz, <case>_t1.nii.gz, ...). Files named *_seg, *_label, *_mask, *_gt are ignored.
outputs: OUTPUT_DIR/<case>.nii.gz (.nrrd/.mha kept; .png for 2D) with the input's geometry, OUTPUT_DIR/summary.csv,
OUTPUT_DIR/preview/<case>.png with --preview, <case>_probabilities.*, <case>_uncertainty.*, <case>_statistics.json
with --save-probabilities, --uncertainty, --statistics. See docs/batch_inference.md.
a bundle is code: its configs run Python expressions and classes, so a bundle from outside this repository's
bundles/ folder runs only with --trust. Packaged zips carry CHECKSUMS.sha256, verified before loading.
exit codes: 0 all cases ok or skipped, 1 some case failed, 2 usage/setup error or output folder full/unwritable,
130 interrupted.
"""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _overlap(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0].endswith("segment") else "segment.py",
        description="Segment every case of a folder with a MONAI bundle: one label map per case, a summary CSV.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--bundle", required=True, help="bundle folder (with configs/inference.json) or bundle zip")
    parser.add_argument("--trust", action="store_true",
                        help="run a bundle from outside this repository's bundles/ folder: a bundle runs code (its "
                        "configs' $-expressions and _target_ classes), so use only bundles whose source you trust")
    parser.add_argument("-i", "--input", required=True, type=Path, help="folder of input images (searched recursively)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="folder for label maps and summary.csv")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present, default), cpu, cuda, cuda:1, ...")
    parser.add_argument("--amp", action="store_true", help="mixed precision (CUDA only; ignored with a warning on CPU)")
    parser.add_argument("--backend", choices=("eager", "torchscript", "onnxruntime"), default="eager",
                        help="how the network runs inside the sliding window: eager PyTorch (default), torchscript "
                        "(scripted, frozen, optimised for inference) or onnxruntime (exported to ONNX, CPU only; needs "
                        "pip install -r requirements-export.txt); exported networks are checked against eager first")
    parser.add_argument("--tta", action="store_true",
                        help="flip test-time augmentation: mean probability over all 2**D flips of the spatial axes "
                        "(8 passes in 3D, 4 in 2D)")
    parser.add_argument("--save-probabilities", nargs="?", const="auto", choices=("auto", "nifti", "npz"), default=None,
                        metavar="{nifti,npz}",
                        help="also write the per-channel probabilities on the input's grid: "
                        "OUTPUT_DIR/<case>_probabilities.nii.gz (3D default: float32, channels in the 4th dimension) "
                        "or .npz (2D default, or 'npz' for 3D: float16, channel first); channel names in "
                        "OUTPUT_DIR/probabilities.json")
    parser.add_argument("--uncertainty", action="store_true",
                        help="also write OUTPUT_DIR/<case>_uncertainty.nii.gz (.npz for 2D): per voxel, the largest "
                        "standard deviation of a channel's probability over the flip-TTA passes (0 where they all "
                        "agree), and the tta_uncertainty and tta_agreement columns of summary.csv; implies --tta")
    parser.add_argument("--statistics", action="store_true",
                        help="also write OUTPUT_DIR/<case>_statistics.json: per label, voxels, volume (mm^3; 2D: "
                        "area, pixels for pictures), mean and std of each input channel inside it, connected "
                        "components; the main figures as summary.csv columns")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo cases whose output exists (default: skip those made by the same checkpoint, bundle "
                        "version and settings, redo the others)")
    parser.add_argument("--allow-resample", action="store_true",
                        help="resample a channel whose grid differs from the first channel's onto it (noted in "
                        "summary.csv); default: such a case fails")
    parser.add_argument("--workers", type=_non_negative_int, default=1,
                        help="background threads reading the next cases while one is segmented (0: read in turn; "
                        "default 1)")
    parser.add_argument("--sw-batch-size", type=_positive_int, default=None,
                        help="sliding-window batch size (default: the bundle's)")
    parser.add_argument("--overlap", type=_overlap, default=None, help="sliding-window overlap (default: the bundle's)")
    parser.add_argument("--checkpoint", type=Path, nargs="+", default=None, metavar="PT",
                        help="weights (default: <bundle>/models/model.pt); several, e.g. "
                        "runs/arunet3d/fold_*/models/model.pt, ensemble the folds of a cross-validation: their "
                        "probabilities are averaged (nnU-Net's default)")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (JSON value), e.g. --override 'network_def#channels=[8,16,32,64]'; "
                        "repeatable; use the same overrides as in training")
    parser.add_argument("--output-type", choices=tuple(OUTPUT_TYPES), default=None,
                        help="3D label maps as nifti (<case>.nii.gz), nrrd (<case>.nrrd) or dicom-seg (<case>.dcm, a "
                        "DICOM Segmentation of a DICOM series input; other inputs fail with one line each); default: "
                        "the input's kind (NIfTI for DICOM series)")
    parser.add_argument("--preview", action="store_true",
                        help="also write OUTPUT_DIR/preview/<case>.png: labels in colour over a few axial slices")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="per-case time split: read / preprocessing / network / postprocessing / write")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


class _TqdmHandler(logging.Handler):
    """Log lines on stderr that do not break the progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001
            self.handleError(record)


def _configure_logging(verbose: bool) -> logging.Handler:
    handler = _TqdmHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s" if verbose else "%(message)s"))
    package = logging.getLogger("custom_nets")
    package.addHandler(handler)
    package.setLevel(logging.DEBUG if verbose else logging.INFO)
    package.propagate = False
    return handler


def _check_trust(bundle: str, trusted: bool) -> str | None:
    """A bundle from outside this repository's ``bundles/`` folder needs ``--trust`` (it runs code)."""
    path = Path(bundle).expanduser().resolve()
    if trusted or (REPOSITORY_BUNDLES is not None and REPOSITORY_BUNDLES in path.parents):
        return None
    return (f"{bundle} is not a bundle of this repository: a bundle runs code (its configs' $-expressions and "
            "_target_ classes, and a packaged bundle's vendored custom_nets); pass --trust if you trust its source")


def _largest_input_bytes(input_dir: Path, limit: int = 5000) -> int:
    """Size of the largest of the first ``limit`` files of the input folder (an estimate of what a case needs)."""
    largest, seen = 0, 0
    for root, _, files in os.walk(input_dir):
        for name in files:
            try:
                largest = max(largest, os.stat(os.path.join(root, name)).st_size)
            except OSError:
                pass
            seen += 1
            if seen >= limit:
                return largest
    return largest


def _check_folders(input_dir: Path, output_dir: Path) -> str | None:
    if not input_dir.exists():
        return f"input folder {input_dir} does not exist"
    if not input_dir.is_dir():
        return f"input {input_dir} is not a folder"
    if output_dir.exists() and not output_dir.is_dir():
        return f"output {output_dir} exists and is not a folder"
    if output_dir.resolve() == input_dir.resolve():
        return "the output folder must differ from the input folder (outputs would be read as inputs on a re-run)"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (argparse exits with 2 itself on malformed options)."""
    args = build_parser().parse_args(argv)
    handler = _configure_logging(args.verbose)
    try:
        return _run(args)
    except KeyboardInterrupt:
        logger.error("interrupted; summary.csv lists the cases finished so far, a re-run does the rest")
        return EXIT_INTERRUPTED
    finally:
        package = logging.getLogger("custom_nets")
        package.removeHandler(handler)
        package.propagate = True


def _run(args: argparse.Namespace) -> int:
    from .io import MIN_FREE_BYTES, check_output_folder

    problem = _check_folders(args.input, args.output) or _check_trust(args.bundle, args.trust)
    if problem:
        return _usage_error(problem)
    # the output folder is checked before the model is built: a label map is far smaller than its input file
    needed = max(MIN_FREE_BYTES, _largest_input_bytes(args.input) // 4)
    created = None if args.output.exists() else args.output  # removed again if the run stops before writing
    problem = check_output_folder(args.output, needed)
    if problem:
        return _usage_error(problem)

    from custom_nets.bundle import quiet_library_warnings

    from .discovery import discover_cases, set_output_type
    from .errors import OutputError, SetupError
    from .model import BundleSegmenter
    from .runner import RunOptions, segment_cases

    quiet_library_warnings()
    start = time.perf_counter()
    try:
        segmenter = BundleSegmenter(
            args.bundle,
            device=args.device,
            checkpoint=args.checkpoint,
            overrides=args.override,
            sw_batch_size=args.sw_batch_size,
            overlap=args.overlap,
            amp=args.amp,
            backend=args.backend,
        )
    except SetupError as exc:
        return _usage_error(exc, created)
    with segmenter:
        spec = segmenter.spec
        try:
            cases = discover_cases(args.input, spec, exclude=[args.output])
            set_output_type(cases, args.output_type)
        except SetupError as exc:
            return _usage_error(exc, created)
        if not cases:
            kinds = "NIfTI, NRRD, MetaImage or DICOM" if spec.spatial_dims == 3 else "PNG, JPEG, TIFF or BMP"
            return _usage_error(f"no {kinds} images found in {args.input}", created)
        channels = ", ".join(spec.channel_name(i) for i in range(spec.num_channels))
        logger.info(f"{len(cases)} case(s) in {args.input}; bundle {segmenter.files.root.name} "
                    f"({spec.spatial_dims}D, {spec.num_channels} channel(s): {channels}) on {segmenter.device}, "
                    f"weights {', '.join(map(str, segmenter.checkpoints))}, backend {args.backend}"
                    + (", TTA" if args.tta or args.uncertainty else ""))
        from .outputs import probability_format

        try:
            probabilities = probability_format(args.save_probabilities, spec.spatial_dims)
        except ValueError as exc:
            return _usage_error(exc, created)
        settings = {"backend": args.backend, "amp": segmenter.amp, "overrides": list(args.override) or None}
        options = RunOptions(overwrite=args.overwrite, workers=args.workers, tta=args.tta or args.uncertainty,
                             preview=args.preview, verbose=args.verbose, progress=not args.no_progress,
                             allow_resample=args.allow_resample, settings=settings, free_bytes_needed=needed,
                             probabilities=probabilities, uncertainty=args.uncertainty, statistics=args.statistics)
        try:
            results = segment_cases(segmenter, cases, args.output, options)
        except OutputError as exc:
            return _usage_error(exc)
    counts = {status: sum(r.status == status for r in results) for status in ("ok", "failed", "skipped")}
    logger.info(f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped in "
                f"{time.perf_counter() - start:.1f} s; label maps and summary.csv in {args.output}")
    return EXIT_FAILED if counts["failed"] else EXIT_OK


def _usage_error(problem: object, created_output: Path | None = None) -> int:
    """Log ``error: <problem>``, remove the output folder this run created (for the check) if nothing was written to
    it, and return :data:`EXIT_USAGE`."""
    logger.error(f"error: {problem}")
    if created_output is not None:
        try:
            created_output.rmdir()
        except OSError:
            pass
    return EXIT_USAGE
