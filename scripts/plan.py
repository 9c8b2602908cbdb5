#!/usr/bin/env python
"""Fingerprint a dataset and write its training plan (nnU-Net's rules; see custom_nets/planning.py).

    python scripts/plan.py DATASET_DIR -o PLANS.json            # then: train with --plan PLANS.json
    python scripts/plan.py DATASET_DIR -o PLANS.json --device cuda

The plan holds spatial_dims, target_spacing (RAS axis order), normalization (one per channel: ct, zscore,
zscore_nonzero, rgb), patch_size, batch_size, labels and channels. An existing PLANS.json made from the same files
is kept as it is. Training without --plan computes the same plan on its first run and caches it in models/plans.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset_dir", help="dataset folder (dataset.json + imagesTr/labelsTr, or a public layout)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="the plan file to write (JSON)")
    parser.add_argument("--device", default=None, help="device whose memory budgets the plan (default: cuda if present)")
    parser.add_argument("--workers", type=int, default=2, help="cases read in parallel (default 2)")
    args = parser.parse_args(argv)

    from custom_nets.data import DatasetError, read_dataset
    from custom_nets.data.dataset import check_dataset
    from custom_nets.planning import plan_dataset

    try:
        dataset = read_dataset(args.dataset_dir)
        check_dataset(dataset)
        plan = plan_dataset(dataset, args.output, device=args.device, workers=args.workers)
    except (DatasetError, OSError) as err:
        print(f"plan.py: {err}", file=sys.stderr)
        return 1
    norms = ", ".join(f"{c}: {n['scheme']}" for c, n in zip(plan["channels"], plan["normalization"]))
    print(f"{args.output}: {plan['spatial_dims']}D, spacing {plan['target_spacing']}, patch {plan['patch_size']}, "
          f"batch {plan['batch_size']}, normalisation {norms}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
