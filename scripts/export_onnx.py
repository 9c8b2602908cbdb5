#!/usr/bin/env python
"""Export a bundle's network to ONNX and check ONNX Runtime against eager PyTorch.

    python scripts/export_onnx.py --bundle bundles/arunet3d -o arunet3d.onnx
    python scripts/export_onnx.py --bundle bundles/arunet3d -o arunet3d.onnx --checkpoint bundles/arunet3d/models/model.pt
    python scripts/export_onnx.py --bundle bundles/ddanet -o ddanet.onnx --override "network_def#channels=[4,8,16,32]"

What is exported and how it is checked: :mod:`custom_nets.export`. Exit status 1 when the check fails, 2 for bad
arguments or a checkpoint that does not fit the bundle's network (one line, nothing written).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from custom_nets.bundle import parse_override
from custom_nets.export import export_and_check
from custom_nets.inference.errors import SetupError


def _override(text: str):
    try:
        return parse_override(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True, help="the bundle folder, e.g. bundles/arunet3d")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--checkpoint", type=Path, help="weights: model.pt or checkpoint_last.pt (default: random)")
    parser.add_argument("--override", action="append", default=[], type=_override, metavar="KEY=VALUE",
                        help="config override, e.g. network_def#channels=[8,16,32,64] (repeatable)")  # fmt: skip
    parser.add_argument("--spatial-size", type=int, nargs="+", help="spatial size of the example input")
    args = parser.parse_args(argv)
    if not (args.bundle / "configs" / "inference.json").is_file():
        parser.error(f"{args.bundle} is not a bundle folder (no configs/inference.json)")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        parser.error(f"checkpoint {args.checkpoint} does not exist")
    try:
        report = export_and_check(args.bundle, args.output, dict(args.override), args.checkpoint, args.spatial_size)
    except SetupError as error:  # an unreadable or mismatched checkpoint: one line, nothing written
        print(f"error: {error}", file=sys.stderr)
        return 2
    axes = "batch and spatial axes" if report["dynamic_spatial"] else "batch axis only"
    print(f"wrote {args.output} (dynamic {axes}); parity {'OK' if report['ok'] else 'FAILED'}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
