"""``python -m custom_nets.inference --bundle B -i IN -o OUT``: the same as ``scripts/segment.py``."""

import sys

from .cli import main

sys.exit(main())
