#!/usr/bin/env python
"""Let PyPI's torchvision 0.28.0 import beside the CPU build of torch 2.13.0 (the optional MONAI Label environment).

    .venv-monailabel/bin/python scripts/patch_torchvision_ops.py          # patch (idempotent), then check the import
    .venv-monailabel/bin/python scripts/patch_torchvision_ops.py --check  # only report; exit 1 if the import fails

Why: MONAI Label 0.8.5 imports ``torchvision`` at start-up, and PyPI's torchvision 0.28.0 wheel cannot load its compiled
ops (``torchvision/_C.so``) next to the local CPU build of torch 2.13.0. torchvision then already skips the ops it
registers through its own ``register_meta`` helper (guarded by ``torchvision.extension._has_ops()``), but two
registrations in ``torchvision/_meta_registrations.py`` are unguarded::

    @torch.library.register_fake("torchvision::nms")
    @torch.library.register_fake("torchvision::qnms")

and fail with ``RuntimeError: operator torchvision::nms does not exist``, so ``import torchvision`` fails. This script
applies the same guard to those two lines (a decorator that does nothing when the compiled ops are missing), so the
pure-Python parts of torchvision import. Nothing MONAI Label needs for bundle inference or training calls the compiled
ops (NMS, RoI align, deformable convolution: detection models only). When the compiled ops do load (a matching
torch/torchvision pair), the guarded lines behave exactly as the original ones.

Run it with the Python of the environment to patch: it patches the torchvision that this interpreter would import. It
only edits that file, only those two lines, and leaves a file it already patched (or one without those lines, i.e. a
torchvision version that does not need it) untouched. Reinstalling torchvision undoes it; run it again afterwards
(``make monailabel-venv`` does).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

MARKER = "# guarded by custom_nets scripts/patch_torchvision_ops.py"
# an unguarded fake-kernel registration of a compiled torchvision op, as a decorator on its own line
_UNGUARDED = re.compile(r'^@torch\.library\.register_fake\(("torchvision::(?:nms|qnms)")\)[ \t]*$', re.MULTILINE)
_GUARDED = (r"@(torch.library.register_fake(\1) if torchvision.extension._has_ops() else (lambda fn: fn))  " + MARKER)


def meta_registrations_file() -> Path | None:
    """``torchvision/_meta_registrations.py`` of this interpreter's torchvision (found without importing it)."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "_meta_registrations.py"
    return path if path.is_file() else None


def patch(path: Path) -> int:
    """Guard the unguarded registrations in ``path``; returns how many lines changed (0 when already patched)."""
    text = path.read_text(encoding="utf-8")
    patched, count = _UNGUARDED.subn(_GUARDED, text)
    if count:
        path.write_text(patched, encoding="utf-8")
        for cache in path.parent.glob("__pycache__/_meta_registrations.*.pyc"):
            cache.unlink(missing_ok=True)
    return count


def import_error() -> str | None:
    """None when ``import torchvision.utils`` works in a fresh interpreter, else the last line of its error."""
    result = subprocess.run([sys.executable, "-c", "import torchvision.utils"], capture_output=True, text=True)
    if result.returncode == 0:
        return None
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit code {result.returncode}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="do not patch; only check that torchvision imports")
    args = parser.parse_args(argv)

    path = meta_registrations_file()
    if path is None:
        print(f"torchvision is not installed for {sys.executable}; nothing to do")
        return 0
    if not args.check:
        count = patch(path)
        if count:
            print(f"guarded {count} compiled-op registration(s) in {path}")
        elif MARKER in path.read_text(encoding="utf-8"):
            print(f"already patched: {path}")
        else:
            print(f"nothing to patch in {path}")
    error = import_error()
    if error:
        print(f"import torchvision.utils still fails: {error}", file=sys.stderr)
        return 1
    print("import torchvision.utils: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
