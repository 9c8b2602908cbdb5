"""Export a bundle's network to ONNX and check ONNX Runtime against eager PyTorch (``scripts/export_onnx.py``).

The network is ``network_def`` of the bundle's ``configs/inference.json`` (with overrides applied), in eval mode, with
the weights of a checkpoint if given (a ``model.pt`` state dict or a ``checkpoint_last.pt`` with a ``"model"`` entry;
none: random weights). The input is named ``image`` and the output ``pred``; the batch axis and every spatial axis are
dynamic. The network's input and output channels are the model's task (``task.json`` beside the checkpoint, else the
bundle's ``models/task.json`` that training writes, else its demo task), as in ``inference.json``. The example input
has the task's channel count and the size divisor of ``metadata.json``'s ``network_data_format``.

After export, ONNX Runtime runs the model on the example input and on a second input of another batch size and
spatial size, and each output is compared with eager PyTorch: the maximum absolute difference must be within
:data:`RTOL` times the eager output's largest magnitude (per output channel). When a network only matches at the
exported size, it is exported again with a dynamic batch axis only.

Needs ``onnx`` and ``onnxruntime`` (``pip install -r requirements-export.txt``). The exporter is
:func:`custom_nets.inference.backends.onnx_export` (the one ``segment.py --backend onnxruntime`` uses).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from custom_nets.inference.backends import onnx_export

__all__ = ["RTOL", "bundle_parser", "example_inputs", "export_and_check", "input_spec", "load_network",
           "max_difference", "onnx_parity"]

RTOL = 1e-4
"""Tolerance of the parity check, relative to the eager output's largest magnitude per channel."""


def bundle_parser(bundle: Path, overrides: dict[str, Any] | None = None, checkpoint: Path | None = None):
    """``bundle/configs/inference.json`` (and its metadata) parsed, with ``overrides``; with a ``checkpoint`` that has
    a ``task.json`` beside it, that is the task (its folder becomes ``ckpt_dir``)."""
    from monai.bundle import ConfigParser

    from custom_nets.data.dataset import TASK_FILE

    parser = ConfigParser()
    parser.read_meta(str(bundle / "configs" / "metadata.json"))
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(bundle)
    if checkpoint is not None and "ckpt_dir" in parser.get("") and (Path(checkpoint).parent / TASK_FILE).is_file():
        parser["ckpt_dir"] = str(Path(checkpoint).parent)
    for key, value in (overrides or {}).items():
        parser[key] = value
    return parser


def load_network(bundle: Path, overrides: dict[str, Any] | None = None, checkpoint: Path | None = None) -> torch.nn.Module:
    """The eval-mode ``network_def`` of ``bundle/configs/inference.json``, on the CPU, with ``checkpoint``'s weights.

    Raises:
        custom_nets.inference.errors.SetupError: the checkpoint is unreadable or does not fit the network (one line).
    """
    from custom_nets.inference.model import load_state_dict

    network = bundle_parser(bundle, overrides, checkpoint).get_parsed_content("network_def")
    if checkpoint is not None:  # batch inference's loader: DDP prefixes, one-line errors naming the file
        load_state_dict(network, checkpoint)
    return network.cpu().eval()


def input_spec(bundle: Path, overrides: dict[str, Any] | None = None, checkpoint: Path | None = None,
               ) -> tuple[int, list[int]]:
    """Input channels (the config's ``task``, else ``metadata.json``) and per-axis size divisors (1 where any size
    works, from ``metadata.json``)."""
    parser = bundle_parser(bundle, overrides, checkpoint)
    image = parser.get("_meta_#network_data_format#inputs#image")
    divisors = []
    for axis in image["spatial_shape"]:
        text = str(axis)
        divisors.append(int(text.split("*")[0]) if text.split("*")[0].isdigit() else 1)
    if "task" in parser.get(""):
        return int(parser.get_parsed_content("task").in_channels), divisors
    return int(image["num_channels"]), divisors


def example_inputs(bundle: Path, spatial_size: list[int] | None = None, overrides: dict[str, Any] | None = None,
                   checkpoint: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The export input (batch 1) and a second one of batch 2 and a different spatial size, for the parity check."""
    channels, divisors = input_spec(bundle, overrides, checkpoint)
    if spatial_size is None:
        minimum = 32 if len(divisors) == 3 else 64
        spatial_size = [max(d, -(-minimum // d) * d) for d in divisors]
    other = [s + max(d, 8 if len(divisors) == 3 else 16) // d * d for s, d in zip(spatial_size, divisors)]
    generator = torch.Generator().manual_seed(0)
    first = torch.randn(1, channels, *spatial_size, generator=generator)
    second = torch.randn(2, channels, *other, generator=generator)
    return first, second


def max_difference(expected: torch.Tensor, actual: np.ndarray) -> tuple[float, float]:
    """The maximum absolute difference and its tolerance, for the output channel closest to failing.

    The tolerance of a channel is ``RTOL`` times the largest magnitude of the eager output in that channel: per channel,
    because a channel can be constant at a very large value (UNet 3+ sets classes its classification head rules out
    to -1e4), which would make one tolerance for the whole output meaningless for the other channels.
    """
    expected_np = expected.detach().cpu().numpy()
    if expected_np.shape != actual.shape:
        return float("inf"), 0.0

    def channels_first(a: np.ndarray) -> np.ndarray:
        return np.moveaxis(a, 1, 0).reshape(a.shape[1], -1) if a.ndim > 1 else a.reshape(1, -1)

    e, a = channels_first(expected_np), channels_first(actual)
    differences = np.abs(e - a).max(axis=1)
    tolerances = RTOL * np.maximum(np.abs(e).max(axis=1), 1e-6)
    worst = int(np.argmax(differences / tolerances))
    return float(differences[worst]), float(tolerances[worst])


def onnx_parity(network: torch.nn.Module, path: Path, inputs: list[torch.Tensor]) -> list[tuple[tuple[int, ...], float, float]]:
    """For every input: its shape, ONNX Runtime's maximum absolute difference to eager, and the tolerance."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    results = []
    for x in inputs:
        with torch.no_grad():
            expected = network(x)
        try:
            (actual,) = session.run(["pred"], {"image": x.numpy()})
        except Exception:  # onnxruntime raises its own error types when a shape is not supported
            results.append((tuple(x.shape), float("inf"), 0.0))
            continue
        results.append((tuple(x.shape), *max_difference(expected, actual)))
    return results


def export_and_check(
    bundle: Path, output: Path, overrides: dict[str, Any] | None = None, checkpoint: Path | None = None,
    spatial_size: list[int] | None = None, log=print,
) -> dict[str, Any]:  # fmt: skip
    """Export and check; returns ``{"ok", "dynamic_spatial", "results", "problem"}`` (problem: why spatial axes are static, or "")."""
    import onnx

    network = load_network(bundle, overrides, checkpoint)
    first, second = example_inputs(bundle, spatial_size, overrides, checkpoint)
    dynamic_spatial = True
    try:
        onnx_export(network, first, output, dynamic_spatial=True)
        results = onnx_parity(network, output, [first, second])
        problem = "" if all(diff <= tol for _, diff, tol in results) else f"outputs differ from eager: {results}"
    except Exception as error:  # the exporter or ONNX Runtime cannot handle a dynamic spatial size
        problem = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300]}"
    if problem:
        log(f"dynamic spatial axes failed ({problem}); exporting with a dynamic batch axis only")
        dynamic_spatial = False
        second = torch.cat([first, first])
        onnx_export(network, first, output, dynamic_spatial=False)
        results = onnx_parity(network, output, [first, second])
    onnx.checker.check_model(str(output))
    ok = all(diff <= tol for _, diff, tol in results)
    for shape, diff, tol in results:
        log(f"input {list(shape)}: max abs diff ONNX Runtime vs eager {diff:.3g} (tolerance {tol:.3g})")
    return {"ok": ok, "dynamic_spatial": dynamic_spatial, "results": results, "problem": problem}
