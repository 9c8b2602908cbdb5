#!/usr/bin/env python
"""Inference speed of every bundle network against the machine's own reference throughput (issue #9).

    python scripts/benchmark.py                         # CPU, every bundle and the MONAI peers, ~16 min on 2 busy cores
    python scripts/benchmark.py --quick                 # small volumes, few repeats, a subset of networks (~1 min)
    python scripts/benchmark.py --bundles arunet3d,fct --repeats 7 --threads 2 --json out.json
    python scripts/benchmark.py --device cuda           # on a GPU (timings synchronised)
    python scripts/benchmark.py --training --bundles arunet3d,unet2d --iterations 10   # training throughput

One run measures, on the same inputs:

1. **Reference throughput** of the machine: a square matmul and a ``Conv3d(32 -> 32, 3^3, padding 1)`` (and, for
   context, a ``Conv2d(32 -> 32, 3^2, padding 1)``), in GFLOP/s.
2. **Per network** (each bundle's ``network_def`` from ``configs/inference.json`` at its default widths, random
   weights, eval mode, ``torch.inference_mode``; and MONAI's UNet, AttentionUnet and SegResNet as peers, 3D at the 3D
   ROI and 2D at the 2D ROI): parameters, forward GFLOPs of one ROI patch (batch 1), median patch latency, achieved
   GFLOP/s and its ratio to a Conv3d reference measured in the same process just before, sliding-window throughput in
   megavoxels/s with ``monai.inferers.sliding_window_inference`` and peak resident memory. Every network runs in its
   own fresh worker process, so its peak RSS (``ru_maxrss``) is its own; the RSS after imports and building the
   network is reported too.
3. **Batch inference** (``scripts/segment.py``) over a folder of generated BraTS cases: total wall time of the
   command, the sum of the per-case times of its ``summary.csv``, against the pure network time (the bundle's own
   sliding window on the same cases, measured in the same run): one row per ``--backend`` of segment.py when it has
   that option, else one eager row.

FLOPs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (2 FLOPs per multiply-add; convolutions,
transposed convolutions and matrix products only: normalisation, activations, interpolation, pooling and
concatenation count 0 FLOPs, so "achieved GFLOP/s" is the useful-arithmetic rate). Timings are medians over
``--repeats`` runs after warm-up runs. Every comparison (ratio) is between figures measured in the same run.

``--training`` measures instead, per bundle, a training iteration of its ``configs/train.json`` on its demo data
(as ``python -m monai.bundle run training`` runs it: cache, loader, workers, augmentation, handlers) against the pure
forward + backward + optimizer step of the same batch, with the cache and loader settings it used
(:func:`custom_nets.benchmarking.measure_training`; the table is in docs/performance.md).

The measuring core (FLOP counting, paired timing, profiles, bundle specs, the BraTS case) is
:mod:`custom_nets.benchmarking`; this script runs it in worker processes and prints the report.

Output: one report on stdout (the network table, then the batch-inference rows), progress on stderr, and every raw
figure as JSON (``--json``, default ``benchmark.json`` in the working directory).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

REPO = Path(__file__).resolve().parents[1]
SEGMENT = REPO / "scripts" / "segment.py"
from custom_nets.bundle import parse_override  # noqa: E402
from custom_nets.inference.runner import current_rss_mb  # noqa: E402
from custom_nets.benchmarking import (  # noqa: E402 - the measuring core lives in the package (issue #20)
    BUNDLES_DIR,
    OP_CATEGORIES,
    ROI_2D,
    SW_BATCH_2D,
    _first,
    _peak_rss_mb,
    _sync,
    all_bundles,
    build_network,
    bundle_spec,
    categorise,
    count_flops,
    profile_forward,
    reference,
    reference_callable,
    time_median,
    time_paired,
    window_count,
)

VOLUME_3D = [240, 240, 155]  # BraTS
IMAGES_2D = (8, [512, 512])  # 8 images of 512 x 512
QUICK_VOLUME_3D = [48, 48, 32]  # quick mode also uses a 32^3 ROI (3D) and 128^2 (2D): 4 windows each
QUICK_IMAGES_2D = (2, [128, 256])
QUICK_BUNDLES = ["arunet3d", "unet2d"]
QUICK_PEERS = ["SegResNet3d"]
BATCH_BUNDLE = "arunet3d"
BATCH_CASES = 10
BATCH_SHAPE = [64, 64, 64]  # one 64^3 window per case at the bundle's settings (keeps the default run short)
QUICK_BATCH_SHAPE = [32, 32, 32]

# MONAI peers: name -> (class, spatial_dims, kwargs); in/out channels as the bundles of that dimension (BraTS 4 -> 3
# regions, LGG RGB 3 -> 1 mask)
PEERS: dict[str, tuple[str, int, dict[str, Any]]] = {
    "UNet3d": ("UNet", 3, {"channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 2}),
    "AttentionUnet3d": ("AttentionUnet", 3, {"channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2]}),
    "SegResNet3d": ("SegResNet", 3, {"init_filters": 16, "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1]}),
    "UNet2d": ("UNet", 2, {"channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2], "num_res_units": 2}),
    "AttentionUnet2d": ("AttentionUnet", 2, {"channels": [16, 32, 64, 128, 256], "strides": [2, 2, 2, 2]}),
    "SegResNet2d": ("SegResNet", 2, {"init_filters": 16, "blocks_down": [1, 2, 2, 4], "blocks_up": [1, 1, 1]}),
}
PEER_IO = {3: (4, 3), 2: (3, 1)}


def _finish_report(report: dict, started: float, path: Path) -> None:
    """Close a report: total seconds, the load average at the end, written as JSON to ``path``."""
    report["seconds"] = time.time() - started
    try:
        report["machine"]["loadavg_end"] = os.getloadavg()
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))


def log(message: str) -> None:
    print(f"[benchmark {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------------------------
# What to measure (parent process: no torch needed)
# ----------------------------------------------------------------------------------------------------------------------


def peer_spec(name: str) -> dict[str, Any]:
    cls, dims, kwargs = PEERS[name]
    in_ch, out_ch = PEER_IO[dims]
    return {
        "name": name, "kind": "peer", "spatial_dims": dims, "class": cls, "config": dict(kwargs),
        "in_channels": in_ch, "out_channels": out_ch, "roi": [64] * 3 if dims == 3 else list(ROI_2D),
        "sw_batch_size": 2 if dims == 3 else SW_BATCH_2D, "bundle_overlap": None, "bundle_inferer": None,
    }  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------------
# Worker side (fresh process per network): torch is imported here only
# ----------------------------------------------------------------------------------------------------------------------


def measure_network(task: dict[str, Any]) -> dict[str, Any]:
    """Everything about one network (runs in a fresh worker process)."""
    import torch
    from monai.inferers import sliding_window_inference

    spec, opts = task["spec"], task["options"]
    device = torch.device(opts["device"])
    rss_start = current_rss_mb()
    net = build_network(spec).to(device).eval()
    params = sum(p.numel() for p in net.parameters())
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, spec["in_channels"], *spec["roi"], generator=gen).to(device)
    result: dict[str, Any] = {"params": params, "rss_after_build_mb": None, "rss_start_mb": rss_start}
    with torch.inference_mode():
        def forward() -> Any:
            return net(x)

        flops, by_op = count_flops(forward)  # on the plain network
        if spec["kind"] == "bundle":  # timed as inference runs it (segment.py, the bundle configs); peers as shipped
            from custom_nets.inference import speedups

            speedups.apply(net)
        out = _first(forward())
        result.update(flops=flops, flops_by_op=by_op, output_shape=list(out.shape))
        # the Conv3d reference in this same process, alternating with the network run by run: each ratio compares
        # two runs made under the same machine load; % conv3d is the median of those per-pair ratios
        ref_fn, ref_flops, ref_what = reference_callable(opts["quick"], device)
        ref_times, times = time_paired(forward, ref_fn, opts["repeats"], opts["warmup"], device)
        latency = statistics.median(times)
        ratios = [(flops / t) / (ref_flops / r) for t, r in zip(times, ref_times)]
        ref = {"what": ref_what, "flops": ref_flops, "seconds": statistics.median(ref_times), "times": ref_times,
               "gflops_per_s": ref_flops / statistics.median(ref_times) / 1e9}
        result.update(conv3d_reference=ref, latency_s=latency, latency_times=times,
                      gflops_per_s=flops / latency / 1e9, ratio_to_conv3d=statistics.median(ratios),
                      ratios_to_conv3d=ratios)
        result["rss_after_build_mb"] = current_rss_mb()

        if not opts.get("no_sw"):
            if spec["spatial_dims"] == 3:
                batch, spatial = 1, list(opts["volume_3d"])
            else:
                batch, spatial = int(opts["images_2d"][0]), list(opts["images_2d"][1])
            overlap = spec["bundle_overlap"] if opts["overlap"] == "bundle" and spec["bundle_overlap"] is not None \
                else float(0.0 if opts["overlap"] == "bundle" else opts["overlap"])
            volume = torch.randn(batch, spec["in_channels"], *spatial, generator=gen)
            windows = window_count(spatial, spec["roi"], overlap) * batch

            def sw() -> Any:
                return sliding_window_inference(volume, spec["roi"], spec["sw_batch_size"], lambda t: _first(net(t)),
                                                overlap=overlap, mode="gaussian", sw_device=device, device="cpu")

            sw_time, sw_times = time_median(sw, opts["sw_repeats"], 0, device)  # the patch runs warmed the network up
            voxels = batch * math.prod(spatial)
            result["sliding_window"] = {
                "input": [batch, spec["in_channels"], *spatial], "roi": spec["roi"], "overlap": overlap,
                "sw_batch_size": spec["sw_batch_size"], "mode": "gaussian", "windows": windows, "voxels": voxels,
                "seconds": sw_time, "times": sw_times, "mvox_per_s": voxels / sw_time / 1e6,
                "seconds_per_window": sw_time / windows,
                "network_share_estimate": windows * latency / sw_time,
            }  # fmt: skip
        result["peak_rss_mb"] = _peak_rss_mb()
        if opts.get("profile"):
            result["profile"] = profile_forward(forward, opts["profile_runs"], opts["profile_top"])
    return result


def measure_batch_network(task: dict[str, Any]) -> dict[str, Any]:
    """Pure network time of the bundle's inferer on every case of a folder (as BundleSegmenter.predict calls it)."""
    import torch

    from custom_nets.inference import BundleSegmenter, discover_cases, read_case, to_meta_tensor

    opts = task["options"]
    if not Path(task["checkpoint"]).is_file():  # random weights, saved for segment.py too
        net = build_network({"kind": "bundle", "bundle": task["bundle"]})
        torch.save(net.state_dict(), task["checkpoint"])
        del net
    with BundleSegmenter(task["bundle"], device=opts["device"], checkpoint=task["checkpoint"],
                         overrides=task.get("overrides") or None) as seg:
        cases = discover_cases(task["input"], seg.spec)
        batches = []
        for case in cases:
            data = seg.preprocessing({"image": to_meta_tensor(read_case(case, seg.spec, seg.reader_2d))})
            prepared = data["image"]
            batches.append(torch.as_tensor(prepared.as_tensor() if hasattr(prepared, "as_tensor") else prepared)[None])
        device = seg.device
        with torch.no_grad():
            seg.inferer(batches[0], seg.network)  # warm-up
            per_case = []
            for batch in batches:
                start = time.perf_counter()
                _first(seg.inferer(batch, seg.network))
                _sync(device)
                per_case.append(time.perf_counter() - start)
    return {"cases": len(per_case), "shapes": [list(b.shape) for b in batches], "network_seconds": sum(per_case),
            "per_case_seconds": per_case, "peak_rss_mb": _peak_rss_mb()}  # fmt: skip


def worker_main(path: str) -> int:
    task = json.loads(Path(path).read_text())
    import torch

    if task["options"].get("threads"):
        torch.set_num_threads(int(task["options"]["threads"]))
    torch.manual_seed(0)
    import warnings

    warnings.filterwarnings("ignore")
    if task["task"] == "references":
        o = task["options"]
        out = {k: reference(k, o["quick"], o["repeats"], o["warmup"], torch.device(o["device"]))
               for k in ("matmul", "conv3d", "conv2d")}  # fmt: skip
        out["threads"] = torch.get_num_threads()
        out["torch"] = torch.__version__
    elif task["task"] == "network":
        out = measure_network(task)
    elif task["task"] == "batch_network":
        out = measure_batch_network(task)
    elif task["task"] == "training":
        from custom_nets.benchmarking import measure_training

        out = measure_training(task["bundle"], task["workdir"], iterations=task["iterations"], warmup=task["warmup"],
                               overrides=task.get("overrides"))
    elif task["task"] == "checkpoint":
        net = build_network({"kind": "bundle", "bundle": task["bundle"]})
        torch.save(net.state_dict(), task["checkpoint"])
        out = {"checkpoint": task["checkpoint"]}
    else:
        raise ValueError(task["task"])
    Path(task["result"]).write_text(json.dumps(out))
    return 0


# ----------------------------------------------------------------------------------------------------------------------
# Parent side
# ----------------------------------------------------------------------------------------------------------------------


def child_env(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def run_worker(task: dict[str, Any], workdir: Path, threads: int | None, timeout: float | None = None) -> dict[str, Any]:
    """Run ``task`` in a fresh Python process; its result dict, or ``{"error": ...}``."""
    fd, task_path = tempfile.mkstemp(suffix=".json", dir=workdir)
    os.close(fd)
    task = dict(task, result=task_path + ".out")
    Path(task_path).write_text(json.dumps(task))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", task_path],
                          capture_output=True, text=True, env=child_env(threads), timeout=timeout)  # fmt: skip
    wall = time.perf_counter() - start
    result_path = Path(task["result"])
    if proc.returncode != 0 or not result_path.is_file():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": f"worker exit {proc.returncode}: " + " | ".join(tail), "worker_wall_s": wall}
    out = json.loads(result_path.read_text())
    out["worker_wall_s"] = wall
    return out


def segment_backends() -> list[str] | None:
    """The ``--backend`` choices of segment.py (None when it has no such option)."""
    try:
        from custom_nets.inference.cli import build_parser
    except Exception:  # noqa: BLE001
        return None
    for action in build_parser()._actions:
        if "--backend" in action.option_strings:
            return list(action.choices) if action.choices else ["eager", "torchscript", "onnxruntime"]
    return None


def run_segment(bundle: str, input_dir: Path, output_dir: Path, checkpoint: Path, device: str, backend: str | None,
                threads: int | None, overrides: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """``scripts/segment.py`` as a user runs it; wall time (process start to exit) and summary.csv figures."""
    cmd = [sys.executable, str(SEGMENT), "--bundle", bundle, "-i", str(input_dir), "-o", str(output_dir),
           "--checkpoint", str(checkpoint), "--device", device, "--overwrite", "--no-progress"]  # fmt: skip
    for key, value in overrides.items():
        cmd += ["--override", f"{key}={json.dumps(value)}"]
    if backend is not None:
        cmd += ["--backend", backend]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=child_env(threads))
    wall = time.perf_counter() - start
    row: dict[str, Any] = {"backend": backend or "eager (no --backend option)", "command": cmd[1:], "wall_s": wall,
                           "exit_code": proc.returncode}  # fmt: skip
    summary = output_dir / "summary.csv"
    if summary.is_file():
        with summary.open() as f:
            rows = list(csv.DictReader(f))
        row["cases_ok"] = sum(r["status"] == "ok" for r in rows)
        row["case_seconds_sum"] = sum(float(r["seconds"] or 0) for r in rows)
        for column in ("network_s", "network_seconds"):  # reported by the runner once backends count network time
            if rows and column in rows[0]:
                row["runner_network_s"] = sum(float(r[column] or 0) for r in rows)
        for column in ("read_s", "pre_s", "post_s", "write_s"):  # the runner's per-stage split, when it has one
            if rows and column in rows[0]:
                row[f"runner_{column}"] = sum(float(r[column] or 0) for r in rows)
    if proc.returncode != 0:
        row["error"] = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-4:])
    return row


def fmt(value: Any, spec: str = ".2f", missing: str = "-") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return format(value, spec)


def config_text(spec: dict[str, Any]) -> str:
    items = ", ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in spec["config"].items())
    return f"{spec['class']}({items})"


def render(report: dict[str, Any]) -> str:
    refs = report["references"]
    lines = [
        f"machine: {report['machine']['cpu']}, {report['machine']['cpus']} CPUs, torch {report['machine']['torch']}, "
        f"{report['machine']['threads']} threads, device {report['options']['device']}"
        + (" [--quick]" if report["options"]["quick"] else ""),
        "reference: " + "; ".join(f"{k} {fmt(refs[k].get('gflops_per_s'), '.1f')} GFLOP/s ({refs[k].get('what')})"
                                  for k in ("matmul", "conv3d", "conv2d") if k in refs),  # fmt: skip
        "",
    ]
    head = ["network", "dims", "ROI", "params M", "GFLOP/patch", "latency ms", "GFLOP/s", "% conv3d",
            "SW input", "windows", "SW s", "Mvox/s", "net %", "peak RSS MB"]  # fmt: skip
    rows = []
    for net in report["networks"]:
        r, s = net.get("result", {}), net["spec"]
        sw = r.get("sliding_window", {})
        name = s["name"] + (" (peer)" if s["kind"] == "peer" else "")
        if "error" in r:
            rows.append([name, f"{s['spatial_dims']}D", "x".join(map(str, s["roi"])), "ERROR: " + r["error"][:80]])
            continue
        sw_input = "x".join(map(str, sw["input"][1:])) if sw else "-"
        if sw and sw["input"][0] > 1:
            sw_input = f"{sw['input'][0]}x({sw_input})"
        rows.append([
            name, f"{s['spatial_dims']}D", "x".join(map(str, s["roi"])), fmt(r["params"] / 1e6, ".2f"),
            fmt(r["flops"] / 1e9, ".2f"), fmt(r["latency_s"] * 1e3, ".1f"), fmt(r["gflops_per_s"], ".1f"),
            fmt(100 * r["ratio_to_conv3d"], ".0f"), sw_input, str(sw.get("windows", "-")), fmt(sw.get("seconds"), ".1f"),
            fmt(sw.get("mvox_per_s"), ".3f"), fmt(100 * sw["network_share_estimate"] if sw else None, ".0f"),
            fmt(r.get("peak_rss_mb"), ".0f"),
        ])  # fmt: skip
    widths = [max(len(str(x[i])) if i < len(x) else 0 for x in [head, *rows]) for i in range(len(head))]
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    lines.append("")
    lines.append("configs: " + "; ".join(f"{n['spec']['name']} = {config_text(n['spec'])}" for n in report["networks"]
                                         if n["spec"]["kind"] == "peer") or "configs: (no peers)")  # fmt: skip
    opts = report["options"]
    lines.append(f"sliding window: monai sliding_window_inference, mode gaussian, overlap {opts['overlap']}, ROI as "
                 f"listed, the bundle's sw_batch_size (2D and peers: {SW_BATCH_2D} in 2D, 2 in 3D); Mvox/s = input "
                 f"voxels (pixels in 2D) per second; median of {opts['sw_repeats']} run(s) after the patch runs; "
                 f"net % = windows x patch latency / SW time")  # fmt: skip
    lines.append("% conv3d: median over runs of (network GFLOP/s / Conv3d reference GFLOP/s), the reference run "
                 "alternating with the network in the same worker process")
    batch = report.get("batch")
    if batch:
        lines.append("")
        if "error" in batch:
            lines.append(f"batch inference: ERROR {batch['error']}")
        else:
            net_s = batch["network"].get("network_seconds")
            per_case = batch["network"].get("per_case_seconds") or []
            robust = statistics.median(per_case) * len(per_case) if per_case else None
            lines.append(f"batch inference: scripts/segment.py --bundle {batch['bundle']} on {batch['cases']} generated "
                         f"BraTS cases of {'x'.join(map(str, [4, *batch['shape']]))}; pure network time (the bundle's "
                         f"sliding window, eager, on the same cases) {fmt(net_s, '.1f')} s (median case x "
                         f"{len(per_case)}: {fmt(robust, '.1f')} s)")  # fmt: skip
            bhead = ["backend", "exit", "cases ok", "wall s", "sum case s", "segment net s", "network s",
                     "wall / network", "cases / network", "segment net / network"]  # fmt: skip
            brows = []
            for row in batch["runs"]:
                seg_net = row.get("runner_network_s")
                brows.append([row["backend"], str(row["exit_code"]), str(row.get("cases_ok", "-")), fmt(row["wall_s"], ".1f"),
                              fmt(row.get("case_seconds_sum"), ".1f"), fmt(seg_net, ".1f"), fmt(net_s, ".1f"),
                              fmt(row.get("wall_over_network"), ".2f"), fmt(row.get("cases_over_network"), ".2f"),
                              fmt(seg_net / net_s if seg_net is not None and net_s else None, ".2f")])
            bw = [max(len(x[i]) for x in [bhead, *brows]) for i in range(len(bhead))]
            lines.append("  ".join(h.ljust(w) for h, w in zip(bhead, bw)))
            lines.append("  ".join("-" * w for w in bw))
            lines += ["  ".join(c.ljust(w) for c, w in zip(r, bw)).rstrip() for r in brows]
            lines.append("  (segment net s: the network time segment.py itself reports in summary.csv, network_s)")
            for row in batch["runs"]:
                if "error" in row:
                    lines.append(f"  {row['backend']}: {row['error'][:300]}")
            if not batch.get("backend_option"):
                lines.append("  (segment.py has no --backend option yet: eager only; rows per backend appear once it has)")
    profiles = [n for n in report["networks"] if "profile" in n.get("result", {})]
    if profiles:
        lines.append("")
        lines.append("profiles (torch.profiler, self CPU time of one ROI-patch forward, share by op category; top ops):")
        for n in profiles:
            p = n["result"]["profile"]
            cats = ", ".join(f"{k} {100 * v['share']:.0f}%" for k, v in p["categories"].items() if v["share"] >= 0.01)
            ops = ", ".join(f"{o['op'].replace('aten::', '')} {100 * o['share']:.0f}%" for o in p["top_ops"][:6])
            lines.append(f"  {n['spec']['name']}: {cats}")
            lines.append(f"    top: {ops}")
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"cpu": cpu, "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "loadavg_start": load}  # fmt: skip


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help=f"small volumes and ROIs, 2 repeats, bundles {','.join(QUICK_BUNDLES)} and peer {','.join(QUICK_PEERS)}")
    p.add_argument("--bundles", help="comma-separated bundle names (default: all; --quick: a 3D and a 2D one); "
                   "'none' for no bundle")
    p.add_argument("--peers", help=f"comma-separated MONAI peers among {','.join(PEERS)} (default: all; 'none')")
    p.add_argument("--repeats", type=int, help="timed runs per patch measurement (default 5, --quick 2)")
    p.add_argument("--warmup", type=int, help="warm-up runs before timing (default 2, --quick 1)")
    p.add_argument("--sw-repeats", type=int, help="timed sliding-window runs per network (default 1, --quick 1)")
    p.add_argument("--overlap", default="0",
                   help="sliding-window overlap for the throughput column, or 'bundle' for each bundle's own (0.5 for "
                   "the 3D bundles: 4x more windows); default 0")
    p.add_argument("--volume", help="3D sliding-window volume, e.g. 240,240,155 (default; --quick 48,48,32)")
    p.add_argument("--images", help="2D sliding-window images as COUNTxHxW, e.g. 8x512x512 (default; --quick 2x128x256)")
    p.add_argument("--roi-3d", help="ROI of every 3D network instead of its own, e.g. 32,32,32 (--quick: 32,32,32)")
    p.add_argument("--roi-2d", help="ROI of every 2D network instead of 256,256, e.g. 128,128 (--quick: 128,128)")
    p.add_argument("--threads", type=int, help="torch threads in every worker (default: torch's default)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    p.add_argument("--profile", default="worst:3",
                   help="networks to profile with torch.profiler: 'worst:N' (lowest %% conv3d, default worst:3), a "
                   "comma-separated list of names, or 'none'")
    p.add_argument("--profile-top", type=int, default=12, help="top ops kept per profile (default 12)")
    p.add_argument("--batch-bundle", default=BATCH_BUNDLE, help=f"bundle for the batch-inference rows (default "
                   f"{BATCH_BUNDLE}; 'none' to skip)")
    p.add_argument("--batch-cases", type=int, default=BATCH_CASES, help=f"generated cases (default {BATCH_CASES})")
    p.add_argument("--batch-shape", help="generated case size x,y,z (default 64,64,64; --quick 32,32,32)")
    p.add_argument("--batch-backends", help="comma-separated segment.py --backend values (default: every choice "
                   "segment.py offers; eager only when it has no --backend option)")
    p.add_argument("--json", "--output", dest="json", type=Path, default=Path("benchmark.json"),
                   help="where to write the raw figures (default benchmark.json)")
    p.add_argument("--workdir", type=Path, help="folder for generated cases and temporary files (default: a temp dir)")
    p.add_argument("--from-json", type=Path, help="print the report of an earlier run's JSON, measure nothing")
    p.add_argument("--brats-case", action="store_true",
                   help="only the BraTS case (issue #18): segment.py's default path against the reference path on one "
                   "synthetic 4x240x240x155 case with a known label, with a briefly trained model (custom_nets."
                   "benchmarking); prints one summary line last")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=ARGS",
                   help="--brats-case: a further segment.py run compared with the reference like the default path, "
                   "e.g. --variant 'onnxruntime=--backend onnxruntime' (repeatable)")
    p.add_argument("--levers", action="store_true",
                   help="with --brats-case and --checkpoint: time each inference lever alone and together in one "
                   "process on a 160x160x104 case (custom_nets.benchmarking.LEVERS) instead of the segment.py runs")
    p.add_argument("--case-bundle", default="arunet3d", help="bundle of --brats-case (default arunet3d)")
    p.add_argument("--checkpoint", type=Path, help="--brats-case: weights to use instead of training briefly")
    p.add_argument("--train-seconds", type=float, default=150.0,
                   help="--brats-case: training time on small synthetic cases (default 150)")
    p.add_argument("--case-shape", default="240,240,155", help="--brats-case: case size x,y,z (default BraTS)")
    p.add_argument("--default-args", default="",
                   help="--brats-case: extra segment.py arguments of the default path (default: none)")
    p.add_argument("--training", action="store_true",
                   help="only training throughput (issue #18): per bundle, a training iteration of configs/train.json "
                   "on its demo data (monai.bundle ConfigWorkflow: its cache, loader, workers, augmentation, handlers) "
                   "against the pure forward + backward + optimizer step of the same batch (custom_nets.benchmarking."
                   "measure_training)")
    p.add_argument("--iterations", type=int,
                   help="--training: timed iterations per bundle after --warmup ones (default 10, --quick 3)")
    p.add_argument("--train-override", action="append", default=[], metavar="ID=JSON",
                   help="--training: a train.json id and its JSON value for every measured bundle, e.g. "
                   "'train#dataloader#num_workers=0' (repeatable)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 2 if args.quick else 5
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    if args.iterations is None:
        args.iterations = 3 if args.quick else 10
    if args.sw_repeats is None:
        args.sw_repeats = 1
    if args.overlap != "bundle":
        value = float(args.overlap)
        if not 0 <= value < 1:
            p.error("--overlap must be in [0, 1) or 'bundle'")
    vol = args.volume or ",".join(map(str, QUICK_VOLUME_3D if args.quick else VOLUME_3D))
    args.volume_3d = [int(v) for v in vol.split(",")]
    if args.images:
        count, *hw = args.images.lower().split("x")
        args.images_2d = (int(count), [int(v) for v in hw])
    else:
        args.images_2d = QUICK_IMAGES_2D if args.quick else IMAGES_2D
    roi3 = args.roi_3d or ("32,32,32" if args.quick else None)
    roi2 = args.roi_2d or ("128,128" if args.quick else None)
    args.roi_3d = [int(v) for v in roi3.split(",")] if roi3 else None
    args.roi_2d = [int(v) for v in roi2.split(",")] if roi2 else None
    shape = args.batch_shape or ",".join(map(str, QUICK_BATCH_SHAPE if args.quick else BATCH_SHAPE))
    args.batch_shape_3d = [int(v) for v in shape.split(",")]
    return args


def _chosen(text: str | None, known: Sequence[str], default: Sequence[str], what: str) -> list[str]:
    """The names of a comma-separated option (``none``: no name; empty: ``default``), all of them ``known``."""
    if not text:
        return list(default)
    chosen = [] if text == "none" else [x.strip() for x in text.split(",") if x.strip()]
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise SystemExit(f"unknown {what}(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return chosen


def select(args: argparse.Namespace) -> list[dict[str, Any]]:
    bundles = all_bundles()
    chosen = _chosen(args.bundles, bundles, QUICK_BUNDLES if args.quick else bundles, "bundle")
    peers = _chosen(args.peers, list(PEERS), QUICK_PEERS if args.quick else list(PEERS), "peer")
    specs = [bundle_spec(b) for b in chosen] + [peer_spec(p) for p in peers]
    for spec in specs:
        roi = args.roi_3d if spec["spatial_dims"] == 3 else args.roi_2d
        if roi:
            spec["roi"] = list(roi)
    return sorted(specs, key=lambda s: (-s["spatial_dims"], s["kind"] != "bundle", s["name"]))


@contextlib.contextmanager
def _workdir(given: Path | None, prefix: str) -> Iterator[Path]:
    """``--workdir`` (created if missing, kept), else a temporary folder removed at the end, whatever happens."""
    if given:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    tmp = tempfile.mkdtemp(prefix=prefix)
    try:
        yield Path(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_batch(args: argparse.Namespace, options: dict[str, Any], workdir: Path) -> dict[str, Any]:
    bundle = str(BUNDLES_DIR / args.batch_bundle)
    # --roi-3d (and --quick) apply to the batch rows too, through the bundle's roi_size
    overrides = {"roi_size": args.roi_3d} if args.roi_3d else {}
    out: dict[str, Any] = {"bundle": args.batch_bundle, "cases": args.batch_cases, "shape": args.batch_shape_3d,
                           "overrides": overrides}
    log(f"batch inference: generating {args.batch_cases} BraTS cases of {args.batch_shape_3d}")
    from custom_nets.data.brats import generate_brats_demo

    cases_dir = generate_brats_demo(workdir / "cases", num_cases=args.batch_cases, shape=args.batch_shape_3d)
    checkpoint = workdir / "random_weights.pt"
    checkpoint.unlink(missing_ok=True)
    log("batch inference: pure network time (the bundle's sliding window) on the cases")
    out["network"] = run_worker({"task": "batch_network", "bundle": bundle, "checkpoint": str(checkpoint),
                                 "input": str(cases_dir), "overrides": overrides, "options": options},
                                workdir, args.threads)  # fmt: skip
    if "error" in out["network"] or not checkpoint.is_file():
        return dict(out, error=f"network time on the cases failed: {out['network'].get('error')}")
    backends = segment_backends()
    out["backend_option"] = backends is not None
    chosen = backends or [None]
    if backends and args.batch_backends:
        chosen = [b for b in args.batch_backends.split(",") if b in backends]
    runs = []
    for backend in chosen:
        log(f"batch inference: scripts/segment.py --bundle {args.batch_bundle} --backend {backend or '(none)'}")
        row = run_segment(bundle, cases_dir, workdir / f"out_{backend or 'default'}", checkpoint, args.device, backend,
                          args.threads, overrides)  # fmt: skip
        runs.append(row)
    net_s = out["network"].get("network_seconds")
    for row in runs:
        if net_s:
            row["wall_over_network"] = row["wall_s"] / net_s
            if row.get("case_seconds_sum") is not None:
                row["cases_over_network"] = row["case_seconds_sum"] / net_s
    out["runs"] = runs
    out["note"] = ("wall_s: the whole segment.py command (Python start, imports, bundle parsing, export for non-eager "
                   "backends, reading, inference, postprocessing, writing); case_seconds_sum: the sum of summary.csv "
                   "per-case seconds (read + compute + postprocess + write); network: the bundle's inferer alone on "
                   "the preprocessed cases, after one warm-up case")  # fmt: skip
    return out


def brats_case_main(args: argparse.Namespace) -> int:
    """``--brats-case``: custom_nets.benchmarking.run_brats_case, its figures to --json and its line last."""
    import shlex

    from custom_nets.benchmarking import run_brats_case

    with _workdir(args.workdir, "brats-case-") as workdir:
        started = time.time()
        report: dict[str, Any] = {"machine": machine_info(), "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                        time.gmtime(started))}
        if args.levers:
            from custom_nets.benchmarking import measure_levers

            if args.checkpoint is None:
                raise SystemExit("--levers needs --checkpoint (e.g. the model.pt a --brats-case --workdir run trained)")
            rows = measure_levers(BUNDLES_DIR / args.case_bundle, args.checkpoint, workdir=workdir)
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({"machine": machine_info(), "levers": rows}, indent=1))
            reference_s = rows[0]["seconds"]
            print(f"{'lever':46s} {'backend':11s} {'windows':>7s} {'s':>7s} {'speed-up':>8s} {'agreement %':>11s} "
                  f"{'WT Dice':>7s}")
            for row in rows:
                print(f"{row['lever']:46s} {row['backend']:11s} {row['windows']:7d} {row['seconds']:7.1f} "
                      f"{reference_s / row['seconds']:7.2f}x {100 * row['agreement']:11.2f} {row['wt_dice']:7.4f}")
            return 0
        report["brats_case"] = run_brats_case(
            BUNDLES_DIR / args.case_bundle, workdir, checkpoint=args.checkpoint, train_seconds=args.train_seconds,
            shape=[int(v) for v in args.case_shape.split(",")], threads=args.threads,
            default_args=shlex.split(args.default_args),
            variants=[(v.split("=", 1)[0], shlex.split(v.split("=", 1)[1] if "=" in v else "")) for v in args.variant])
    _finish_report(report, started, args.json)
    case = report["brats_case"]
    load = report["machine"].get("loadavg_start")
    print(f"machine: {report['machine']['cpu']}, {report['machine']['cpus']} CPUs, load average at start "
          f"{load[0]:.1f}" if load else "")
    for name in case["runs"]:
        run = case["runs"][name]
        print(f"{name:9s}: case {run['case_s']:.1f} s (wall {run['wall_s']:.1f} s with start-up), peak RSS "
              f"{run['peak_rss_mb']:.0f} MB, WT Dice {case['wt_dice'][name]:.4f}; "
              f"segment.py {' '.join(run['command'][1:])}")
    for line in case.get("variant_lines", []):
        print(line)
    print(case["line"])
    return 0


def run_training_worker(task: dict[str, Any], workdir: Path, threads: int | None) -> dict[str, Any]:
    """``task`` in a fresh worker process whose ``[training ...]`` progress lines are shown as they come; its result
    dict, or ``{"error": ...}`` (the worker's log, the bundle's training log included, is kept in ``workdir``)."""
    fd, task_path = tempfile.mkstemp(suffix=".json", dir=workdir)
    os.close(fd)
    task = dict(task, result=task_path + ".out")
    Path(task_path).write_text(json.dumps(task))
    tail: list[str] = []
    start = time.perf_counter()
    with open(task_path + ".log", "w") as output:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", task_path],
                                stdout=output, stderr=subprocess.PIPE, text=True, env=child_env(threads))
        for line in proc.stderr:
            if line.startswith("[training"):
                print(line, end="", file=sys.stderr, flush=True)
            else:
                tail = (tail + [line.rstrip()])[-5:]
        proc.wait()
    result_path = Path(task["result"])
    if proc.returncode != 0 or not result_path.is_file():
        return {"error": f"worker exit {proc.returncode}: " + " | ".join(tail), "worker_wall_s": time.perf_counter() - start}
    out = json.loads(result_path.read_text())
    out["worker_wall_s"] = time.perf_counter() - start
    return out


def render_training(report: dict[str, Any]) -> str:
    """The training-throughput table: one row per bundle, its settings, then the machine load."""
    machine = report["machine"]
    lines = [f"machine: {machine['cpu']}, {machine['cpus']} CPUs, load average at start "
             f"{', '.join(fmt(v, '.2f') for v in machine.get('loadavg_start') or [])}; at end "
             f"{', '.join(fmt(v, '.2f') for v in machine.get('loadavg_end') or [])}", ""]
    from custom_nets.benchmarking import overhead_bound

    head = ["bundle", "iteration s", "pure s", "ratio", "data wait s", "loader CPU s", "bound", "dataset", "cache_rate",
            "loader", "workers", "batch", "patch", "batch shape", "per epoch"]
    rows = []
    for row in report["training"]:
        r = row["result"]
        if "error" in r:
            rows.append([row["bundle"], "ERROR: " + r["error"][:160]])
            continue
        s = r["settings"]
        batch = str(s["batch_size"]) + (f" x {s['num_samples']} samples" if s.get("num_samples") else "")
        rows.append([row["bundle"], fmt(r["iteration_s"], ".3f"), fmt(r["pure_s"], ".3f"), fmt(r["ratio"], ".2f") + "x",
                     fmt(r["data_wait_s"], ".3f"), fmt(r["loader_cpu_s"], ".3f"), fmt(overhead_bound(r), ".2f") + "x",
                     s["dataset"], fmt(s["cache_rate"], "g"),
                     s["loader"], str(s["num_workers"]), batch, "x".join(map(str, s["patch"] or [])) or "-",
                     "x".join(map(str, s["batch_shape"])), str(s["epoch_length"])])
    widths = [max(len(x[i]) if i < len(x) else 0 for x in [head, *rows]) for i in range(len(head))]
    lines.append("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    opts = report["options"]
    lines += ["", f"iteration s: mean wall time per training iteration of configs/train.json over {opts['iterations']} "
              f"iterations after {opts['warmup']} warm-up (epoch boundaries included, validation runs excluded); pure s: "
              "median forward + loss + backward + optimizer step of the last batch, already in memory; ratio = "
              "iteration / pure (target <= 1.15x); data wait s: mean time the trainer waited for a batch; loader CPU s: "
              "one thread's time to produce a batch's items (random transforms on the cache, or the whole load); bound "
              "= 1 + (data wait + loader CPU) / pure: the most the pipeline can cost (an estimate that does not divide "
              "times taken at different moments of a changing load)"]
    if opts.get("overrides"):
        lines.append("overrides: " + ", ".join(f"{k}={json.dumps(v)}" for k, v in opts["overrides"].items()))
    for row in report["training"]:
        validations = row["result"].get("validation_s") or []
        if validations:
            lines.append(f"  {row['bundle']}: validation {', '.join(fmt(v, '.1f') for v in validations)} s "
                         f"(every {row['result']['settings']['val_interval']} epochs, not in iteration s)")
    return "\n".join(lines)


def training_main(args: argparse.Namespace) -> int:
    """``--training``: :func:`custom_nets.benchmarking.measure_training` per bundle, each in a fresh process."""
    bundles = _chosen(args.bundles, all_bundles(), QUICK_BUNDLES if args.quick else all_bundles(), "bundle")
    overrides = {}
    for item in args.train_override:
        try:
            key, value = parse_override(item)
        except ValueError as error:
            raise SystemExit(f"--train-override: {error}") from None
        overrides[key] = value
    started = time.time()
    report: dict[str, Any] = {
        "machine": machine_info(), "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "options": {"iterations": args.iterations, "warmup": args.warmup, "threads": args.threads,
                    "overrides": overrides}, "training": [],
    }  # fmt: skip
    with _workdir(args.workdir, "benchmark-training-") as workdir:
        for i, name in enumerate(bundles, 1):
            log(f"[{i}/{len(bundles)}] {name}: training throughput ({args.warmup} + {args.iterations} iterations)")
            result = run_training_worker({"task": "training", "bundle": str(BUNDLES_DIR / name), "workdir": str(workdir),
                                          "iterations": args.iterations, "warmup": args.warmup,
                                          "overrides": overrides, "options": {
                                              "threads": args.threads}}, workdir, args.threads)  # fmt: skip
            if "error" in result:
                log(f"  {name} failed: {result['error']}")
            report["training"].append({"bundle": name, "result": result})
    _finish_report(report, started, args.json)
    print(render_training(report))
    log(f"done in {report['seconds']:.0f} s; raw figures in {args.json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    if args.from_json:
        data = json.loads(args.from_json.read_text())
        print(render_training(data) if "training" in data else render(data))
        return 0
    if args.brats_case:
        return brats_case_main(args)
    if args.training:
        return training_main(args)
    started = time.time()
    specs = select(args)
    options = {"device": args.device, "quick": args.quick, "repeats": args.repeats, "warmup": args.warmup,
               "sw_repeats": args.sw_repeats, "overlap": args.overlap, "volume_3d": args.volume_3d,
               "images_2d": args.images_2d, "threads": args.threads, "profile_runs": 3 if args.quick else 5,
               "profile_top": args.profile_top}  # fmt: skip
    report: dict[str, Any] = {"machine": machine_info(), "options": {k: v for k, v in options.items()},
                              "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started))}  # fmt: skip
    with _workdir(args.workdir, "benchmark-") as workdir:
        log("reference throughput (matmul, Conv3d, Conv2d)")
        refs = run_worker({"task": "references", "options": options}, workdir, args.threads)
        if "error" in refs:
            raise SystemExit(f"reference measurement failed: {refs['error']}")
        report["machine"].update(threads=refs.pop("threads"), torch=refs.pop("torch"))
        report["references"] = refs
        named = [] if args.profile == "none" or args.profile.startswith("worst:") else \
            [x.strip() for x in args.profile.split(",")]
        networks = []
        for i, spec in enumerate(specs, 1):
            log(f"[{i}/{len(specs)}] {spec['name']} ({spec['spatial_dims']}D, ROI {'x'.join(map(str, spec['roi']))})")
            # networks named in --profile are profiled in the same worker, after the timed runs
            opts = dict(options, profile=spec["name"] in named)
            result = run_worker({"task": "network", "spec": spec, "options": opts}, workdir, args.threads)
            if "error" in result:
                log(f"  {spec['name']} failed: {result['error']}")
            else:
                sw = result.get("sliding_window", {})
                log(f"  {result['flops'] / 1e9:.2f} GFLOP, {result['latency_s'] * 1e3:.1f} ms, "
                    f"{100 * result['ratio_to_conv3d']:.0f}% of conv3d, SW {sw.get('seconds', 0):.1f} s "
                    f"({result['worker_wall_s']:.0f} s in all)")  # fmt: skip
            networks.append({"spec": spec, "result": result})
        report["networks"] = networks

        # profiles of the networks furthest below the reference (or those named)
        ok = [n for n in networks if "error" not in n["result"]]
        if args.profile.startswith("worst:"):
            chosen = [n["spec"]["name"] for n in sorted(ok, key=lambda n: n["result"]["ratio_to_conv3d"])][
                : int(args.profile.split(":")[1])]
        elif args.profile == "none":
            chosen = []
        else:
            chosen = [x.strip() for x in args.profile.split(",")]
        for n in networks:
            if n["spec"]["name"] in chosen and "error" not in n["result"] and "profile" not in n["result"]:
                log(f"profiling {n['spec']['name']} (torch.profiler)")
                prof = run_worker({"task": "network", "spec": n["spec"],
                                   "options": dict(options, no_sw=True, profile=True, repeats=1, warmup=1)},
                                  workdir, args.threads)  # fmt: skip
                n["result"]["profile"] = prof.get("profile", {"error": prof.get("error")})
                if "profile" not in prof:
                    n["result"].pop("profile")
                    n["result"]["profile_error"] = prof.get("error")

        if args.batch_bundle != "none" and args.batch_cases > 0:
            report["batch"] = run_batch(args, options, workdir)
    _finish_report(report, started, args.json)
    print(render(report))
    log(f"done in {report['seconds']:.0f} s; raw figures in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
