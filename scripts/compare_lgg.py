#!/usr/bin/env python
"""Train the three LGG bundles on the same data with the same budget and print one comparison table.

    python scripts/compare_lgg.py                       # demo data, 10 epochs each (< 15 min on 2 CPU cores)
    python scripts/compare_lgg.py --dataset-dir /data/kaggle_3m --epochs 50 --output lgg_comparison

Each bundle trains through ``python -m monai.bundle run training`` with the same split, epochs, batch size and
learning rate, its own default loss, and outputs under ``--output/<bundle>`` (the repository's bundle folders are
not touched); then ``evaluate.json`` scores it on the validation patients. The table (model, parameters, training
time, mean per-patient Dice and IoU) is printed and written to ``--output/comparison.csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUNDLES = ("attention_resunet2d", "unet2d", "attention_unet2d")


def parameter_count(config: Path) -> int:
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(config))
    network = parser.get_parsed_content("network_def")
    return sum(p.numel() for p in network.parameters())


def bundle(config: Path, root: Path, args: list[str], run_id: str | None = None) -> None:
    command = [sys.executable, "-m", "monai.bundle", "run", *([run_id] if run_id else [])]
    command += ["--config_file", str(config), "--bundle_root", str(root), *args]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)}\nfailed:\n{result.stderr[-3000:]}")


def mean_row(metrics_csv: Path) -> dict[str, str]:
    with open(metrics_csv, newline="") as f:
        return [row for row in csv.DictReader(f) if row["patient"] == "mean"][0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset-dir", default="demo", help="LGG layout folder (default: generated demo data)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--output", type=Path, default=REPO / "demo_output" / "lgg_comparison")
    args = parser.parse_args(argv)

    output = args.output.resolve()
    dataset = args.dataset_dir
    if dataset.lower() == "demo":  # one copy of the demo data shared by the three runs
        from custom_nets.data.lgg import generate_lgg_demo

        dataset = str(generate_lgg_demo(output / "demo_data"))
    common = ["--dataset_dir", dataset, "--num_workers", "0"]
    rows = []
    for name in BUNDLES:
        configs = REPO / "bundles" / name / "configs"
        root = output / name
        print(f"training {name} for {args.epochs} epochs ...", flush=True)
        start = time.perf_counter()
        bundle(
            configs / "train.json",
            root,
            [*common, "--epochs", str(args.epochs), "--val_interval", str(args.epochs), "--resume", "False",
             "--batch_size", str(args.batch_size), "--learning_rate", str(args.learning_rate)],
            run_id="training",
        )  # fmt: skip
        seconds = time.perf_counter() - start
        # score on the validation patients of the same split
        val_list = root / "val_datalist.json"
        from monai.bundle import ConfigParser

        train = ConfigParser()
        train.read_config(str(configs / "train.json"))
        train["bundle_root"], train["dataset_dir"] = str(root), dataset
        val_list.write_text(json.dumps(train.get_parsed_content("val_datalist")))
        bundle(configs / "evaluate.json", root, [*common, "--datalist", f"$__import__('json').load(open({str(val_list)!r}))"])
        mean = mean_row(root / "eval" / "metrics.csv")
        rows.append({
            "model": name,
            "params": parameter_count(configs / "train.json"),
            "train_seconds": round(seconds, 1),
            "dice": float(mean["dice_tumour"]),
            "iou": float(mean["iou_tumour"]),
        })  # fmt: skip

    header = f"{'model':<22}{'params':>12}{'train time':>12}{'Dice':>8}{'IoU':>8}"
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        print(f"{r['model']:<22}{r['params']:>12,}{r['train_seconds']:>11.0f}s{r['dice']:>8.3f}{r['iou']:>8.3f}")
    with open(output / "comparison.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"\nper-patient metrics: {output}/<model>/eval/metrics.csv; table: {output / 'comparison.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
