"""Tiny ``network_def`` widths per bundle: the one table the bundle tests shrink networks with.

A new bundle adds one entry here (``tests/bundles/test_export.py`` names any bundle that lacks one). The widths only
make a network fast (an epoch or an export in seconds); they hold no dataset-specific value, so every bundle test can
combine them with its own patch sizes.
"""

from __future__ import annotations

import json

TINY: dict[str, dict] = {
    "arunet3d": {"network_def#channels": [8, 16, 32, 64]},
    "linknet3d": {"network_def#channels": [8, 16, 32, 64]},
    "pspnet3d": {"network_def#channels": [8, 8, 16, 16], "network_def#layers": [1, 1, 1, 1]},
    "attention_resunet2d": {"network_def#channels": [4, 8, 16, 32, 64]},
    "unet2d": {"network_def#channels": [4, 8, 16, 32, 64]},
    "attention_unet2d": {"network_def#channels": [4, 8, 16, 32, 64]},
    "drrmsan": {"network_def#base_width": 4},
    "ddanet": {"network_def#channels": [4, 8, 16, 32], "network_def#decoder_channels": [16, 8, 4, 4]},
    "unet3plus": {"network_def#channels": [8, 16, 32, 64, 128], "network_def#skip_channels": 8},
    "fct": {"network_def#channels": [8, 16, 32, 64, 128]},
    "ssformer": {"network_def#depths": [1, 1, 1, 1], "network_def#embed_dims": [8, 16, 32, 64],
                 "network_def#num_heads": [1, 1, 2, 2], "network_def#decoder_channels": 16},
}


def tiny_args(name: str) -> list[str]:
    """``TINY[name]`` as ``python -m monai.bundle run`` arguments: ``["--network_def#channels", "[8,16,32,64]", ...]``."""
    return [text for key, value in TINY[name].items() for text in (f"--{key}", json.dumps(value, separators=(",", ":")))]
