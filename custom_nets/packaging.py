"""Turn a bundle of this repository into a self-contained MONAI bundle: a folder and a model-zoo style zip.

The bundles in ``bundles/`` import ``custom_nets`` (networks, transforms, handlers, datalists), which a user of a
packaged bundle (MONAI Label, 3D Slicer, a colleague with only ``requirements.txt`` installed) does not have. A package
therefore carries a copy of the ``custom_nets`` package inside the bundle folder and its configs are rewritten to use
that copy, whatever the working directory:

* ``_bundle_locator`` holds the source of :mod:`custom_nets.locate` (standard library only) as a plain string;
* ``bundle_root`` runs it, so it finds the bundle folder before anything else of ``custom_nets`` is importable (MONAI
  Label and ``--bundle_root DIR`` still override it);
* ``custom_nets`` puts ``bundle_root`` on ``sys.path`` (MONAI itself does this only inside ``run()``, and never for
  ``verify_net_in_out`` or ``ckpt_export``) and imports the vendored package;
* every expression's ``custom_nets.`` becomes a reference ``@custom_nets.``, and every component whose ``_target_`` is
  in ``custom_nets`` gets ``"_requires_": "@custom_nets"``, so the import happens before it is needed;
* ``"$import custom_nets"`` leaves ``imports`` (MONAI evaluates imports before any other item, and a failed import there
  only turns into an error much later).

Layout (MONAI model zoo)::

    OUT_DIR/<name>/configs/{metadata,inference,train,...}.json, logging.conf
    OUT_DIR/<name>/docs/README.md, LICENSE, large_files.yml
    OUT_DIR/<name>/models/model.pt            (when the bundle has a checkpoint, or --checkpoint is given)
    OUT_DIR/<name>/models/task.json, plans.json  (beside the weights when training wrote them: the model's channels,
                                              labels and spacing, so the package infers with the model's own task)
    OUT_DIR/<name>/custom_nets/...            (the vendored package)
    OUT_DIR/<name>/CHECKSUMS.sha256           (SHA-256 of every other file, ``sha256sum -c`` format)
    OUT_DIR/<name>_v<version>.zip             (the same folder, zipped)

A bundle is code: its configs run Python expressions and classes, and the vendored package runs in whatever loads
it. ``CHECKSUMS.sha256`` lets a user check that a package is the one that was made (``sha256sum -c``); batch
inference (:func:`custom_nets.inference.model.find_bundle`) verifies it before parsing any config
(:func:`verify_manifest`). It proves integrity, not trust: anyone can write a manifest for a bundle they made.

Everything is written to a temporary name first and renamed at the end, so an interrupted run never leaves a
half-written package behind.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from . import locate as _locate
from .data.dataset import TASK_FILE, Task
from .files import file_sha256, write_file_atomic
from .planning import PLANS_FILE

__all__ = ["MANIFEST_NAME", "PackageError", "PackagedBundle", "package_bundle", "vendor_configs", "verify_manifest",
           "write_manifest"]

logger = logging.getLogger(__name__)

PACKAGE_NAME = "custom_nets"
DISTRIBUTION_NAME = "custom-nets"
LOCATOR_ID = "_bundle_locator"
IMPORT_STATEMENT = f"$import {PACKAGE_NAME}"
# The two items run the locator's source (a plain string item) in a fresh namespace. They must not contain the word
# "import": MONAI's parser checks every expression with that word for an import statement with ``ast.parse`` before
# references are replaced, and ``@ref`` is not valid Python there.
_RUN_LOCATOR = f"(lambda namespace: exec(@{LOCATOR_ID}, namespace) or namespace)({{'__name__': 'bundle_locator'}})"
BUNDLE_ROOT_EXPRESSION = f"${_RUN_LOCATOR}['bundle_root']()"
IMPORT_EXPRESSION = f"${_RUN_LOCATOR}['load_vendored'](@bundle_root, '{PACKAGE_NAME}')"
# ``custom_nets.`` as a name in an expression (not inside a longer name, a reference or a quoted string)
_NAME_IN_EXPRESSION = re.compile(rf"(?<![\w.@'\"]){PACKAGE_NAME}(?=\.)")
_IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".DS_Store")
_BUNDLE_EXTRAS = ("LICENSE", "large_files.yml", "large_files.yaml", "large_files.json")
MANIFEST_NAME = "CHECKSUMS.sha256"
# what verify_manifest checks: code and configs; models/ (training rewrites model.pt; inference records its SHA-256)
# and Python's byte-code caches are not checked
_UNCHECKED_FOLDERS = ("models",)
# written by training beside model.pt (the model's task and the plan of its data): shipped with it
MODEL_COMPANIONS = (TASK_FILE, PLANS_FILE)
_CACHE_PARTS = ("__pycache__",)


def write_manifest(folder: str | os.PathLike) -> Path:
    """Write ``folder/CHECKSUMS.sha256``: one ``<sha256>  <relative path>`` line per file (``sha256sum -c`` format)."""
    folder = Path(folder)
    lines = [f"{file_sha256(path)}  {path.relative_to(folder).as_posix()}" for path in sorted(folder.rglob("*"))
             if path.is_file() and path.name != MANIFEST_NAME and not _is_cache(path.relative_to(folder))]
    manifest = folder / MANIFEST_NAME
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return manifest


def _is_cache(relative: Path) -> bool:
    return any(part in _CACHE_PARTS for part in relative.parts) or relative.suffix in (".pyc", ".pyo")


def verify_manifest(folder: str | os.PathLike) -> str | None:
    """Check a bundle folder against its ``CHECKSUMS.sha256``; the first problem found (one line), or None.

    None also when there is no manifest (a bundle of the repository, or packaged before manifests). Files under
    ``models/`` are not checked; a file under ``configs/`` or the vendored package that the manifest does not list is a
    problem (added code).
    """
    folder = Path(folder)
    manifest = folder / MANIFEST_NAME
    if not manifest.is_file():
        return None
    listed: dict[str, str] = {}
    for number, line in enumerate(manifest.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        digest, _, name = line.partition("  ")
        if not line.strip():
            continue
        if len(digest) != 64 or not name or Path(name).is_absolute() or ".." in Path(name).parts:
            return f"{MANIFEST_NAME} line {number} is malformed"
        listed[name] = digest.lower()
    for name, digest in listed.items():
        if Path(name).parts[0] in _UNCHECKED_FOLDERS:
            continue
        path = folder / name
        if not path.is_file():
            return f"{name} is listed in {MANIFEST_NAME} but missing"
        if file_sha256(path) != digest:
            return f"{name} does not match its SHA-256 in {MANIFEST_NAME}"
    for code_folder in ("configs", PACKAGE_NAME):
        for path in sorted((folder / code_folder).rglob("*")):
            relative = path.relative_to(folder)
            if path.is_file() and not _is_cache(relative) and relative.as_posix() not in listed:
                return f"{relative.as_posix()} is not listed in {MANIFEST_NAME}"
    return None


class PackageError(RuntimeError):
    """A bundle that cannot be packaged: the message names the file and the problem."""


@dataclass(frozen=True)
class PackagedBundle:
    """Where :func:`package_bundle` put the package."""

    folder: Path
    archive: Path | None
    version: str
    checkpoint: Path | None


def _rewrite_expression(text: str) -> str:
    return _NAME_IN_EXPRESSION.sub(f"@{PACKAGE_NAME}", text)


def _add_requirement(component: dict) -> None:
    requires = component.get("_requires_")
    ref = f"@{PACKAGE_NAME}"
    if requires is None:
        component["_requires_"] = ref
    elif isinstance(requires, list):
        if ref not in requires:
            component["_requires_"] = [ref, *requires]
    elif requires != ref:
        component["_requires_"] = [ref, requires]


def _rewrite(node: Any, where: str) -> Any:
    if isinstance(node, dict):
        rewritten = {key: _rewrite(value, f"{where}#{key}") for key, value in node.items()}
        target = rewritten.get("_target_")
        if isinstance(target, str) and (target == PACKAGE_NAME or target.startswith(f"{PACKAGE_NAME}.")):
            _add_requirement(rewritten)
        return rewritten
    if isinstance(node, list):
        return [_rewrite(value, f"{where}#{i}") for i, value in enumerate(node)]
    if isinstance(node, str) and node.startswith("$"):
        if re.match(rf"\$\s*(from\s+{PACKAGE_NAME}[\s.]|import\s+{PACKAGE_NAME}\.)", node):
            raise PackageError(f"{where}: '{node}' imports a submodule of {PACKAGE_NAME}; use '{IMPORT_STATEMENT}' "
                               f"and {PACKAGE_NAME}.<module>.<name> in expressions so that the package can be vendored")
        return _rewrite_expression(node)
    return node


def vendor_configs(config: dict, locator_source: str, where: str = "config") -> dict:
    """Rewrite one bundle config (a parsed JSON object) to use the bundle's vendored ``custom_nets``.

    Configs that do not mention ``custom_nets`` come back unchanged (``multi_gpu_train.json`` is merged onto
    ``train.json``, which defines the items). Configs that do get ``_bundle_locator``, ``bundle_root`` and
    ``custom_nets`` items, which are identical in every config of a bundle, so merging configs is safe.
    """
    if PACKAGE_NAME not in json.dumps(config):
        return dict(config)
    imports = config.get("imports", [])
    kept_imports = _rewrite(
        [item for item in imports if not (isinstance(item, str) and item.strip() == IMPORT_STATEMENT)], f"{where}#imports"
    )
    body = {key: value for key, value in config.items() if key not in ("imports", "bundle_root", PACKAGE_NAME, LOCATOR_ID)}
    rewritten: dict[str, Any] = {}
    if kept_imports:
        rewritten["imports"] = kept_imports
    rewritten[LOCATOR_ID] = locator_source
    rewritten["bundle_root"] = BUNDLE_ROOT_EXPRESSION
    rewritten[PACKAGE_NAME] = IMPORT_EXPRESSION
    rewritten.update(_rewrite(body, where))
    return rewritten


def _locator_source() -> str:
    source = Path(_locate.__file__).read_text(encoding="utf-8")
    for character in "@$%":
        if character in source:
            raise PackageError(f"{_locate.__file__} contains '{character}', which MONAI's config parser would interpret")
    return source


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PackageError(f"{path}: file not found") from None
    except json.JSONDecodeError as error:
        raise PackageError(f"{path}: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})") from None


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=4) + "\n", encoding="utf-8")


def _check_checkpoint(path: Path) -> None:
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is the same problem for the user
        raise PackageError(f"{path}: not a readable PyTorch checkpoint ({type(error).__name__}: {error})") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
        raise PackageError(f"{path}: expected a network state_dict (or a dict with a 'model' state_dict)")


def _read_task(path: Path) -> Task:
    try:
        return Task.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise PackageError(f"{path}: not a readable task.json ({type(error).__name__}: {error}); retrain, or delete "
                           "it to ship the bundle's default task") from None


def _describe_task(metadata: dict, task: Task) -> None:
    """Make ``metadata.json`` describe the shipped model's task: input channels, output channels, label values; the
    file-name suffixes (BraTS ``_flair`` ...) stay only when the channels are the bundle's own."""
    data_format = metadata.setdefault("network_data_format", {})
    image = data_format.setdefault("inputs", {}).setdefault("image", {})
    channel_def = {str(i): name for i, name in enumerate(task.channel_names)}
    if image.get("channel_def") != channel_def:
        metadata.pop("input_channel_suffixes", None)
    image.update(num_channels=task.in_channels, channel_def=channel_def)
    pred = data_format.setdefault("outputs", {}).setdefault("pred", {})
    pred.update(num_channels=task.out_channels, channel_def=dict(task.label_values))
    metadata["label_values"] = dict(task.label_values)


def _zip_folder(folder: Path, archive: Path) -> None:
    def write(partial: Path) -> None:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    zf.write(path, Path(folder.name) / path.relative_to(folder))

    write_file_atomic(archive, write)


def package_bundle(
    bundle: str | os.PathLike,
    out_dir: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    name: str | None = None,
    make_zip: bool = True,
    overwrite: bool = False,
) -> PackagedBundle:
    """Package ``bundle`` (a folder with ``configs/metadata.json``) into ``out_dir``; see the module docstring.

    Args:
        bundle: the bundle folder, e.g. ``bundles/arunet3d``.
        out_dir: where ``<name>/`` and ``<name>_v<version>.zip`` are written (created if missing).
        checkpoint: weights to ship as ``models/model.pt``; default: the bundle's own ``models/model.pt`` if any.
        name: the package's folder name (MONAI Label's model name); default: the bundle folder's name.
        make_zip: also write the zip.
        overwrite: replace an existing package of the same name instead of failing.
    """
    source = Path(bundle).expanduser().resolve()
    configs = source / "configs"
    if not (configs / "metadata.json").is_file():
        raise PackageError(f"{source}: not a bundle folder (no configs/metadata.json)")
    metadata = _read_json(configs / "metadata.json")
    version = str(metadata.get("version", "")).strip()
    if not version:
        raise PackageError(f"{configs / 'metadata.json'}: no 'version'")
    name = name or source.name
    out = Path(out_dir).expanduser().resolve()
    if out == source or source in out.parents:
        raise PackageError(f"{out}: the output folder must be outside the bundle {source}")
    target = out / name
    archive = out / f"{name}_v{version}.zip"
    for existing in (target, archive):
        if existing.exists() and not overwrite:
            raise PackageError(f"{existing} already exists (use --overwrite to replace it)")

    weights = Path(checkpoint).expanduser().resolve() if checkpoint else source / "models" / "model.pt"
    if checkpoint and not weights.is_file():
        raise PackageError(f"{weights}: checkpoint not found")
    weights = weights if weights.is_file() else None
    task = None
    if weights is not None:
        _check_checkpoint(weights)
        task = _read_task(weights.parent / TASK_FILE) if (weights.parent / TASK_FILE).is_file() else None

    out.mkdir(parents=True, exist_ok=True)
    locator = _locator_source()
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=out))
    try:
        staged = staging / name
        shutil.copytree(configs, staged / "configs", ignore=_IGNORED)
        if (source / "docs").is_dir():
            shutil.copytree(source / "docs", staged / "docs", ignore=_IGNORED)
        for extra in _BUNDLE_EXTRAS:
            if (source / extra).is_file():
                shutil.copy2(source / extra, staged / extra)
        package_dir = Path(_locate.__file__).resolve().parent
        shutil.copytree(package_dir, staged / PACKAGE_NAME, ignore=_IGNORED)
        if weights is not None:
            (staged / "models").mkdir()
            shutil.copy2(weights, staged / "models" / "model.pt")
            for companion in MODEL_COMPANIONS:
                if (weights.parent / companion).is_file():
                    shutil.copy2(weights.parent / companion, staged / "models" / companion)
            if task is not None:
                _describe_task(metadata, task)

        for config_path in sorted((staged / "configs").glob("*.json")):
            if config_path.name == "metadata.json":
                continue
            config = _read_json(config_path)
            if not isinstance(config, dict):
                raise PackageError(f"{source / 'configs' / config_path.name}: a bundle config must be a JSON object")
            _write_json(config_path, vendor_configs(config, locator, where=config_path.name))
        required = dict(metadata.get("required_packages_version", {}))
        required.pop(DISTRIBUTION_NAME, None)
        metadata["required_packages_version"] = required
        metadata["vendored_packages"] = {PACKAGE_NAME: __version__}
        _write_json(staged / "configs" / "metadata.json", metadata)
        write_manifest(staged)

        if target.exists():
            shutil.rmtree(target)
        os.replace(staged, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if make_zip:
        _zip_folder(target, archive)
    logger.info("packaged %s -> %s%s", source, target, f" and {archive}" if make_zip else "")
    logger.info("a bundle is code (its configs run Python expressions; the vendored %s runs wherever it is loaded): "
                "share it only with people who trust you, and its %s lets them check it is unchanged",
                PACKAGE_NAME, MANIFEST_NAME)
    return PackagedBundle(folder=target, archive=archive if make_zip else None, version=version, checkpoint=weights)
