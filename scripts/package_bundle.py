#!/usr/bin/env python
"""Package a bundle as a self-contained MONAI bundle folder and model-zoo zip (vendored custom_nets, no install needed).

    python scripts/package_bundle.py bundles/arunet3d -o dist
    python scripts/package_bundle.py bundles/arunet3d -o monaibundle/model --checkpoint runs/best.pt --no-zip

Writes ``OUT_DIR/<name>/`` and ``OUT_DIR/<name>_v<version>.zip``. The package runs with only the packages of
``requirements.txt`` installed, from any working directory, and loads in MONAI Label (docs/monai_label.md). How the
configs are rewritten: custom_nets/packaging.py.

A bundle is code: its configs run Python expressions and classes, and the vendored custom_nets runs wherever the
package is loaded. The package carries CHECKSUMS.sha256 (SHA-256 of every file; ``sha256sum -c CHECKSUMS.sha256``),
which segment.py verifies before loading; a receiver should still run it only if they trust its source
(``segment.py --trust``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from custom_nets.packaging import PackageError, package_bundle  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", help="bundle folder, e.g. bundles/arunet3d")
    parser.add_argument("-o", "--output", required=True, help="output folder (created if missing)")
    parser.add_argument("--checkpoint", help="weights to ship as models/model.pt (default: the bundle's "
                        "models/model.pt); the task.json and plans.json beside it are shipped too")
    parser.add_argument("--name", help="folder name of the package (MONAI Label's model name); default: the bundle's")
    parser.add_argument("--no-zip", action="store_true", help="write the folder only")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing package of the same name")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        packaged = package_bundle(args.bundle, args.output, checkpoint=args.checkpoint, name=args.name,
                                  make_zip=not args.no_zip, overwrite=args.overwrite)
    except PackageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"bundle:     {packaged.folder}")
    if packaged.archive:
        print(f"archive:    {packaged.archive}")
    print(f"checkpoint: {'models/model.pt' if packaged.checkpoint else 'none (untrained; train it or pass --checkpoint)'}")
    task = packaged.folder / "models" / "task.json"
    shipped = "models/task.json (the channels and labels the model was trained on)"
    print(f"task:       {shipped if task.is_file() else 'the bundle default (no task.json beside the checkpoint)'}")
    print("checksums:  CHECKSUMS.sha256 in the bundle (verified by segment.py on load; sha256sum -c CHECKSUMS.sha256)")
    print("note:       a bundle is code (its configs run Python); share it only with people who trust its source")
    return 0


if __name__ == "__main__":
    sys.exit(main())
