"""The measuring core of ``scripts/benchmark.py`` and ``scripts/profile_nets.py`` (issues #9, #18 and #20).

- Network measurements: :func:`count_flops` (``FlopCounterMode`` on the plain network, with formulas for CPU flash
  attention and oneDNN convolutions), :func:`time_median`, :func:`time_paired` (the network alternating with a
  reference), :func:`reference_callable` / :func:`reference` (matmul and convolution throughput),
  :func:`profile_forward`, :func:`bundle_spec` / :func:`build_network` / :func:`all_bundles`, :func:`window_count`.
- The BraTS case (issue #18): :func:`run_brats_case`, :func:`measure_levers`, :func:`synthetic_brats_case`,
  :func:`train_brats_network`.
- Training throughput (issue #18): :func:`measure_training` (a bundle's real training iteration against its pure
  train step, :func:`train_step`, with the cache and loader settings of :func:`training_settings`).

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
import statistics
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "LEVERS", "REFERENCE_INFERER", "all_bundles", "build_network", "bundle_spec", "count_flops", "measure_levers",
    "profile_forward", "reference", "reference_callable", "run_brats_case", "synthetic_brats_case", "time_median",
    "time_paired", "train_brats_network", "train_step", "training_settings", "measure_training", "overhead_bound",
    "window_count",
]

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


# ----------------------------------------------------------------------------------------------------------------------
# Measuring core of scripts/benchmark.py and scripts/profile_nets.py (FLOPs, paired timing, profiles, bundle specs)
# ----------------------------------------------------------------------------------------------------------------------

BUNDLES_DIR = Path(__file__).resolve().parents[1] / "bundles"
ROI_2D = [256, 256]  # 2D bundles infer whole images (SimpleInferer); their native image size is 256 x 256
SW_BATCH_2D = 4  # 2D bundles have no sliding window: 4 windows of 256^2 = one 512^2 image per network call

# op-name fragments -> category, for the profile summaries (first match wins)
OP_CATEGORIES = [
    ("conv", ("conv", "mkldnn_convolution", "slow_conv")),
    ("interpolation", ("upsample", "interpolate", "grid_sampler")),
    ("norm", ("norm", "batch_norm", "instance_norm", "group_norm", "layer_norm", "var_mean", "std")),
    ("pooling", ("pool",)),
    ("activation", ("relu", "clamp", "sigmoid", "gelu", "silu", "prelu", "elu", "tanh", "hardtanh")),
    ("matmul/attention", ("addmm", "bmm", "matmul", "linear", "einsum", "scaled_dot_product", "softmax", "aten::mm")),
    ("cat/copy", ("cat", "copy_", "clone", "contiguous", "to_copy", "stack", "pad", "index", "slice", "permute")),
    ("elementwise", ("add", "mul", "sub", "div", "where", "fill", "zero", "mean", "sum")),
]



def bundle_spec(name: str) -> dict[str, Any]:
    """Network spec of a bundle from its configs: ROI, sliding-window settings, input channels."""
    root = BUNDLES_DIR / name
    infer = json.loads((root / "configs" / "inference.json").read_text())
    meta = json.loads((root / "configs" / "metadata.json").read_text())
    net = infer["network_def"]
    image = meta["network_data_format"]["inputs"]["image"]
    dims = len(image["spatial_shape"])
    inferer = infer.get("inferer", {})
    sliding = str(inferer.get("_target_", "")).endswith("SlidingWindowInferer")
    roi = list(infer["roi_size"]) if sliding and "roi_size" in infer else list(ROI_2D if dims == 2 else [64] * 3)
    sw_batch = int(infer.get("sw_batch_size", 1)) if sliding else SW_BATCH_2D
    overlap = float(inferer.get("overlap", 0.25)) if sliding else 0.0
    config = {k: v for k, v in net.items() if k not in ("_target_", "spatial_dims", "in_channels", "out_channels")}
    return {
        "name": name, "kind": "bundle", "bundle": str(root), "spatial_dims": dims,
        "class": str(net["_target_"]).rsplit(".", 1)[-1], "config": config,
        "in_channels": int(image["num_channels"]), "roi": roi, "sw_batch_size": sw_batch,
        "bundle_overlap": overlap, "bundle_inferer": "sliding window" if sliding else "whole image (SimpleInferer)",
    }  # fmt: skip


def all_bundles() -> list[str]:
    return sorted(p.name for p in BUNDLES_DIR.iterdir() if (p / "configs" / "inference.json").is_file())


def _sync(device: Any) -> None:
    import torch

    if getattr(device, "type", str(device)).startswith("cuda"):
        torch.cuda.synchronize(device)


def time_median(fn: Callable[[], Any], repeats: int, warmup: int, device: Any = "cpu") -> tuple[float, list[float]]:
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs (and every run's seconds)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def count_flops(fn: Callable[[], Any]) -> tuple[int, dict[str, int]]:
    """Total FLOPs of ``fn()`` and FLOPs per aten op, with ``FlopCounterMode``.

    Count on the plain network (before :func:`custom_nets.inference.speedups.apply`): attention is then counted at
    its true head width, whereas the zero channels the speed-ups pad onto narrow heads for the CPU kernel (a
    kernel-speed device that leaves the result unchanged) would count as work done."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, custom_mapping=_extra_flop_formulas())
    with counter:
        fn()
    by_op = {str(op): int(n) for op, n in counter.get_flop_counts().get("Global", {}).items()}
    return int(counter.get_total_flops()), by_op


def _extra_flop_formulas() -> dict[Any, Callable[..., int]]:
    """FLOP formulas FlopCounterMode lacks: the CPU flash attention kernel (scaled_dot_product_attention on CPU)."""
    import torch
    from torch.utils import flop_counter

    formulas = {}
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if op is not None and hasattr(flop_counter, "sdpa_flop_count"):
        def sdpa_cpu(query, key, value, *args, out_shape=None, **kwargs) -> int:
            shape = lambda t: tuple(getattr(t, "shape", t))  # noqa: E731 - the counter passes shapes
            return flop_counter.sdpa_flop_count(shape(query), shape(key), shape(value))

        formulas[op] = sdpa_cpu
    # networks that call the oneDNN kernel directly (custom_nets.blocks.onednn registers this formula itself; counted
    # here too so a convolution counts the same FLOPs whichever kernel runs it)
    mkldnn = getattr(torch.ops.aten, "mkldnn_convolution", None)
    if mkldnn is not None and mkldnn not in flop_counter.flop_registry:
        def mkldnn_conv(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
            return flop_counter.conv_flop_count(tuple(x_shape), tuple(w_shape), tuple(out_shape), transposed=False)

        formulas[mkldnn] = mkldnn_conv
    return formulas


def time_paired(fn: Callable[[], Any], ref: Callable[[], Any], repeats: int, warmup: int, device: Any,
                timer: Callable[[], float] = time.perf_counter) -> tuple[list[float], list[float]]:  # fmt: skip
    """Seconds of ``ref()`` and ``fn()`` run alternately (ref, fn, ref, fn, ...) after warm-up: each pair sees the
    same machine load, so the ratio of a pair survives load changes on a shared machine. ``timer``: wall clock by
    default; ``time.thread_time`` (with one torch thread) is nearly insensitive to other processes."""
    for _ in range(warmup):
        ref()
        fn()
    _sync(device)
    ref_times, times = [], []
    for _ in range(max(1, repeats)):
        for f, out in ((ref, ref_times), (fn, times)):
            start = timer()
            f()
            _sync(device)
            out.append(timer() - start)
    return ref_times, times


def reference_callable(quick: bool, device: Any) -> tuple[Callable[[], Any], int, str]:
    """The Conv3d(32->32, 3^3, pad 1) reference as a callable, its FLOPs and description."""
    import torch

    size = [32] * 3 if quick else [64] * 3
    conv = torch.nn.Conv3d(32, 32, 3, padding=1).to(device).eval()
    x = torch.randn(1, 32, *size, generator=torch.Generator().manual_seed(0)).to(device)
    fn = lambda: conv(x)  # noqa: E731
    flops, _ = count_flops(fn)
    return fn, flops, f"Conv3d(32->32, k3, pad 1) on 1x32x{'x'.join(map(str, size))}"


def reference(kind: str, quick: bool, repeats: int, warmup: int, device: Any) -> dict[str, Any]:
    """GFLOP/s of a matmul, a Conv3d(32->32, 3^3, pad 1) or a Conv2d(32->32, 3^2, pad 1)."""
    import torch

    gen = torch.Generator().manual_seed(0)
    if kind == "matmul":
        n = 1024 if quick else 2048
        a, b = (torch.randn(n, n, generator=gen).to(device) for _ in range(2))
        fn, shape = (lambda: torch.mm(a, b)), f"{n}x{n} @ {n}x{n}"
    else:
        dims = 3 if kind == "conv3d" else 2
        size = ([32] * 3 if quick else [64] * 3) if dims == 3 else ([128] * 2 if quick else [256] * 2)
        conv = (torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d)(32, 32, 3, padding=1).to(device).eval()
        x = torch.randn(1, 32, *size, generator=gen).to(device)
        fn, shape = (lambda: conv(x)), f"Conv{dims}d(32->32, k3, pad 1) on 1x32x{'x'.join(map(str, size))}"
    with torch.inference_mode():
        flops, _ = count_flops(fn)
        median, times = time_median(fn, repeats, warmup, device)
    return {"what": shape, "flops": flops, "seconds": median, "times": times, "gflops_per_s": flops / median / 1e9}


def build_network(spec: dict[str, Any]) -> Any:
    if spec["kind"] == "bundle":
        from monai.bundle import ConfigParser

        root = Path(spec["bundle"])
        parser = ConfigParser()
        parser.read_meta(str(root / "configs" / "metadata.json"))
        parser.read_config(str(root / "configs" / "inference.json"))
        parser["bundle_root"] = str(root)
        return parser.get_parsed_content("network_def")
    import monai.networks.nets as nets

    cls = getattr(nets, spec["class"])
    kwargs = dict(spec["config"], spatial_dims=spec["spatial_dims"], in_channels=spec["in_channels"],
                  out_channels=spec["out_channels"])  # fmt: skip
    return cls(**kwargs)


def _peak_rss_mb() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def _first(output: Any) -> Any:
    """The segmentation output of a network that returns several (deep supervision): the first one."""
    from custom_nets.inference.backends import first_output

    return first_output(output)


def categorise(op: str) -> str:
    name = op.lower()
    for category, fragments in OP_CATEGORIES:
        if any(f in (name if f.startswith("aten::") else name.replace("aten::", "")) for f in fragments):
            return category
    return "other"


def profile_forward(fn: Callable[[], Any], runs: int, top: int) -> dict[str, Any]:
    """Self CPU time per op and per op category over ``runs`` forward passes (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(runs):
            fn()
    events = [(e.key, e.self_cpu_time_total, e.count) for e in prof.key_averages()]
    # which convolutions ran on PyTorch's slow (im2col + GEMM) paths or transposed paths instead of oneDNN
    slow = [e for e in prof.key_averages(group_by_input_shape=True)
            if any(k in e.key for k in ("slow_conv", "conv_transpose", "_convolution")) and e.self_cpu_time_total > 0]
    slow_shapes = [{"op": e.key, "input_shapes": [list(x) for x in e.input_shapes[:2]],
                    "self_cpu_ms_per_run": e.self_cpu_time_total / 1000 / runs, "calls_per_run": e.count / runs}
                   for e in sorted(slow, key=lambda e: -e.self_cpu_time_total)[:10]]
    total = sum(t for _, t, _ in events) or 1.0
    ops = sorted(events, key=lambda e: -e[1])
    categories: dict[str, float] = {}
    for key, t, _ in events:
        categories[categorise(key)] = categories.get(categorise(key), 0.0) + t
    return {
        "runs": runs,
        "total_self_cpu_ms_per_run": total / 1000 / runs,
        "top_ops": [{"op": k, "self_cpu_ms_per_run": t / 1000 / runs, "share": t / total, "calls_per_run": c / runs}
                    for k, t, c in ops[:top]],
        "categories": {k: {"self_cpu_ms_per_run": v / 1000 / runs, "share": v / total}
                       for k, v in sorted(categories.items(), key=lambda kv: -kv[1])},
        "slow_conv_calls": slow_shapes,
    }  # fmt: skip


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
                   default_args: Sequence[str] = (), seed: int = 1000,
                   variants: Sequence[tuple[str, Sequence[str]]] = ()) -> dict[str, Any]:
    """The whole measurement (see the module docstring); returns every figure, ``line`` the summary line.

    ``variants``: further ``(name, segment.py arguments)`` runs on the same case, each compared with the reference
    like the default path (``variant_lines``), e.g. ``("onnxruntime", ["--backend", "onnxruntime"])``."""
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
    for name, extra in (("default", list(default_args)), ("reference", reference_args),
                        *((n, list(a)) for n, a in variants)):
        _log(f"segment.py, {name} path{': ' + ' '.join(extra) if extra else ' (its defaults)'}")
        runs[name] = _run_segment(bundle, inputs, workdir / f"out_{name}", Path(checkpoint), extra, threads)
        _log(f"  {name}: case {runs[name]['case_s']:.1f} s, wall {runs[name]['wall_s']:.1f} s, "
             f"peak RSS {runs[name]['peak_rss_mb']:.0f} MB")
    labels = {k: np.asarray(nib.load(r["output"]).dataobj) for k, r in runs.items()}
    for name, value in labels.items():
        if value.shape != label.shape:
            raise RuntimeError(f"the {name} path wrote a label map of shape {value.shape}, expected {label.shape}")
    agreement = float(np.mean(labels["default"] == labels["reference"]))
    truth = label > 0
    dice = {k: _dice(v > 0, truth) for k, v in labels.items()}
    speedup = runs["reference"]["case_s"] / runs["default"]["case_s"]
    result.update(runs=runs, agreement=agreement, wt_dice=dice, wt_dice_change=dice["default"] - dice["reference"],
                  speedup=speedup, peak_rss_mb=runs["default"]["peak_rss_mb"])
    result["variant_lines"] = [
        f"{name}: {runs[name]['case_s']:.1f} s, speed-up {runs['reference']['case_s'] / runs[name]['case_s']:.2f}x, "
        f"label agreement {100 * float(np.mean(labels[name] == labels['reference'])):.2f} %, WT Dice change "
        f"{dice[name] - dice['reference']:+.4f}, peak RSS {runs[name]['peak_rss_mb']:.0f} MB"
        for name, _ in variants
    ]
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


#: the case of :func:`measure_levers`: the BraTS proportions at 2/3 of the size (the reference takes 48 windows,
#: not 196)
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
                from monai.data import MetaTensor
                from monai.utils import MetaKeys, SpaceKeys

                meta = {MetaKeys.ORIGINAL_AFFINE: np.eye(4), MetaKeys.SPATIAL_SHAPE: np.asarray(image.shape[1:]),
                        MetaKeys.ORIGINAL_CHANNEL_DIM: 0, MetaKeys.SPACE: SpaceKeys.RAS, "filename_or_obj": "case"}

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


# ----------------------------------------------------------------------------------------------------------------------
# Training throughput (issue #18, item 3): a bundle's real training iteration against its pure train step
# ----------------------------------------------------------------------------------------------------------------------


def _training_log(message: str) -> None:
    print(f"[training {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _config_value(parser: Any, key: str) -> Any:
    """The parsed value of ``key`` in a bundle config, or None when the config has no such id."""
    return parser.get_parsed_content(key) if key in parser else None


def _plain(value: Any) -> Any:
    """A JSON-ready copy of a config value (tensors and tuples as lists, other objects by name)."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def training_settings(parser: Any, trainer: Any, batch: Any) -> dict[str, Any]:
    """The cache and loader settings of a parsed ``train.json`` (what the training-throughput table reports)."""
    loader = trainer.data_loader
    dataset = loader.dataset
    image = batch["image"] if isinstance(batch, dict) else batch[0]
    patch = next((_plain(_config_value(parser, k)) for k in ("roi_size", "image_size") if k in parser), None)
    return {
        "dataset": type(dataset).__name__,
        "cache_rate": _plain(_config_value(parser, "train#dataset#cache_rate")),
        "cached_items": getattr(dataset, "cache_num", None),
        "cases": len(dataset),
        "loader": type(loader).__name__,
        "num_workers": int(getattr(loader, "num_workers", 0)),
        "persistent_workers": bool(getattr(loader, "persistent_workers", False)),
        "pin_memory": bool(getattr(loader, "pin_memory", False)),
        "batch_size": getattr(loader, "batch_size", None),
        "num_samples": _plain(_config_value(parser, "num_samples")),
        "patch": patch,
        "batch_shape": list(image.shape),
        "epoch_length": len(loader),
        "val_interval": _plain(_config_value(parser, "val_interval")),
        "amp": bool(trainer.amp),
        "device": str(trainer.state.device),
    }


def train_step(trainer: Any, inputs: Any, targets: Any, args: Sequence[Any] = (),
               kwargs: dict[str, Any] | None = None) -> Callable[[], Any]:
    """The trainer's forward + loss + backward + optimizer step on a batch already on its device, as
    ``monai.engines.SupervisedTrainer._iteration`` computes it (its AMP autocast and gradient scaler included) without
    the engine's events: no loading, no handlers, no decollation. Returns the step as a callable."""
    import torch

    network, optimizer, loss_function, inferer = trainer.network, trainer.optimizer, trainer.loss_function, trainer.inferer
    scaler = trainer.scaler if trainer.amp else None
    kwargs = kwargs or {}
    device_type = torch.device(trainer.state.device).type

    def step() -> Any:
        network.train()
        optimizer.zero_grad(set_to_none=trainer.optim_set_to_none)
        if scaler is not None:
            with torch.autocast(device_type, **trainer.amp_kwargs):
                loss = loss_function(inferer(inputs, network, *args, **kwargs), targets).mean()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss = loss_function(inferer(inputs, network, *args, **kwargs), targets).mean()
            loss.backward()
            optimizer.step()
        return loss

    return step


def _item_seconds(dataset: Any, count: int) -> float:
    """Mean seconds of one item of ``dataset`` (its first ``count`` items in turn) with one torch thread, as a loader
    worker computes it (``torch.utils.benchmark.Timer``, which adds two warm-up items of its own)."""
    from torch.utils.benchmark import Timer

    state = {"i": 0}

    def item() -> Any:
        state["i"] = (state["i"] + 1) % count
        return dataset[state["i"]]

    return Timer(stmt="item()", globals={"item": item}, num_threads=1).timeit(count).mean


def overhead_bound(result: dict[str, Any]) -> float | None:
    """``1 + (data wait + loader CPU) / pure`` of a :func:`measure_training` result: the ratio the pipeline can cost
    at most when the computation keeps every core busy (the trainer's waits plus all the loader's CPU work taken from
    the computation). Built from a wait and two CPU-bound times, it moves far less with other processes' load than
    the measured ratio, whose iteration and pure times are taken at different moments."""
    parts = (result.get("data_wait_s"), result.get("loader_cpu_s"), result.get("pure_s"))
    if any(p is None for p in parts) or not parts[2]:
        return None
    return 1.0 + (parts[0] + parts[1]) / parts[2]


def measure_training(bundle: str | os.PathLike, workdir: str | os.PathLike, iterations: int = 10, warmup: int = 2,
                     overrides: dict[str, Any] | None = None, samples: int = 4,
                     log: Callable[[str], None] = _training_log) -> dict[str, Any]:
    """Seconds of a training iteration of a bundle's real pipeline against its pure train step on the same batch.

    ``configs/train.json`` runs through ``monai.bundle.ConfigWorkflow`` as ``python -m monai.bundle run training``
    runs it (its dataset and cache, data loader and workers, augmentation, loss, optimizer, AMP setting, handlers and
    periodic validation), on the bundle's demo data generated in ``workdir`` (checkpoints and logs go there too:
    nothing is written in the bundle). The trainer runs ``warmup + iterations`` iterations and stops (without its
    end-of-run validation); ignite's events time each measured iteration:

    - ``iteration_s``: mean wall seconds from one iteration's end to the next over the measured iterations (epoch
      boundaries included: loader restarts, checkpoints, logging), validation runs excluded (``validation_s``);
    - ``data_wait_s``: mean seconds the trainer waited for a batch (the loader not keeping up);
    - ``step_s``: mean seconds from a batch's arrival to the end of its iteration (train step and iteration handlers);
    - ``pure_s``: median seconds of :func:`train_step` on the last full batch, already on the device, ``iterations`` runs
      after one warm-up run (:func:`time_median`; ``torch.utils.benchmark.Timer.timeit`` would add two warm-up runs
      per call, tripling a 30-s step on a loaded machine);
    - ``ratio``: ``iteration_s / pure_s`` per sample (the same when every timed batch is full; an epoch's smaller
      last batch otherwise counts for its size), issue #18's target: at most 1.15 on 2 cores;
    - ``overhead_bound``: :func:`overhead_bound`, the load-robust upper estimate of the ratio;
    - ``sample_s``: mean seconds of one training dataset item (the random transforms on a cached case, or the whole
      load when nothing is cached) in this process with one thread, as a loader worker computes it; ``samples`` items
      (``torch.utils.benchmark.Timer``).
      ``loader_cpu_s`` = ``sample_s * batch_size``: the CPU time the loader spends per batch.

    ``overrides``: config ids and values on top of the bundle's (e.g. a smaller ``network_def#channels``).
    """
    import torch
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow

    bundle, workdir = Path(bundle).resolve(), Path(workdir).resolve()
    configs = bundle / "configs"
    if not (configs / "train.json").is_file():
        raise FileNotFoundError(f"{configs / 'train.json'}: no training config in this bundle")
    run_dir = workdir / bundle.name
    settings = {"bundle_root": str(bundle), "ckpt_dir": str(run_dir / "models"), "log_dir": str(run_dir / "runs"),
                "demo_dir": str(run_dir / "demo_data"), **(overrides or {})}
    warmup = max(1, int(warmup))  # the first measured iteration is timed from the end of the one before
    total = warmup + max(1, int(iterations))
    load_start = os.getloadavg()
    started = time.perf_counter()
    log(f"{bundle.name}: parsing configs/train.json, generating the demo data and filling the cache")
    logging_conf = configs / "logging.conf"
    workflow = ConfigWorkflow(config_file=str(configs / "train.json"), meta_file=str(configs / "metadata.json"),
                              logging_file=str(logging_conf) if logging_conf.is_file() else False,
                              workflow_type="train", **settings)
    workflow.initialize()
    parser = workflow.parser
    trainer = parser.get_parsed_content("train#trainer")
    setup_s = time.perf_counter() - started

    marks: dict[str, list[float]] = {"get_start": [], "get_end": [], "start": [], "end": []}
    validations: list[tuple[float, float]] = []
    held: dict[str, Any] = {}
    sizes: list[int] = []

    def mark(key: str) -> Callable[[Any], None]:
        return lambda engine: marks[key].append(time.perf_counter())

    def started_iteration(engine: Any) -> None:
        marks["start"].append(time.perf_counter())
        batch = engine.state.batch  # the collated batch (MONAI decollates engine.state.batch later)
        sizes.append(len(batch["image"] if isinstance(batch, dict) else batch[0]))
        if sizes[-1] >= held.get("size", 0):  # a full batch, not an epoch's smaller last one
            held.update(batch=batch, size=sizes[-1])

    def completed_iteration(engine: Any) -> None:
        marks["end"].append(time.perf_counter())
        done = len(marks["end"])
        if done == warmup:
            log(f"{bundle.name}: {warmup} warm-up iteration(s) done, timing {total - warmup}")
        if done >= total:
            engine.terminate(skip_completed=True)  # no end-of-run validation nor final model

    trainer.add_event_handler(Events.GET_BATCH_STARTED, mark("get_start"))
    trainer.add_event_handler(Events.GET_BATCH_COMPLETED, mark("get_end"))
    trainer.add_event_handler(Events.ITERATION_STARTED, started_iteration)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, completed_iteration)  # last: after the logging handlers
    if "validate#evaluator" in parser:
        evaluator = parser.get_parsed_content("validate#evaluator")
        evaluator.add_event_handler(Events.STARTED, lambda e: validations.append((time.perf_counter(), math.nan)))
        evaluator.add_event_handler(
            Events.COMPLETED, lambda e: validations.__setitem__(-1, (validations[-1][0], time.perf_counter())))
    log(f"{bundle.name}: training {total} iterations ({len(trainer.data_loader)} per epoch)")
    trainer.run()
    if len(marks["end"]) < total:
        raise RuntimeError(f"{bundle.name}: the trainer stopped after {len(marks['end'])} of {total} iterations")

    # measured iterations: warmup+1 .. total; each from the end of the previous one, validation runs taken out
    ends, iteration_times = marks["end"], []
    for k in range(warmup, total):
        lo, hi = ends[k - 1], ends[k]
        inside = sum(max(0.0, min(b, hi) - max(a, lo)) for a, b in validations if not math.isnan(b))
        iteration_times.append(hi - lo - inside)
    waits = [b - a for a, b in zip(marks["get_start"][warmup:total], marks["get_end"][warmup:total])]
    steps = [b - a for a, b in zip(marks["get_end"][warmup:total], ends[warmup:total])]

    batch = held["batch"]
    device = trainer.state.device
    prepared = trainer.prepare_batch(batch, device, trainer.non_blocking, **trainer.to_kwargs)
    step = train_step(trainer, *prepared)
    threads = torch.get_num_threads()
    log(f"{bundle.name}: pure train step on the last full batch ({'x'.join(map(str, prepared[0].shape))}), "
        f"{total - warmup} runs")
    pure_s, pure_times = time_median(step, total - warmup, 1, device)
    trainer.optimizer.zero_grad(set_to_none=True)

    dataset = trainer.data_loader.dataset
    count = min(max(1, samples), len(dataset))
    sample_s = _item_seconds(dataset, count) if count else None
    result_settings = training_settings(parser, trainer, batch)
    iteration_s = statistics.fmean(iteration_times)
    batch_size = result_settings["batch_size"] or 1
    result = {
        "bundle": bundle.name,
        "iterations": total - warmup,
        "warmup": warmup,
        "iteration_s": iteration_s,
        "iteration_median_s": statistics.median(iteration_times),
        "pure_s": pure_s,
        # per sample: an epoch's smaller last batch among the timed iterations is compared with a full-batch step
        "ratio": (sum(iteration_times) / sum(sizes[warmup:total])) / (pure_s / held["size"]),
        "samples_per_iteration": sizes[warmup:total],
        "data_wait_s": statistics.fmean(waits) if waits else None,
        "step_s": statistics.fmean(steps) if steps else None,
        "sample_s": sample_s,
        "loader_cpu_s": sample_s * batch_size if sample_s is not None else None,
        "validation_s": [b - a for a, b in validations if not math.isnan(b)],
        "setup_s": setup_s,
        "iteration_times": iteration_times,
        "pure_times": pure_times,
        "threads": threads,
        "settings": result_settings,
        "loadavg_start": list(load_start),
        "loadavg_end": list(os.getloadavg()),
        "peak_rss_mb": _peak_rss_mb(),
    }
    result["overhead_bound"] = overhead_bound(result)
    log(f"{bundle.name}: iteration {iteration_s:.3f} s, pure {pure_s:.3f} s, ratio {result['ratio']:.2f}x "
        f"(waiting for data {result['data_wait_s']:.3f} s per iteration)")
    workflow.finalize()
    _close_file_logs(run_dir)
    return result


def _close_file_logs(folder: Path) -> None:
    """Close the root logger's file handlers writing under ``folder`` (the bundle's ``log_to_file`` added one)."""
    import logging

    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).is_relative_to(folder):
            root.removeHandler(handler)
            handler.close()
