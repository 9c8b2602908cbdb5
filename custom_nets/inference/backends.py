"""Execution backends of the network call inside the inferer: eager PyTorch, TorchScript, ONNX Runtime.

The inferer (a sliding window, or a plain call) calls ``network(x)`` with a batch ``(B, C, *spatial)``; a backend is
only that callable. Everything before and after it (preprocessing, flips of TTA, stitching, postprocessing) is the
same for every backend.

- ``eager``: the bundle's ``network_def`` module with the CPU inference speed-ups of
  :func:`custom_nets.inference.speedups.apply` (oneDNN convolutions, channels-last 2D networks, padded attention
  heads; same outputs up to float rounding, checked by ``tests/nets/test_net_speed.py``).
- ``torchscript``: ``torch.jit.script`` of the network (``torch.jit.trace`` on an example window when it cannot be
  scripted), then ``torch.jit.freeze`` and, on the CPU, ``torch.jit.optimize_for_inference``.
- ``onnxruntime``: ``torch.onnx.export`` (TorchScript-based exporter, ``dynamo=False``, opset 17, dynamic batch and
  spatial axes; batch only when the network cannot take another spatial size) to ``network.onnx`` in a cache folder,
  run by an ``InferenceSession`` on the ``CPUExecutionProvider`` with every graph optimisation
  (``ORT_ENABLE_ALL``) and ``intra_op_num_threads = torch.get_num_threads()``. Needs ``onnxruntime`` and ``onnx``
  (``pip install -r requirements-export.txt``).

Networks that return several outputs (a tuple, list or dict: deep supervision) are exported as their first output,
which is the one the segmentation uses. Every exported backend is checked against eager PyTorch on an example input
(and a second input of another batch size, and spatial size where the inferer needs that) before any case runs:
a difference above ``1e-4`` times the output's largest magnitude is a setup error.

Each backend object counts the time spent in the network (``seconds``), which the batch runner reports as
``network_s``.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import SetupError

__all__ = ["BACKENDS", "Backend", "build_backend"]

logger = logging.getLogger(__name__)

BACKENDS = ("eager", "torchscript", "onnxruntime")
OPSET = 17
RTOL = 1e-4


def first_output(output: Any) -> torch.Tensor:
    """The segmentation output of a network that returns several (tuple, list or dict): the first one."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        return next(iter(output.values()))
    if isinstance(output, (list, tuple)):
        return output[0]
    raise TypeError(f"the network returned {type(output).__name__}, not a tensor")


class _FirstOutput(torch.nn.Module):
    """The network, returning only its first output (for export of deep-supervision networks)."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return first_output(self.network(x))


class Backend:
    """A callable ``(B, C, *spatial) tensor -> tensor`` that times itself (``seconds``: total time in the network)."""

    name = "eager"

    def __init__(self, network: Any) -> None:
        self.network = network
        self.seconds = 0.0
        self.calls = 0

    def run(self, x: torch.Tensor) -> Any:
        return self.network(x)

    def __call__(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return self.run(x)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1

    def reset(self) -> float:
        """The seconds counted so far, and start counting again."""
        seconds, self.seconds = self.seconds, 0.0
        return seconds

    def close(self) -> None:
        pass


class TorchScriptBackend(Backend):
    """A scripted or traced, frozen network: called like the eager module."""

    name = "torchscript"


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, session: Any, path: Path, dynamic_spatial: bool) -> None:
        super().__init__(session)
        self.path = path
        self.dynamic_spatial = dynamic_spatial
        self.input_name = session.get_inputs()[0].name
        self.output_name = session.get_outputs()[0].name

    def run(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            raise RuntimeError("the onnxruntime backend runs on the CPU only")
        array = x.detach().contiguous().numpy()
        if array.dtype != np.float32:
            array = array.astype(np.float32)
        (out,) = self.network.run([self.output_name], {self.input_name: array})
        return torch.from_numpy(out)


# ----------------------------------------------------------------------------------------------------------------------
# Building
# ----------------------------------------------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (300 characters at most) of an exporter's or runtime's exception."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"


def _relative_difference(expected: torch.Tensor, actual: torch.Tensor) -> float:
    """Max abs difference / (RTOL x the largest magnitude of the expected output), worst output channel; <= 1 is ok."""
    if tuple(expected.shape) != tuple(actual.shape):
        return float("inf")
    e = expected.detach().float().cpu().transpose(0, 1).reshape(expected.shape[1], -1)
    a = actual.detach().float().cpu().transpose(0, 1).reshape(expected.shape[1], -1)
    difference = (e - a).abs().amax(dim=1)
    tolerance = RTOL * e.abs().amax(dim=1).clamp_min(1e-6)
    return float((difference / tolerance).max())


def _check(backend: Backend, reference: torch.nn.Module, inputs: Sequence[torch.Tensor]) -> str:
    """"" when the backend matches eager on every input, else what went wrong."""
    for x in inputs:
        with torch.no_grad():
            expected = first_output(reference(x))
            try:
                actual = first_output(backend.run(x))
            except Exception as exc:  # noqa: BLE001 - ONNX Runtime and TorchScript raise their own types
                return f"input {list(x.shape)}: {_first_line(exc)}"
        ratio = _relative_difference(expected, actual)
        if not ratio <= 1.0:
            diff = float((expected - actual).abs().max()) if expected.shape == actual.shape else float("inf")
            return f"input {list(x.shape)}: max abs difference {diff:.3g} to eager PyTorch (tolerance ratio {ratio:.3g})"
    return ""


def _example_inputs(example_shape: Sequence[int], device: torch.device, other_spatial: bool,
                    divisor: int) -> list[torch.Tensor]:
    """The example batch, and one with another batch size (and spatial size when ``other_spatial``)."""
    generator = torch.Generator().manual_seed(0)
    first = torch.randn(*example_shape, generator=generator)
    batch = 1 if example_shape[0] > 1 else 2
    spatial = list(example_shape[2:])
    if other_spatial:
        spatial = [s + divisor for s in spatial]
    second = torch.randn(batch, example_shape[1], *spatial, generator=generator)
    return [first.to(device), second.to(device)]


def _module_for_export(network: torch.nn.Module, example: torch.Tensor) -> torch.nn.Module:
    with torch.no_grad():
        output = network(example)
    return network if isinstance(output, torch.Tensor) else _FirstOutput(network).eval()


def _torchscript(network: torch.nn.Module, example: torch.Tensor, device: torch.device) -> torch.jit.ScriptModule:
    module = _module_for_export(network, example)
    how = "script"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            scripted = torch.jit.script(module)
        except Exception as exc:  # noqa: BLE001 - not scriptable: trace on the example window
            logger.debug(f"torch.jit.script failed ({_first_line(exc)}); tracing")
            how = "trace"
            with torch.no_grad():
                scripted = torch.jit.trace(module, example, check_trace=False)
        scripted = torch.jit.freeze(scripted.eval())
        if device.type == "cpu":
            scripted = torch.jit.optimize_for_inference(scripted)
    logger.debug(f"torchscript backend: torch.jit.{how}, frozen" + (", optimised for inference" if device.type == "cpu" else ""))
    return scripted


def _onnx_session(path: Path, threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def onnx_export(module: torch.nn.Module, example: torch.Tensor, path: Path, dynamic_spatial: bool = True) -> None:
    """``torch.onnx.export`` (TorchScript-based, opset ``OPSET``): input ``image``, output ``pred``, a dynamic batch axis
    and, if ``dynamic_spatial``, dynamic spatial axes."""
    axes = {0: "batch"}
    if dynamic_spatial:
        axes.update({i: f"spatial_{i - 2}" for i in range(2, example.ndim)})
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation and tracer warnings
        torch.onnx.export(
            module, (example,), str(path), dynamo=False, input_names=["image"], output_names=["pred"],
            dynamic_axes={"image": axes, "pred": axes}, opset_version=OPSET, do_constant_folding=True,
        )  # fmt: skip


def build_backend(name: str, network: torch.nn.Module, example_shape: Sequence[int], device: torch.device,
                  cache_dir: str | os.PathLike | None = None, any_spatial_size: bool = True,
                  divisor: int = 16) -> Backend:
    """The ``name`` backend of ``network`` (eval mode, weights loaded, on ``device``), checked against eager.

    Args:
        example_shape: ``(B, C, *spatial)`` of a typical network input (a sliding window batch: ``sw_batch_size``
            windows of ``roi_size``).
        cache_dir: where ``network.onnx`` is written (onnxruntime).
        any_spatial_size: the inferer gives inputs of any spatial size (a plain call on the whole, padded image):
            the exported network must accept them. A sliding window only needs another batch size.
        divisor: the spatial step used for the second parity input when ``any_spatial_size``.

    Raises:
        SetupError: unknown backend, onnxruntime missing, export failed, or the exported network differs from eager.
    """
    if name not in BACKENDS:
        raise SetupError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    if name == "eager":
        from .speedups import apply

        return Backend(apply(network))
    inputs = _example_inputs(example_shape, device, any_spatial_size, divisor)
    start = time.perf_counter()
    if name == "torchscript":
        try:
            backend: Backend = TorchScriptBackend(_torchscript(network, inputs[0], device))
        except Exception as exc:  # noqa: BLE001
            raise SetupError(f"cannot compile the network with TorchScript: {_first_line(exc)}") from None
    else:
        if device.type != "cpu":
            raise SetupError(f"--backend onnxruntime runs on the CPU only (CPUExecutionProvider); use --device cpu "
                             f"(device is {device})")
        try:
            import onnx  # noqa: F401 - needed by torch.onnx.export
            import onnxruntime  # noqa: F401
        except ImportError as exc:
            raise SetupError(f"--backend onnxruntime needs the optional packages onnx and onnxruntime ({exc}); "
                             "install them with pip install -r requirements-export.txt") from None
        if cache_dir is None:
            raise SetupError("the onnxruntime backend needs a cache folder for the exported model")
        path = Path(cache_dir) / "network.onnx"
        module = _module_for_export(network, inputs[0])
        backend = None
        problem = ""
        for dynamic_spatial in (True, False):
            if not dynamic_spatial and any_spatial_size:
                break
            try:
                onnx_export(module, inputs[0], path, dynamic_spatial)
                candidate = OnnxRuntimeBackend(_onnx_session(path, torch.get_num_threads()), path, dynamic_spatial)
            except Exception as exc:  # noqa: BLE001
                problem = _first_line(exc)
                continue
            problem = _check(candidate, network, inputs if dynamic_spatial or not any_spatial_size else inputs[:1])
            if not problem:
                backend = candidate
                break
            logger.debug(f"onnx export with dynamic spatial axes={dynamic_spatial}: {problem}")
        if backend is None:
            raise SetupError(f"cannot run the network with ONNX Runtime: {problem}")
        logger.debug(f"onnxruntime backend: {path} (dynamic {'batch and spatial axes' if backend.dynamic_spatial else 'batch axis'})")
    if name == "torchscript":
        problem = _check(backend, network, inputs)
        if problem:
            raise SetupError(f"the TorchScript network differs from eager PyTorch: {problem}")
    logger.debug(f"{name} backend ready in {time.perf_counter() - start:.1f} s (checked against eager PyTorch)")
    return backend
