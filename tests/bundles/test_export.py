"""Every bundle's network exports to TorchScript and to ONNX, and both match eager PyTorch.

Tiny widths per bundle (overrides of its ``network_def``) and random weights keep this under a minute. ONNX export and
its ONNX Runtime check are those of ``scripts/export_onnx.py`` (:mod:`custom_nets.export`); they are skipped when onnx / onnxruntime are missing
(``pip install -r requirements-export.txt``).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, bundle_names
from tiny_networks import TINY

from custom_nets import export as export_onnx

# Where needed, the example input size (the tiny widths per bundle are tiny_networks.TINY).
# PSPNet's pyramid pooling (adaptive average pooling to 1, 2, 3 and 6 bins) exports to ONNX only for a fixed input
# size whose feature map (1/8 of the input) is divisible by every bin: 48 -> 6.
SPATIAL_SIZE = {"pspnet3d": [48, 48, 48]}
# Networks whose ONNX export keeps static spatial axes (the batch axis is still dynamic), and why.
STATIC_SPATIAL = {"pspnet3d": "adaptive_avg_pool3d needs a known input size in ONNX"}
# Networks that cannot be exported to ONNX (with PyTorch's TorchScript-based exporter), and why.
NOT_ONNX_EXPORTABLE: dict[str, str] = {}

HAS_ONNX = importlib.util.find_spec("onnx") is not None and importlib.util.find_spec("onnxruntime") is not None

pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_bundle_has_tiny_settings() -> None:
    assert sorted(TINY) == bundle_names(), "add the new bundle's tiny network_def overrides to TINY"


@pytest.mark.parametrize("name", bundle_names())
def test_torchscript_matches_eager(name: str) -> None:
    bundle = REPO / "bundles" / name
    torch.manual_seed(0)
    network = export_onnx.load_network(bundle, TINY[name])
    scripted = torch.jit.script(network)
    for x in export_onnx.example_inputs(bundle, SPATIAL_SIZE.get(name)):
        with torch.no_grad():
            expected, actual = network(x), scripted(x)
        difference, tolerance = export_onnx.max_difference(expected, actual.numpy())
        assert difference <= tolerance, f"{name}: TorchScript differs from eager by {difference} (> {tolerance})"


@pytest.mark.skipif(not HAS_ONNX, reason="onnx / onnxruntime not installed (pip install -r requirements-export.txt)")
@pytest.mark.parametrize("name", bundle_names())
def test_onnx_runtime_matches_eager(name: str, tmp_path: Path) -> None:
    if name in NOT_ONNX_EXPORTABLE:
        pytest.xfail(NOT_ONNX_EXPORTABLE[name])
    torch.manual_seed(0)
    messages: list[str] = []
    report = export_onnx.export_and_check(
        REPO / "bundles" / name, tmp_path / f"{name}.onnx", TINY[name], spatial_size=SPATIAL_SIZE.get(name),
        log=messages.append,
    )  # fmt: skip
    assert report["ok"], f"{name}: ONNX Runtime differs from eager:\n" + "\n".join(messages)
    assert report["dynamic_spatial"] == (name not in STATIC_SPATIAL), "\n".join(messages)
    assert (tmp_path / f"{name}.onnx").stat().st_size > 0


@pytest.mark.skipif(not HAS_ONNX, reason="onnx / onnxruntime not installed (pip install -r requirements-export.txt)")
@pytest.mark.parametrize("name", sorted(NOT_ONNX_EXPORTABLE))
def test_known_onnx_failures_still_fail(name: str, tmp_path: Path) -> None:
    """When a listed network starts exporting, this fails: move it out of NOT_ONNX_EXPORTABLE (and its model card)."""
    try:
        report = export_onnx.export_and_check(REPO / "bundles" / name, tmp_path / "m.onnx", TINY[name], log=lambda _: None)
    except Exception:
        return
    assert not report["ok"], f"{name} now exports to ONNX: remove it from NOT_ONNX_EXPORTABLE"


def test_command_line(tmp_path: Path) -> None:
    """The script end to end, with a checkpoint: exit 0, the parity line printed, the file written."""
    bundle = REPO / "bundles" / "unet2d"
    checkpoint = tmp_path / "model.pt"
    torch.save(export_onnx.load_network(bundle, TINY["unet2d"]).state_dict(), checkpoint)
    if not HAS_ONNX:
        pytest.skip("onnx / onnxruntime not installed (pip install -r requirements-export.txt)")
    output = tmp_path / "out dir" / "unet2d.onnx"
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "export_onnx.py"), "--bundle", str(bundle), "-o", str(output),
         "--checkpoint", str(checkpoint), "--override", "network_def#channels=[4,8,16,32,64]"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "max abs diff ONNX Runtime vs eager" in result.stdout
    assert "parity OK" in result.stdout
    assert output.is_file()


def test_a_checkpoint_of_another_network_is_one_line_and_writes_nothing(tmp_path: Path, capsys) -> None:
    """A wrong checkpoint: exit 2, one line naming the file (PyTorch's missing-keys page before); a checkpoint saved
    from a DDP-wrapped network (``module.`` prefixes) loads as the plain one."""
    spec = importlib.util.spec_from_file_location("export_onnx_script", REPO / "scripts" / "export_onnx.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    bundle, wrong = REPO / "bundles" / "unet2d", tmp_path / "other.pt"
    torch.save({"model": {"encoder.weight": torch.zeros(3)}}, wrong)
    output = tmp_path / "unet2d.onnx"
    assert script.main(["--bundle", str(bundle), "-o", str(output), "--checkpoint", str(wrong)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and str(wrong) in error and "UNet" in error, error
    assert not output.exists()

    torch.manual_seed(0)
    plain = export_onnx.load_network(bundle, TINY["unet2d"])
    ddp = tmp_path / "ddp.pt"
    torch.save({f"module.{k}": v for k, v in plain.state_dict().items()}, ddp)
    loaded = export_onnx.load_network(bundle, TINY["unet2d"], ddp)
    for key, value in plain.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_own_data_model_exports_with_its_task_channels(tmp_path: Path) -> None:
    """A model trained on own data (``task.json`` beside ``model.pt``: 2 channels, 2 labels, unlike unet2d's RGB
    default) exports with no channel override: the example input and the ONNX graph take the task's channels."""
    import shutil

    from custom_nets.data.dataset import Task, prepare_task

    bundle = tmp_path / "unet2d own"
    shutil.copytree(REPO / "bundles" / "unet2d", bundle,
                    ignore=shutil.ignore_patterns("models", "runs", "eval", "demo_data"))
    prepare_task(Task("own", ("MR0", "MR1"), ("liver", "lesion"), ((1,), (2,)), (1, 2), 2), bundle / "models")
    network = export_onnx.load_network(bundle, TINY["unet2d"])
    checkpoint = bundle / "models" / "model.pt"
    torch.save(network.state_dict(), checkpoint)
    first, second = export_onnx.example_inputs(bundle, None, TINY["unet2d"], checkpoint)
    assert first.shape[1] == second.shape[1] == 2 and network(first).shape[1] == 2
    if not HAS_ONNX:
        pytest.skip("onnx / onnxruntime not installed (pip install -r requirements-export.txt)")
    import onnx

    output = tmp_path / "own.onnx"
    overrides = ["--override", "network_def#channels=[4,8,16,32,64]"]
    command = ["--bundle", str(bundle), "-o", str(output), "--checkpoint", str(checkpoint), *overrides]
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "export_onnx.py"), *command], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    graph = onnx.load(str(output)).graph
    assert graph.input[0].type.tensor_type.shape.dim[1].dim_value == 2
