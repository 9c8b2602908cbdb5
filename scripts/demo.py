#!/usr/bin/env python
"""The main job on built-in demo data: train a bundle briefly, segment the demo cases, report metrics.

Runs the same ``python -m monai.bundle`` commands a user would (see README), one after the other:

    python scripts/demo.py                       # AR-UNet 3D, a few epochs
    python scripts/demo.py --bundle arunet3d --epochs 30

Checkpoints, TensorBoard logs and demo data land in ``bundles/<name>/`` (models/, runs/, demo_data/); label maps and
the metrics CSV in ``--output`` (default ``demo_output/<name>``).
"""

from __future__ import annotations

import argparse
import csv
import shlex
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def bundle_command(config: Path, *args: str, run_id: str | None = None) -> list[str]:
    command = [sys.executable, "-m", "monai.bundle", "run"]
    if run_id:
        command.append(run_id)
    return command + ["--config_file", str(config), *args]


def run_step(title: str, command: list[str]) -> float:
    print(f"\n=== {title}\n$ {shlex.join(command)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPO)
    if result.returncode != 0:
        sys.exit(f"demo step '{title}' failed with exit code {result.returncode}")
    return time.perf_counter() - start


def print_metrics(csv_path: Path) -> None:
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"\nper-case metrics ({csv_path}):")
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="arunet3d", help="bundle folder name under bundles/")
    parser.add_argument("--epochs", type=int, default=16, help="training epochs (default: 16)")
    parser.add_argument(
        "--fast",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="48^3 training crops and a higher learning rate so the demo learns visibly in minutes on a CPU "
        "(default; --no-fast keeps the bundle's own settings)",
    )
    parser.add_argument("--output", type=Path, default=None, help="where label maps and metrics go")
    args = parser.parse_args(argv)

    configs = REPO / "bundles" / args.bundle / "configs"
    if not configs.is_dir():
        sys.exit(f"no bundle named '{args.bundle}' in {REPO / 'bundles'}")
    output = (args.output or REPO / "demo_output" / args.bundle).resolve()
    demo_data = REPO / "bundles" / args.bundle / "demo_data"
    timings = {
        "train": run_step(
            f"train {args.bundle} for {args.epochs} epochs on the demo data",
            bundle_command(
                configs / "train.json",
                "--epochs", str(args.epochs),
                "--val_interval", str(max(1, args.epochs // 3)),
                "--resume", "False",
                *(["--roi_size", "[48,48,48]", "--learning_rate", "3e-3"] if args.fast else []),
                run_id="training",
            ),
        ),
        "inference": run_step(
            "segment every demo case",
            bundle_command(configs / "inference.json", "--dataset_dir", str(demo_data), "--output_dir", str(output)),
        ),
        "evaluate": run_step(
            "evaluate against the demo labels",
            bundle_command(configs / "evaluate.json", "--dataset_dir", str(demo_data), "--output_dir", str(output)),
        ),
    }
    print_metrics(output / "metrics.csv")
    print("\n" + ", ".join(f"{step} {seconds:.0f} s" for step, seconds in timings.items()))
    print(f"label maps: {output}\ncheckpoints and TensorBoard logs: {REPO / 'bundles' / args.bundle}/models, runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
