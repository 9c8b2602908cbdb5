#!/usr/bin/env python
"""Segment every case of a folder with a bundle: one label map per case with the input's geometry, and summary.csv.

    python scripts/segment.py --bundle bundles/arunet3d -i /data/BraTS2021 -o predictions
    python scripts/segment.py --bundle arunet3d.zip --trust -i scans -o out --tta --preview --verbose

A bundle is code (its configs run Python): bundles from outside this repository's bundles/ folder need --trust.

Formats, grouping rules, outputs, options, exit codes and memory behaviour: docs/batch_inference.md, or --help.
The work is done by custom_nets.inference (discovery, io, model, runner); this script is its command line.
"""

import sys

from custom_nets.inference.cli import main

if __name__ == "__main__":
    sys.exit(main())
