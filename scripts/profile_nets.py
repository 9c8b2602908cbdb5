"""Profile the CPU forward pass of every bundle network against a Conv3d reference throughput (issue #9).

For each bundle the network of ``configs/inference.json`` (``network_def``) is built at its default widths and run in
eval mode under ``torch.inference_mode`` on one ROI patch (batch 1): the bundle's ``roi_size`` (inference or train
config), else its ``image_size``, else 256 x 256. Reported per network: FLOPs (``torch.utils.flop_counter``), median
latency, achieved GFLOP/s, that figure as a percentage of the reference, and optionally the top ops by self CPU time
(``torch.profiler``).

The reference is a ``Conv3d(32 -> 32, 3^3, padding=1)`` on a ``1 x 32 x 64^3`` input, FLOPs counted the same way.

Usage::

    python scripts/profile_nets.py                      # all bundles, table only
    python scripts/profile_nets.py arunet3d fct --ops 8 # selected bundles, with the top 8 ops each
    python scripts/profile_nets.py --repeats 15 --threads 2
    python scripts/profile_nets.py --clock cpu          # single-thread CPU time, robust on a loaded machine

Timings are medians over ``--repeats`` runs after ``--warmup`` runs; on a shared machine compare runs made in the same
process: each network is timed interleaved with the reference conv, and ``--clock cpu`` (thread CPU time, one
thread) is nearly insensitive to other processes on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
BUNDLES = REPO / "bundles"


def count_flops(fn: Callable[[], object]) -> int:
    """Total FLOPs of one call of ``fn`` as counted by ``FlopCounterMode``."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
"""``wall``: elapsed time (what a user waits for; noisy when other processes share the cores). ``cpu``: CPU time of
the calling thread, only meaningful with one intra-op thread (``--threads 1``), nearly insensitive to other load."""


def time_median(fn: Callable[[], object], repeats: int = 7, warmup: int = 2, clock: str = "wall") -> float:
    """Median time (seconds, ``clock``) of ``fn`` over ``repeats`` runs after ``warmup`` runs."""
    timer = CLOCKS[clock]
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = timer()
        fn()
        times.append(timer() - t0)
    return statistics.median(times)


def time_interleaved(
    fns: Sequence[Callable[[], object]], repeats: int = 7, warmup: int = 1, clock: str = "wall"
) -> list[float]:
    """Median time of each of ``fns``, run in turn ``repeats`` times (so slow drifts in load hit all of them)."""
    timer = CLOCKS[clock]
    for fn in fns:
        for _ in range(warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t0 = timer()
            fn()
            times[i].append(timer() - t0)
    return [statistics.median(t) for t in times]


def reference_run() -> Callable[[], torch.Tensor]:
    """One call of the reference: ``Conv3d(32, 32, 3, padding=1)`` on ``1 x 32 x 64^3`` (eval, inference mode)."""
    conv = nn.Conv3d(32, 32, 3, padding=1).eval()
    x = torch.randn(1, 32, 64, 64, 64)

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return conv(x)

    return run


def reference_gflops(repeats: int = 7, warmup: int = 2, clock: str = "wall") -> tuple[float, float, int]:
    """``(GFLOP/s, seconds, flops)`` of the reference conv (:func:`reference_run`)."""
    run = reference_run()
    flops = count_flops(run)
    sec = time_median(run, repeats, warmup, clock)
    return flops / sec / 1e9, sec, flops


def _roi(bundle: Path) -> list[int]:
    for name in ("inference.json", "train.json"):
        path = bundle / "configs" / name
        if not path.is_file():
            continue
        cfg = json.loads(path.read_text())
        for key in ("roi_size", "image_size"):
            value = cfg.get(key)
            if isinstance(value, list) and all(isinstance(v, int) for v in value):
                return value
    return [256, 256]


def build_network(bundle: str) -> tuple[nn.Module, torch.Tensor]:
    """The bundle's default network (eval mode) and a random ROI input ``(1, in_channels, *roi)``."""
    from monai.bundle import ConfigParser

    folder = BUNDLES / bundle
    parser = ConfigParser()
    parser.read_config(str(folder / "configs" / "inference.json"))
    net = parser.get_parsed_content("network_def", instantiate=True).eval()
    in_channels = int(parser.get_parsed_content("network_def#in_channels"))
    roi = _roi(folder)
    torch.manual_seed(0)
    return net, torch.randn(1, in_channels, *roi)


def profile_network(
    net: nn.Module, x: torch.Tensor, repeats: int = 7, warmup: int = 1, ops: int = 0, clock: str = "wall"
) -> dict:
    """FLOPs, median latency, GFLOP/s of ``net(x)`` (eval, inference mode) and of the reference conv, timed
    interleaved with it, and the ratio of the two throughputs in percent (``pct_ref``)."""

    def run() -> torch.Tensor:
        with torch.inference_mode():
            return net(x)

    ref_run = reference_run()
    flops = count_flops(run)
    ref_flops = count_flops(ref_run)
    sec, ref_sec = time_interleaved([run, ref_run], repeats, warmup, clock)
    result = {
        "gflop": flops / 1e9,
        "latency_ms": sec * 1e3,
        "gflops": flops / sec / 1e9,
        "ref_gflops": ref_flops / ref_sec / 1e9,
        "pct_ref": 100.0 * (flops / sec) / (ref_flops / ref_sec),
    }
    if ops:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        result["top_ops"] = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=ops)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundles", nargs="*", help="bundle names (default: all bundles)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--ops", type=int, default=0, help="print the top N ops by self CPU time")
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: torch's default)")
    parser.add_argument(
        "--clock", choices=sorted(CLOCKS), default="wall", help="wall time, or thread CPU time (sets 1 thread)"
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.clock == "cpu":
        args.threads = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.bundles or sorted(p.name for p in BUNDLES.iterdir() if (p / "configs" / "inference.json").is_file())

    ref, ref_sec, ref_flops = reference_gflops(args.repeats, args.warmup, args.clock)
    print(f"threads: {torch.get_num_threads()}  clock: {args.clock}  torch {torch.__version__}")
    print(f"reference Conv3d(32->32, 3^3) on 1x32x64^3: {ref_flops / 1e9:.2f} GFLOP, {ref_sec * 1e3:.1f} ms, "
          f"{ref:.1f} GFLOP/s (each network is timed interleaved with the reference: 'ref GF/s', '% ref')")  # fmt: skip
    header = (
        f"{'bundle':22s} {'input':>18s} {'GFLOP':>8s} {'ms':>9s} {'GFLOP/s':>8s} {'ref GF/s':>8s} {'% ref':>6s}"
    )
    print(header)
    print("-" * len(header))
    results = {"reference_gflops": ref, "networks": {}}
    for name in names:
        net, x = build_network(name)
        res = profile_network(net, x, args.repeats, args.warmup, args.ops, args.clock)
        shape = "x".join(str(s) for s in x.shape)
        print(f"{name:22s} {shape:>18s} {res['gflop']:8.2f} {res['latency_ms']:9.1f} {res['gflops']:8.1f} "
              f"{res['ref_gflops']:8.1f} {res['pct_ref']:6.1f}")  # fmt: skip
        if args.ops:
            print(res["top_ops"])
        results["networks"][name] = {k: v for k, v in res.items() if k != "top_ops"}
        sys.stdout.flush()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
