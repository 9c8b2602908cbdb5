"""``python -m custom_nets.convert LAYOUT SRC DST [--overwrite]``: one public dataset to the canonical layout.

Exit status 0 on success, 2 on bad usage or bad input (one line per problem on stderr), 1 on other failures
(disk full, permissions).
"""

from __future__ import annotations

import argparse
import logging
import sys

from ..data.errors import DatasetError
from . import LAYOUTS, convert


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(
        prog="python -m custom_nets.convert",
        description="Convert a public dataset folder into the canonical nnU-Net v2 layout (dataset.json, imagesTr, "
        "labelsTr, imagesTs, splits_final.json). Atomic: a failed conversion leaves no DST.",
    )
    parser.add_argument("layout", choices=[*sorted(LAYOUTS), "auto"], help="the public layout of SRC (auto: detect)")
    parser.add_argument("src", help="the public dataset folder")
    parser.add_argument("dst", help="the new dataset folder")
    parser.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        out = convert(args.layout, args.src, args.dst, overwrite=args.overwrite, progress=True)
    except (DatasetError, ValueError) as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
