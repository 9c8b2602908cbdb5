#!/usr/bin/env python
"""Write synthetic BraTS-layout demo cases: DIR/DEMO_000/DEMO_000_{flair,t1,t1ce,t2,seg}.nii.gz, ...

    python scripts/make_demo_data.py --out demo_data
    python scripts/make_demo_data.py --out /tmp/brats_demo --num-cases 20 --shape 128 128 96 --seed 1 --overwrite

The data are deterministic for a given seed and shape; an existing complete folder made with the same parameters is
reused unless --overwrite. See custom_nets.data.brats.generate_brats_demo for what the cases contain.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from custom_nets.convert.brats import find_brats_cases
from custom_nets.data.brats import generate_brats_demo
from custom_nets.data.errors import DatasetError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("demo_data"), help="output folder (default: ./demo_data)")
    parser.add_argument("--num-cases", type=int, default=8, help="number of cases (default: 8)")
    parser.add_argument(
        "--shape", type=int, nargs=3, default=(96, 96, 64), metavar=("X", "Y", "Z"), help="volume size (default: 96 96 64)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--overwrite", action="store_true", help="regenerate even if the folder already holds demo data")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    try:
        out = generate_brats_demo(args.out, num_cases=args.num_cases, shape=tuple(args.shape), seed=args.seed,
                                  overwrite=args.overwrite)
    except (DatasetError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    cases = find_brats_cases(out)
    shape = " x ".join(str(n) for n in args.shape)
    print(f"{len(cases)} synthetic BraTS demo cases ({shape} voxels, seed {args.seed}) in {out.resolve()} "
          f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
