"""Shared fixtures: the repository paths and a way to run ``python -m monai.bundle`` as a user would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
BUNDLES = REPO / "bundles"
# absolute tolerance of a sped-up computation (oneDNN convolutions, channels-last) against the plain one
SPEEDUP_ATOL = 1e-5


def bundle_names() -> list[str]:
    return sorted(p.name for p in BUNDLES.iterdir() if (p / "configs" / "metadata.json").is_file())


def run_bundle(args: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run ``python -m monai.bundle <args>`` in a subprocess from ``cwd``; fail the test with its output on error."""
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    result = subprocess.run(
        [sys.executable, "-m", "monai.bundle", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    if result.returncode != 0:
        pytest.fail(f"monai.bundle {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def copy_bundle(name: str, tmp_path: Path) -> Path:
    """A copy of ``bundles/<name>`` outside the repository (without run outputs); a space in its path on purpose."""
    target = tmp_path / f"{name} copy"
    shutil.copytree(BUNDLES / name, target, ignore=shutil.ignore_patterns("models", "runs", "eval", "demo_data"))
    return target


def labelled_cases(dataset: Path) -> list[str]:
    """The case names of a canonical (nnU-Net v2) dataset folder, read from ``labelsTr`` (``<case><file_ending>``)."""
    ending = json.loads((dataset / "dataset.json").read_text())["file_ending"]
    return sorted(p.name[: -len(ending)] for p in (dataset / "labelsTr").iterdir() if p.name.endswith(ending))


def parse_config(config: Path, **overrides):
    """MONAI's ``ConfigParser`` of a bundle config with its metadata, ``bundle_root`` the bundle's own folder (its
    ``models/task.json``, not the working directory's), then ``overrides`` (ids and values)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(config))
    parser.read_meta(str(config.parent / "metadata.json"))
    parser["bundle_root"] = str(config.parent.parent)
    for key, value in overrides.items():
        parser[key] = value
    return parser


def save_random_weights(bundle: Path, overrides: dict | None = None, weight_scale: float = 1.0) -> Path:
    """Save ``bundle/models/model.pt``: the bundle's ``network_def`` (``overrides`` applied) with seeded random weights.

    ``weight_scale`` multiplies every weight tensor (not biases or norm parameters): larger weights spread the logits,
    so fewer voxels sit near a threshold in comparisons between backends.
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    for key, value in (overrides or {}).items():
        parser[key] = value
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    if weight_scale != 1.0:
        with torch.no_grad():
            for parameter in network.parameters():
                if parameter.ndim > 1:
                    parameter.mul_(weight_scale)
    path = bundle / "models" / "model.pt"
    path.parent.mkdir(exist_ok=True)
    torch.save(network.state_dict(), path)
    return path


@pytest.fixture()
def elsewhere(tmp_path: Path) -> Path:
    """An empty working directory unrelated to the repository and the bundle."""
    cwd = tmp_path / "somewhere else"
    cwd.mkdir()
    return cwd


@pytest.fixture(scope="module")
def one_thread():
    """Tiny networks on a shared 2-core CPU: one intra-op thread is faster than two competing ones (restored after the
    module). Use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def assert_script_matches_eager(net: torch.nn.Module, x: torch.Tensor) -> None:
    """``torch.jit.script(net)`` gives the eager module's eval-mode output on ``x`` (same shape, close values)."""
    net.eval()
    scripted = torch.jit.script(net)
    with torch.no_grad():
        expected = net(x)
        actual = scripted(x)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected)
