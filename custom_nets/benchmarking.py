"""One BraTS-sized case through ``scripts/segment.py``: the default path against the reference path (issue #18).

``python scripts/benchmark.py --brats-case`` calls :func:`run_brats_case`:

1. a model: the bundle's ``network_def`` trained briefly on small synthetic cases (:func:`train_brats_network`,
   about ``train_seconds``), or a given checkpoint;
2. one BraTS-sized case (4 x 240 x 240 x 155, 1 mm, a brain-like ellipsoid on an exactly zero background, one tumour)
   with a known label (:func:`synthetic_brats_case`, written as four NIfTI modality files);
3. ``scripts/segment.py`` on it twice, each in its own process: the **default** path (segment.py's defaults: the
   bundle's own inferer and backend) and the **reference** path (eager PyTorch, MONAI's ``SlidingWindowInferer``
   with ROI 64^3, overlap 0.5, gaussian blending, ``sw_batch_size`` 2, on the whole volume), with the same checkpoint;
4. the last line: both case times (``summary.csv`` ``seconds`` of the case: reading, preprocessing, network,
   postprocessing, writing; the command's start-up is reported separately), the speed-up, the share of voxels with
   the same label in both outputs, the whole-tumour Dice change (default minus reference, against the known label;
   WT = label > 0, whatever the label numbering) and the default path's peak RSS (``ru_maxrss`` of its process).

The synthetic generator lives here rather than in :mod:`custom_nets.data` so that the case does not change when the
demo data of the bundles change.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["REFERENCE_INFERER", "run_brats_case", "synthetic_brats_case", "train_brats_network"]

BRATS_SHAPE = (240, 240, 155)
MODALITIES = ("flair", "t1", "t1ce", "t2")
#: the reference path of the issue: MONAI's sliding window as the 3D bundles shipped it before issue #18
REFERENCE_INFERER = {"_target_": "SlidingWindowInferer", "roi_size": [64, 64, 64], "sw_batch_size": 2,
                     "overlap": 0.5, "mode": "gaussian"}
#: labels of the synthetic cases: necrosis, oedema, enhancing tumour (the whole tumour is label > 0)
NECROSIS, OEDEMA, ENHANCING = 1, 2, 3
# mean intensity per tissue (brain, oedema, enhancing rim, necrosis) and modality (FLAIR, T1, T1ce, T2)
_INTENSITY = {
    "brain": (300.0, 500.0, 480.0, 400.0),
    "oedema": (720.0, 400.0, 420.0, 800.0),
    "enhancing": (520.0, 450.0, 950.0, 600.0),
    "necrosis": (420.0, 180.0, 200.0, 920.0),
}


def _log(message: str) -> None:
    print(f"[brats-case {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def synthetic_brats_case(shape: Sequence[int] = BRATS_SHAPE, seed: int = 0,
                         brain_fraction: Sequence[float] = (0.58, 0.72, 0.88)) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic 4-modality case and its label: ``(image (4, *shape) float32, label shape uint8)``.

    A brain-like ellipsoid (semi-axes ``brain_fraction * shape / 2``, about 140 x 173 x 136 voxels in a BraTS volume)
    on an exactly zero background, with a smooth texture, a bias field and noise; inside it one tumour with an
    irregular outline: oedema (label 2) around an enhancing rim (3) around necrosis (1), each with its own contrast per
    modality. Sizes are in voxels (tumour core radius 9-16, oedema 1.5-2x that), so small training cases and the
    BraTS-sized case look alike locally. Deterministic in ``(shape, seed, brain_fraction)``.
    """
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    axes = [np.arange(s, dtype=np.float32) for s in shape]
    centre = [s / 2 + rng.uniform(-0.03, 0.03) * s for s in shape]
    semi = [f * s / 2 for f, s in zip(brain_fraction, shape)]
    x, y, z = np.meshgrid(*[(a - c) / r for a, c, r in zip(axes, centre, semi)], indexing="ij", sparse=True)
    brain = (x * x + y * y + z * z) <= 1.0
    # tumour centre: inside the inner 45 % of the brain
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    t_centre = [c + 0.45 * rng.uniform(0, 1) * d * r for c, d, r in zip(centre, direction, semi)]
    core_r = rng.uniform(9.0, 16.0)
    oedema_r = core_r * rng.uniform(1.5, 2.0)
    tx, ty, tz = np.meshgrid(*[a - c for a, c in zip(axes, t_centre)], indexing="ij", sparse=True)
    dist = np.sqrt(tx * tx + ty * ty + tz * tz) + 1e-6
    # irregular outline: the radius modulated by a few low-order angular waves
    wobble = np.zeros(np.broadcast_shapes(tx.shape, ty.shape, tz.shape), dtype=np.float32)
    for _ in range(4):
        k = rng.normal(size=3)
        wobble += np.float32(rng.uniform(0.04, 0.09)) * np.sin(
            (k[0] * tx + k[1] * ty + k[2] * tz) / dist * rng.uniform(2, 4) + rng.uniform(0, 2 * np.pi))
    scaled = dist / (1.0 + wobble)
    label = np.zeros(shape, dtype=np.uint8)
    label[(scaled <= oedema_r) & brain] = OEDEMA
    label[(scaled <= core_r) & brain] = ENHANCING
    label[(scaled <= core_r * rng.uniform(0.45, 0.65)) & brain] = NECROSIS
    # texture and bias field: sums of a few smooth waves over the volume
    def smooth_field(amplitude: float, scale: float) -> np.ndarray:
        field = np.zeros(label.shape, dtype=np.float32)
        for _ in range(3):
            k = rng.normal(size=3) / scale
            field += np.float32(amplitude) * np.sin(
                k[0] * axes[0][:, None, None] + k[1] * axes[1][None, :, None] + k[2] * axes[2][None, None, :]
                + rng.uniform(0, 2 * np.pi)).astype(np.float32)
        return field

    bias = 1.0 + smooth_field(0.05, 60.0)
    texture = smooth_field(0.04, 6.0)
    image = np.zeros((4, *shape), dtype=np.float32)
    tissues = {"brain": brain & (label == 0), "oedema": label == OEDEMA, "enhancing": label == ENHANCING,
               "necrosis": label == NECROSIS}
    for m in range(4):
        channel = np.zeros(shape, dtype=np.float32)
        for tissue, mask in tissues.items():
            channel[mask] = _INTENSITY[tissue][m]
        channel *= bias * (1.0 + texture)
        channel += rng.normal(0.0, 25.0, size=shape).astype(np.float32)
        channel[~brain] = 0.0
        np.maximum(channel, 1.0, out=channel, where=brain)  # the brain stays nonzero
        image[m] = channel
    return image, label


def _regions(label: Any) -> Any:
    """``(..., *S)`` label -> ``(..., 3, *S)`` float regions TC (1 or 3), WT (> 0), ET (3), as the bundles train."""
    import torch

    return torch.stack([(label == NECROSIS) | (label == ENHANCING), label > 0, label == ENHANCING], dim=-4).float()


def train_brats_network(network: Any, cases: Sequence[tuple[np.ndarray, np.ndarray]], seconds: float = 150.0,
                        max_iterations: int = 400, patch: int = 48, batch: int = 2, learning_rate: float = 3e-3,
                        seed: int = 0) -> dict[str, Any]:
    """Train ``network`` (3 sigmoid region outputs) on random ``patch``^3 crops of ``cases`` for about ``seconds``.

    Images are normalised as the bundles do (``NormalizeIntensity(nonzero=True, channel_wise=True)``); two thirds of
    the crops are centred on a tumour voxel; loss ``DiceFocalLoss(sigmoid=True)``, Adam. Returns the iteration count,
    seconds and the last losses. The network is left in eval mode.
    """
    import torch
    from monai.losses import DiceFocalLoss
    from monai.transforms import NormalizeIntensity

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    normalise = NormalizeIntensity(nonzero=True, channel_wise=True)
    data = [(torch.as_tensor(normalise(torch.from_numpy(img))).float(), torch.from_numpy(lab.astype(np.int64)))
            for img, lab in cases]
    tumour = [np.argwhere(lab > 0) for _, lab in cases]
    loss_fn = DiceFocalLoss(sigmoid=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5)
    optimizer = torch.optim.Adam(network.parameters(), lr=learning_rate)
    network.train()
    losses: list[float] = []
    start = time.perf_counter()
    iteration = 0
    while iteration < max_iterations and time.perf_counter() - start < seconds:
        images, targets = [], []
        for _ in range(batch):
            i = int(rng.integers(len(data)))
            image, label = data[i]
            size = image.shape[1:]
            if rng.uniform() < 2 / 3:
                centre = tumour[i][int(rng.integers(len(tumour[i])))]
            else:
                centre = [int(rng.integers(s)) for s in size]
            lo = [int(min(max(c - patch // 2, 0), s - patch)) for c, s in zip(centre, size)]
            region = tuple(slice(a, a + patch) for a in lo)
            images.append(image[(slice(None), *region)])
            targets.append(_regions(label[region]))
        x, y = torch.stack(images), torch.stack(targets)
        optimizer.zero_grad(set_to_none=True)
        out = network(x)
        if out.dim() == x.dim() + 1:  # deep supervision: the final head
            out = out[:, 0]
        loss = loss_fn(out, y)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        iteration += 1
        if iteration % 20 == 0:
            _log(f"training: iteration {iteration}, loss {np.mean(losses[-20:]):.3f}")
    network.eval()
    return {"iterations": iteration, "seconds": time.perf_counter() - start, "patch": patch, "batch": batch,
            "last_losses": losses[-10:]}


def _write_case(folder: Path, name: str, image: np.ndarray) -> Path:
    """The case as four NIfTI modality files ``<name>_<modality>.nii.gz`` (1 mm, identity affine: RAS)."""
    import nibabel as nib

    case_dir = folder / name
    case_dir.mkdir(parents=True, exist_ok=True)
    for channel, modality in zip(image, MODALITIES):
        nib.save(nib.Nifti1Image(channel, np.eye(4)), str(case_dir / f"{name}_{modality}.nii.gz"))
    return case_dir


def _run_segment(bundle: Path, input_dir: Path, output_dir: Path, checkpoint: Path, extra: Sequence[str],
                 threads: int | None) -> dict[str, Any]:
    """``scripts/segment.py`` in its own process: wall seconds, its peak RSS (``wait4``), summary.csv figures."""
    script = Path(__file__).resolve().parents[1] / "scripts" / "segment.py"
    cmd = [sys.executable, str(script), "--bundle", str(bundle), "-i", str(input_dir), "-o", str(output_dir),
           "--checkpoint", str(checkpoint), "--device", "cpu", "--overwrite", "--no-progress", *extra]
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    stderr_path = output_dir.parent / f"{output_dir.name}.stderr.txt"
    start = time.perf_counter()
    with open(stderr_path, "w") as err:
        proc = subprocess.Popen(cmd, stdout=err, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    row: dict[str, Any] = {"command": cmd[1:], "exit_code": proc.returncode, "wall_s": wall,
                           "peak_rss_mb": usage.ru_maxrss / 1024}
    summary = output_dir / "summary.csv"
    if proc.returncode != 0 or not summary.is_file():
        tail = stderr_path.read_text(errors="replace").strip().splitlines()[-6:]
        raise RuntimeError(f"segment.py failed (exit {proc.returncode}): " + " | ".join(tail))
    with summary.open() as f:
        rows = list(csv.DictReader(f))
    if len(rows) != 1 or rows[0].get("status") != "ok":
        raise RuntimeError(f"segment.py did not segment the case: {rows}")
    row["summary"] = rows[0]
    row["case_s"] = float(rows[0]["seconds"])
    outputs = [p for p in output_dir.rglob("*.nii.gz")]
    if len(outputs) != 1:
        raise RuntimeError(f"expected one label map in {output_dir}, found {len(outputs)}")
    row["output"] = str(outputs[0])
    return row


def _dice(prediction: np.ndarray, truth: np.ndarray) -> float:
    denominator = int(prediction.sum()) + int(truth.sum())
    return 1.0 if denominator == 0 else 2.0 * int(np.logical_and(prediction, truth).sum()) / denominator


def run_brats_case(bundle: str | os.PathLike, workdir: str | os.PathLike, checkpoint: str | os.PathLike | None = None,
                   train_seconds: float = 150.0, shape: Sequence[int] = BRATS_SHAPE, threads: int | None = None,
                   default_args: Sequence[str] = (), seed: int = 1000) -> dict[str, Any]:
    """The whole measurement (see the module docstring); returns every figure, ``line`` the summary line."""
    import nibabel as nib
    import torch
    from monai.bundle import ConfigParser

    bundle, workdir = Path(bundle).resolve(), Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"bundle": str(bundle), "shape": list(shape)}
    if checkpoint is None:
        parser = ConfigParser()
        parser.read_meta(str(bundle / "configs" / "metadata.json"))
        parser.read_config(str(bundle / "configs" / "inference.json"))
        parser["bundle_root"] = str(bundle)
        network = parser.get_parsed_content("network_def")
        _log(f"generating 6 training cases of 112 x 112 x 96; training {type(network).__name__} for about "
             f"{train_seconds:.0f} s")
        cases = [synthetic_brats_case((112, 112, 96), seed=s, brain_fraction=(0.85, 0.85, 0.85)) for s in range(6)]
        result["training"] = train_brats_network(network, cases, seconds=train_seconds)
        checkpoint = workdir / "model.pt"
        torch.save(network.state_dict(), checkpoint)
        del network, cases
    result["checkpoint"] = str(checkpoint)
    _log(f"generating the BraTS-sized case {'x'.join(map(str, shape))} (seed {seed})")
    image, label = synthetic_brats_case(shape, seed=seed)
    inputs = workdir / "case"
    _write_case(inputs, "SYNTH_000", image)
    nonzero_box = [int(a.max() - a.min() + 1) for a in np.nonzero(image.any(axis=0))]
    result["case"] = {"shape": [4, *shape], "brain_box": nonzero_box, "tumour_voxels": int((label > 0).sum())}
    del image

    runs = {}
    reference_args = ["--backend", "eager", "--override", "inferer=" + json.dumps(REFERENCE_INFERER)]
    for name, extra in (("default", list(default_args)), ("reference", reference_args)):
        _log(f"segment.py, {name} path{': ' + ' '.join(extra) if extra else ' (its defaults)'}")
        runs[name] = _run_segment(bundle, inputs, workdir / f"out_{name}", Path(checkpoint), extra, threads)
        _log(f"  {name}: case {runs[name]['case_s']:.1f} s, wall {runs[name]['wall_s']:.1f} s, "
             f"peak RSS {runs[name]['peak_rss_mb']:.0f} MB")
    labels = {k: np.asarray(nib.load(r["output"]).dataobj) for k, r in runs.items()}
    if labels["default"].shape != label.shape or labels["reference"].shape != label.shape:
        raise RuntimeError(f"label maps of shape {labels['default'].shape} / {labels['reference'].shape}, "
                           f"expected {label.shape}")
    agreement = float(np.mean(labels["default"] == labels["reference"]))
    truth = label > 0
    dice = {k: _dice(v > 0, truth) for k, v in labels.items()}
    speedup = runs["reference"]["case_s"] / runs["default"]["case_s"]
    result.update(runs=runs, agreement=agreement, wt_dice=dice, wt_dice_change=dice["default"] - dice["reference"],
                  speedup=speedup, peak_rss_mb=runs["default"]["peak_rss_mb"])
    result["line"] = (
        f"brats case: default {runs['default']['case_s']:.1f} s, reference {runs['reference']['case_s']:.1f} s, "
        f"speed-up {speedup:.2f}x, label agreement {100 * agreement:.2f} %, WT Dice change "
        f"{dice['default'] - dice['reference']:+.4f}, peak RSS {runs['default']['peak_rss_mb']:.0f} MB"
    )
    return result


def window_count(spatial: Sequence[int], roi: Sequence[int], overlap: float) -> int:
    """Number of windows MONAI's sliding window uses (as ``monai.inferers.utils._get_scan_interval``)."""
    count = 1
    for size, r in zip(spatial, roi):
        if size <= r:
            continue
        interval = max(int(r * (1 - overlap)), 1)
        count *= math.ceil((size - r) / interval) + 1
    return count


def measure(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds of one call of ``fn`` and its result."""
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


#: the levers of issue #18, each alone and together: name -> (inferer settings, backend); "crop" = the foreground box
LEVERS: dict[str, tuple[dict[str, Any], str]] = {
    "reference (64^3, overlap 0.5, gaussian, whole volume)": ({"roi": 64, "overlap": 0.5, "crop": False}, "eager"),
    "foreground crop only": ({"roi": 64, "overlap": 0.5, "crop": True}, "eager"),
    "ROI 96^3 only": ({"roi": 96, "overlap": 0.5, "crop": False}, "eager"),
    "overlap 0.25 only": ({"roi": 64, "overlap": 0.25, "crop": False}, "eager"),
    "constant blending only": ({"roi": 64, "overlap": 0.5, "crop": False, "mode": "constant"}, "eager"),
    "onnxruntime only": ({"roi": 64, "overlap": 0.5, "crop": False}, "onnxruntime"),
    "crop + ROI 96^3 + overlap 0.25 (default)": ({"roi": 96, "overlap": 0.25, "crop": True}, "eager"),
    "crop + ROI 96^3 + overlap 0": ({"roi": 96, "overlap": 0.0, "crop": True}, "eager"),
    "crop + ROI 128^3 + overlap 0.25": ({"roi": 128, "overlap": 0.25, "crop": True}, "eager"),
    "default + onnxruntime": ({"roi": 96, "overlap": 0.25, "crop": True}, "onnxruntime"),
}


def _labels_from_regions(probabilities: Any) -> np.ndarray:
    """``(3, *S)`` TC/WT/ET probabilities -> label map (ET 3, else TC 1, else WT 2, else 0)."""
    regions = np.asarray(probabilities) > 0.5
    label = np.zeros(regions.shape[1:], dtype=np.uint8)
    label[regions[1]] = OEDEMA
    label[regions[0]] = NECROSIS
    label[regions[2]] = ENHANCING
    return label


#: the case of :func:`measure_levers`: the BraTS proportions at 2/3 of the size (the reference takes 48 windows, not 196)
LEVER_SHAPE = (160, 160, 104)


def measure_levers(bundle: str | os.PathLike, checkpoint: str | os.PathLike, shape: Sequence[int] = LEVER_SHAPE,
                   seed: int = 1000, levers: Sequence[str] | None = None, workdir: str | os.PathLike | None = None,
                   sw_batch_size: int = 2) -> list[dict[str, Any]]:
    """Each lever of :data:`LEVERS` on one synthetic case in this process: seconds of the inferer (network and
    stitching; the case is preprocessed once), windows, label agreement with the reference lever and WT Dice against
    the known label. ROIs above 64^3 use ``sw_batch_size`` 1."""
    import torch

    from custom_nets.inference import BundleSegmenter
    from custom_nets.inferers import ForegroundSlidingWindowInferer, foreground_box

    image, label = synthetic_brats_case(shape, seed=seed)
    truth = label > 0
    names = list(levers or LEVERS)
    rows: list[dict[str, Any]] = []
    reference_labels = None
    segmenters: dict[str, Any] = {}
    try:
        for name in names:
            settings, backend = LEVERS[name]
            if backend not in segmenters:
                segmenters[backend] = BundleSegmenter(bundle, device="cpu", checkpoint=checkpoint, backend=backend,
                                                      workdir=workdir)
            seg = segmenters[backend]
            if "batch" not in segmenters:
                meta = {"affine": np.eye(4), "filename_or_obj": "case"}
                from monai.data import MetaTensor

                prepared = seg.prepare(MetaTensor(torch.from_numpy(image), affine=torch.eye(4, dtype=torch.float64),
                                                  meta=meta))
                batch = prepared["image"]
                segmenters["batch"] = torch.as_tensor(batch.as_tensor() if hasattr(batch, "as_tensor") else batch)[None]
            batch = segmenters["batch"]
            roi = [settings["roi"]] * 3
            kwargs = dict(roi_size=roi, sw_batch_size=sw_batch_size if settings["roi"] <= 64 else 1,
                          overlap=settings["overlap"], mode=settings.get("mode", "gaussian"))
            inferer = ForegroundSlidingWindowInferer(**kwargs, crop_foreground=settings["crop"])
            spatial = list(batch.shape[2:])
            if settings["crop"]:
                box = foreground_box(batch, inferer.margin)
                spatial = [e - s for s, e in zip(*box)]
            windows = window_count(spatial, roi, settings["overlap"])
            _log(f"lever '{name}': {windows} windows of {settings['roi']}^3 ({backend})")
            with torch.no_grad():
                seconds, out = measure(lambda: inferer(batch, seg.backend))
            probabilities = torch.sigmoid(torch.as_tensor(out)[0]).numpy()
            labels = _labels_from_regions(probabilities)
            if reference_labels is None:
                reference_labels = labels
            row = {"lever": name, "settings": settings, "backend": backend, "windows": windows, "seconds": seconds,
                   "agreement": float(np.mean(labels == reference_labels)), "wt_dice": _dice(labels > 0, truth)}
            rows.append(row)
            _log(f"  {seconds:.1f} s, agreement {100 * row['agreement']:.2f} %, WT Dice {row['wt_dice']:.4f}")
    finally:
        for key, seg in segmenters.items():
            if key != "batch":
                seg.close()
    return rows
