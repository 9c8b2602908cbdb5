"""Profile the CPU forward of bundle networks in this process, against the Conv3d reference (issue #9).

A quick, in-process companion of ``scripts/benchmark.py`` with the same pieces (:mod:`custom_nets.benchmarking`): the
network of each bundle's ``configs/inference.json`` at its default widths on the benchmark's ROI patch (batch 1, eval,
``torch.inference_mode``), FLOPs counted as the benchmark counts them (CPU flash attention included, at the true head
width, on the plain network), timed as inference runs it (``custom_nets.inference.speedups.apply``), the
``Conv3d(32 -> 32, 3^3)`` reference on ``1 x 32 x 64^3`` run alternately with the network, and the
torch.profiler top ops. It adds ``--clock cpu``: thread CPU time with one thread, nearly insensitive to other load on
a shared machine. For the full report (peers, sliding window, memory, batch inference) use ``scripts/benchmark.py``.

Usage::

    python scripts/profile_nets.py                      # all bundles, table only
    python scripts/profile_nets.py arunet3d fct --ops 8 # selected bundles, with the top 8 ops each
    python scripts/profile_nets.py --repeats 15 --threads 2
    python scripts/profile_nets.py --clock cpu          # single-thread CPU time, robust on a loaded machine
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from custom_nets import benchmarking as benchmark  # the measuring core shared with scripts/benchmark.py
from custom_nets.inference import speedups

CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
"""``wall``: elapsed time (what a user waits for; noisy when other processes share the cores). ``cpu``: CPU time of
the calling thread, only meaningful with one intra-op thread (``--threads 1``), nearly insensitive to other load."""


def profile_bundle(name: str, repeats: int = 7, warmup: int = 2, ops: int = 0, clock: str = "wall") -> dict[str, Any]:
    """FLOPs, median latency and GFLOP/s of one bundle network's patch forward, the same for the Conv3d reference
    timed alternately with it, their ratio in percent (``pct_ref``, median of the per-pair ratios) and, with ``ops``,
    the top ops by self CPU time."""
    spec = benchmark.bundle_spec(name)
    net = benchmark.build_network(spec).eval()
    x = torch.randn(1, spec["in_channels"], *spec["roi"], generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        def run() -> Any:
            return net(x)

        flops, _ = benchmark.count_flops(run)  # on the plain network, then timed as inference runs it
        speedups.apply(net)
        ref, ref_flops, _ = benchmark.reference_callable(quick=False, device="cpu")
        ref_times, times = benchmark.time_paired(run, ref, repeats, warmup, "cpu", timer=CLOCKS[clock])
        result: dict[str, Any] = {"input": [1, spec["in_channels"], *spec["roi"]], "gflop": flops / 1e9}
        sec, ref_sec = statistics.median(times), statistics.median(ref_times)
        result.update(latency_ms=sec * 1e3, gflops=flops / sec / 1e9, ref_gflops=ref_flops / ref_sec / 1e9,
                      pct_ref=100.0 * statistics.median((flops / t) / (ref_flops / r) for t, r in zip(times, ref_times)))
        if ops:
            result["profile"] = benchmark.profile_forward(run, runs=1, top=ops)
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
    names = args.bundles or benchmark.all_bundles()
    unknown = sorted(set(names) - set(benchmark.all_bundles()))
    if unknown:
        parser.error(f"unknown bundle(s) {', '.join(unknown)}; known: {', '.join(benchmark.all_bundles())}")

    print(f"threads: {torch.get_num_threads()}  clock: {args.clock}  torch {torch.__version__}; each network is "
          f"timed alternately with the Conv3d(32->32, 3^3) reference on 1x32x64^3 ('ref GF/s', '% ref')")
    header = f"{'bundle':22s} {'input':>18s} {'GFLOP':>8s} {'ms':>9s} {'GFLOP/s':>8s} {'ref GF/s':>8s} {'% ref':>6s}"
    print(header)
    print("-" * len(header))
    results: dict[str, Any] = {"threads": torch.get_num_threads(), "clock": args.clock, "networks": {}}
    for name in names:
        res = profile_bundle(name, args.repeats, args.warmup, args.ops, args.clock)
        shape = "x".join(str(s) for s in res["input"])
        print(f"{name:22s} {shape:>18s} {res['gflop']:8.2f} {res['latency_ms']:9.1f} {res['gflops']:8.1f} "
              f"{res['ref_gflops']:8.1f} {res['pct_ref']:6.1f}")  # fmt: skip
        for op in res.get("profile", {}).get("top_ops", []):
            print(f"    {op['op']:40s} {op['self_cpu_ms_per_run']:9.2f} ms  {100 * op['share']:5.1f} %  "
                  f"{op['calls_per_run']:.0f} calls")
        results["networks"][name] = res
        sys.stdout.flush()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
