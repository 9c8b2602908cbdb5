#!/usr/bin/env python
"""Compare the three LGG bundles (kept for its old command line; ``scripts/compare.py`` does the work).

    python scripts/compare_lgg.py                       # demo data, 10 epochs each, 2 folds
    python scripts/compare_lgg.py --dataset-dir /data/kaggle_3m --epochs 50 --output lgg_comparison

Equivalent to ``python scripts/compare.py --bundles attention_resunet2d,unet2d,attention_unet2d --dataset_dir ...
--demo lgg --folds 2 --epochs N --output_dir ... --extra "*=--batch_size B --learning_rate L"``; see its
docstring for the outputs (comparison.csv, comparison.md, comparison.png).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402

BUNDLES = ("attention_resunet2d", "unet2d", "attention_unet2d")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset-dir", default="demo", help="LGG layout folder (default: generated demo data)")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--folds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--output", type=Path, default=compare.REPO / "demo_output" / "lgg_comparison")
    args = parser.parse_args(argv)
    return compare.main([
        "--bundles", ",".join(BUNDLES), "--dataset_dir", args.dataset_dir, "--demo", "lgg",
        "--folds", str(args.folds), "--epochs", str(args.epochs), "--output_dir", str(args.output),
        "--extra", f"*=--num_workers 0 --batch_size {args.batch_size} --learning_rate {args.learning_rate}",
    ])  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
