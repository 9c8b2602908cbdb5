"""Find the folder of the bundle whose config MONAI is parsing, with nothing but the standard library.

A bundle config cannot know its own path: MONAI's ``"bundle_root": "."`` means the current directory. This module finds
the config file instead, on the call stack of MONAI's own callers (``ConfigWorkflow``, ``verify_net_in_out``,
``ckpt_export``) or on the ``--config_file`` command line, and returns the folder above ``configs/``.

It imports only the standard library on purpose: ``scripts/package_bundle.py`` embeds this file's source in the configs
of a self-contained bundle (item ``_bundle_locator``), where it has to run *before* the bundle's vendored copy of
``custom_nets`` can be put on ``sys.path``. Keep it free of third-party imports and decorators (no at-signs, dollar or
percent signs either: MONAI's config parser gives them meaning).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import logging
import os
import sys
from pathlib import Path

__all__ = ["bundle_root", "config_file_from_argv", "config_file_from_stack", "load_vendored", "root_of_config"]

logger = logging.getLogger(__name__)


def _as_paths(value: object) -> list[str]:
    """Turn a ``config_file`` value (a path, a list of paths, or the string form of a list) into a list of paths."""
    if isinstance(value, (str, os.PathLike)):
        text = str(value).strip()
        if text.startswith("[") or text.startswith("("):
            try:
                parsed = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return [text]
            return [str(p) for p in parsed]
        return [text]
    if isinstance(value, (list, tuple)):
        return [str(p) for p in value]
    return []


def root_of_config(config_path: str | os.PathLike) -> Path:
    """Return the bundle folder of a config file: the parent of ``configs/``, or the config's own folder."""
    folder = Path(config_path).expanduser().resolve().parent
    return folder.parent if folder.name == "configs" else folder


def config_file_from_argv(argv: list[str] | None = None) -> str | None:
    """Return the first config file named on a ``python -m monai.bundle ... --config_file X`` command line."""
    argv = list(sys.argv if argv is None else argv)
    for i, arg in enumerate(argv):
        if arg == "--config_file" and i + 1 < len(argv):
            paths = _as_paths(argv[i + 1])
            return paths[0] if paths else None
        if arg.startswith("--config_file="):
            paths = _as_paths(arg.split("=", 1)[1])
            return paths[0] if paths else None
    return None


def _is_config_workflow(obj: object) -> bool:
    return any(cls.__name__ == "ConfigWorkflow" for cls in type(obj).__mro__)


def config_file_from_stack() -> str | None:
    """Find the config being parsed by looking at MONAI's callers (ConfigWorkflow, verify_net_in_out, ckpt_export)."""
    frame = inspect.currentframe()
    try:
        while frame is not None:
            local = frame.f_locals
            owner = local.get("self")
            if owner is not None and _is_config_workflow(owner) and getattr(owner, "config_root_path", None):
                return str(Path(owner.config_root_path) / "_.json")
            if frame.f_globals.get("__name__", "").startswith("monai.bundle"):
                for name in ("config_file_", "config_file"):
                    paths = _as_paths(local.get(name)) if local.get(name) else []
                    if paths:
                        return paths[0]
            frame = frame.f_back
    finally:
        del frame
    return None


def bundle_root(default: str | os.PathLike | None = None) -> str:
    """Return the absolute path of the bundle whose config is being parsed.

    Looked up in order: the config file MONAI is parsing (found on the call stack of ``ConfigWorkflow``,
    ``verify_net_in_out`` or ``ckpt_export``), the ``--config_file`` argument on the command line, ``default``, and
    finally the current directory (MONAI's model-zoo convention), with a warning.
    """
    config_file = config_file_from_stack() or config_file_from_argv()
    if config_file:
        return str(root_of_config(config_file))
    if default is not None:
        return str(Path(default).expanduser().resolve())
    logger.warning("could not tell which bundle is being parsed; using the current directory as bundle_root")
    return str(Path.cwd())


def load_vendored(root: str | os.PathLike, package: str = "custom_nets"):
    """Put the bundle folder ``root`` first on ``sys.path`` and return its copy of ``package``.

    Used by the configs of a packaged bundle (``scripts/package_bundle.py``). When a ``package`` from elsewhere was
    imported before (an installed ``custom_nets``, or the copy of another packaged bundle in the same MONAI Label
    server), that one is kept and a warning says so: Python holds one module per name per process.
    """
    folder = str(Path(root).expanduser().resolve())
    if not (Path(folder) / package / "__init__.py").is_file():
        raise ModuleNotFoundError(f"{folder} has no vendored {package}/ package (is it a packaged bundle?)")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    module = importlib.import_module(package)
    origin = Path(getattr(module, "__file__", "") or "").resolve().parent.parent
    if str(origin) != folder:
        logger.warning(f"using {package} from {origin}, imported before the copy in {folder}")
    return module
