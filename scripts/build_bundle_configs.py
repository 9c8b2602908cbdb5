#!/usr/bin/env python
"""Generate the config files, model card, LICENSE copy and large_files.yml of every bundle from its task template.

Bundles that share a task (the three 3D BraTS bundles, ...) differ only in their network and a few numbers, so their
configs are generated from one template (``scripts/bundle_templates/<task>.py``) and a registry of what differs
(``scripts/bundle_templates/<family>_bundles.py``) instead of being copied by hand. The generated JSON is committed, so each bundle folder works on its own.

    python scripts/build_bundle_configs.py          # rewrite the generated files
    python scripts/build_bundle_configs.py --check  # exit 1 if any committed file differs from the template
"""

from __future__ import annotations

import argparse
import importlib
import difflib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


REPO = Path(__file__).resolve().parent.parent
CARD_TEMPLATES = Path(__file__).resolve().parent / "bundle_templates"
LOGGING_CONF = CARD_TEMPLATES / "logging.conf"
REGISTRIES = ("brats_bundles", "lgg_bundles", "polyp_bundles", "gi_bundles")


def all_bundles() -> dict[str, dict]:
    """Every bundle's registry entry, from the ``bundle_templates/<family>_bundles.py`` modules that exist."""
    bundles: dict[str, dict] = {}
    for module_name in REGISTRIES:
        if (Path(__file__).resolve().parent / "bundle_templates" / f"{module_name}.py").exists():
            bundles.update(importlib.import_module(f"bundle_templates.{module_name}").BUNDLES)
    return bundles




# The versions the bundles were generated and tested with (metadata's *_version fields). Fixed here rather than read
# from the environment so that the generated files do not depend on the machine that regenerates them.
VERSIONS = {
    "monai": "1.6.1",
    "torch": "2.13.0",
    "numpy": "2.4.6",
    "custom_nets": "0.1.0",
    "nibabel": "5.4.2",
    "ignite": "0.5.5",
    "tensorboard": "2.21.0",
    "itk": "5.4.7",
    "pillow": "13.0.0",
}


def parameter_count(network_def: dict, **overrides) -> int:
    """Parameters of ``network_def`` with ``overrides``, built on the meta device (no memory, no forward pass)."""
    import torch
    from monai.bundle import ConfigParser

    with torch.device("meta"):
        network = ConfigParser({"net": {**network_def, **overrides}}).get_parsed_content("net")
    return sum(p.numel() for p in network.parameters())


def render_card(name: str, bundle: dict) -> str:
    """The model card: the task template with the bundle's network section and measured parameter counts."""
    card = CARD_TEMPLATES / bundle["card_template"]
    text = card.read_text().replace("@@NETWORK@@", (CARD_TEMPLATES / "cards" / f"{name}.md").read_text().strip())
    values = {
        "@@TITLE@@": bundle["title"],
        "@@SUMMARY@@": bundle["summary"],
        "@@NAME@@": name,
        "@@PARAMS_DEFAULT@@": f"{parameter_count(bundle['network_def']):,}",
        "@@PARAMS_REFERENCE@@": f"{parameter_count(bundle['network_def'], **bundle['reference_widths']):,}",
    }
    for marker, value in values.items():
        text = text.replace(marker, value)
    return text


# large_files.yml (MONAI model zoo convention: files too large for the repository, downloaded by URL and hash check).
# No weights are published yet, so the entry names the file training writes and leaves url and hash empty.
LARGE_FILES = """\
# Large files of this bundle, in the MONAI model zoo's format (url, hash_val and hash_type per file).
# No pretrained weights are published for this bundle yet: url and hash_val are empty. Train the bundle to
# create models/model.pt (python -m monai.bundle run training --config_file configs/train.json).
large_files:
  - path: "models/model.pt"
    url: ""
    hash_val: ""
    hash_type: "md5"
"""


def render(config: dict) -> str:
    return json.dumps(config, indent=4) + "\n"


def generated_files(names: list[str] | None = None) -> dict[Path, str]:
    """Every generated file's path and text."""
    files = {}
    for name, bundle in all_bundles().items():
        if names and name not in names:
            continue
        for filename, config in bundle["template"].bundle_configs(bundle, VERSIONS).items():
            files[REPO / "bundles" / name / "configs" / filename] = render(config)
        files[REPO / "bundles" / name / "configs" / "logging.conf"] = LOGGING_CONF.read_text()
        files[REPO / "bundles" / name / "LICENSE"] = (REPO / "LICENSE").read_text()
        files[REPO / "bundles" / name / "large_files.yml"] = LARGE_FILES
        files[REPO / "bundles" / name / "docs" / "README.md"] = render_card(name, bundle)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundles", nargs="*", help="bundle names (default: all)")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generated_files(args.bundles).items():
        current = path.read_text() if path.exists() else ""
        if current == text:
            continue
        stale.append(path)
        if args.check:
            diff = difflib.unified_diff(current.splitlines(), text.splitlines(), str(path), "generated", lineterm="")
            print("\n".join(list(diff)[:40]))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(REPO)}")
    if args.check and stale:
        print(f"{len(stale)} generated config file(s) out of date; run python scripts/build_bundle_configs.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
