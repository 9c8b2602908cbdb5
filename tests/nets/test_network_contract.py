"""The network contract: every network of ``custom_nets.nets``, registered once in
``tests/nets/network_registry.py``, passes the same checks (in the spirit of segmentation_models_pytorch's ``tests/models/base.py``):

* plain module: the constructor's ``spatial_dims`` / ``in_channels`` / ``out_channels`` kept as attributes, no hooks,
  a ``state_dict`` of contiguous tensors with the same keys and values in train and eval modes;
* eval mode: one ``(B, C, *S)`` tensor in 2D and 3D, the same twice (no dropout at inference), equal to the first
  training output (index 0 of the stacked deep-supervision outputs, or the first ``C`` channels);
* training mode: the registered outputs' shape, finite, and gradients reaching every parameter (non-zero);
* sizes not divisible by the divisor (on each axis) and inputs of the wrong rank refused with one clear line naming the
  network, the input and the divisor;
* TorchScript (script or trace) equal to eager at two sizes; a scripted network keeps its size check and its
  training-mode outputs;
* ONNX (TorchScript-based exporter, ``custom_nets.inference.backends.onnx_export``) run by ONNX Runtime equal to eager
  at another batch and spatial size; skipped when onnx / onnxruntime are missing (``pip install -r
  requirements-export.txt``);
* the exact parameter counts at the reference widths (built on the meta device), each stated in the docstring, which
  also cites the paper.

Each ``check_*`` function takes a :class:`~network_registry.NetworkSpec` and raises ``AssertionError`` on a breach;
:func:`run_contract` runs them all (``tests/nets/test_adding_a_network.py`` runs it on toy networks, broken ones
included).
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from network_registry import NETWORKS, NetworkSpec, n_params

IN_CHANNELS, OUT_CHANNELS, BATCH = 2, 3, 2
HAS_ONNX = importlib.util.find_spec("onnx") is not None and importlib.util.find_spec("onnxruntime") is not None

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------------------


def build(spec: NetworkSpec, spatial_dims: int) -> nn.Module:
    """The network at its small widths, seeded."""
    torch.manual_seed(0)
    return spec.cls(spatial_dims=spatial_dims, in_channels=IN_CHANNELS, out_channels=OUT_CHANNELS, **spec.small)


def example(spec: NetworkSpec, spatial_dims: int, batch: int = BATCH, size: tuple | None = None) -> torch.Tensor:
    size = spec.sizes[spatial_dims] if size is None else size
    return torch.randn(batch, IN_CHANNELS, *size, generator=torch.Generator().manual_seed(1))


def other_size(spec: NetworkSpec, spatial_dims: int) -> tuple[int, ...]:
    """Another valid size: the first axis doubled."""
    size = spec.sizes[spatial_dims]
    return (2 * size[0], *size[1:])


def train_shape(spec: NetworkSpec, batch: int, size: tuple[int, ...]) -> tuple[int, ...]:
    if spec.train_heads > 1:
        return (batch, spec.train_heads, OUT_CHANNELS, *size)
    return (batch, OUT_CHANNELS + spec.extra_channels, *size)


def first_output(spec: NetworkSpec, out: torch.Tensor) -> torch.Tensor:
    """The final segmentation within a training-mode output."""
    return out[:, 0] if spec.train_heads > 1 else out[:, :OUT_CHANNELS]


def error_message(call: Callable[[], object], error: type[Exception] = ValueError) -> str:
    """The message of the ``error`` that ``call()`` must raise."""
    try:
        with torch.no_grad():
            call()
    except error as caught:
        return str(caught)
    raise AssertionError("the input was accepted: expected an error")


def _network_names(net: nn.Module) -> list[str]:
    return [k.__name__ for k in type(net).__mro__ if issubclass(k, nn.Module) and k is not nn.Module]


def _cases(with_dims: bool = True) -> list:
    if not with_dims:
        return [pytest.param(name, id=name) for name in NETWORKS]
    return [pytest.param(name, d, id=f"{name}-{d}d") for name, spec in NETWORKS.items() for d in sorted(spec.sizes)]


# ----------------------------------------------------------------------------------------------------------------------
# the checks
# ----------------------------------------------------------------------------------------------------------------------


def check_registry_entry(spec: NetworkSpec) -> None:
    assert spec.sizes and set(spec.sizes) <= {1, 2, 3}, f"sizes per spatial_dims (1, 2 or 3): {spec.sizes}"
    for dims, size in spec.sizes.items():
        assert len(size) == dims and all(s % spec.divisor == 0 for s in size), f"{size} vs divisor {spec.divisor}"
        assert dims == 1 or len(set(size)) > 1, f"{size}: give different sizes so that mixed-up axes show"
    assert spec.train_heads >= 1 and spec.extra_channels >= 0 and not (spec.train_heads > 1 and spec.extra_channels)
    assert spec.torchscript in ("script", "trace"), spec.torchscript
    assert spec.reference, "give at least one reference-width parameter count"


def check_plain_module(spec: NetworkSpec, spatial_dims: int) -> None:
    """Attributes, no hooks, and an ordinary state_dict (issue #18): contiguous, the same in train and eval modes."""
    net = build(spec, spatial_dims)
    got = (net.spatial_dims, net.in_channels, net.out_channels)
    assert got == (spatial_dims, IN_CHANNELS, OUT_CHANNELS), f"(spatial_dims, in_channels, out_channels) = {got}"
    divisor = getattr(net, "size_divisor", getattr(net, "divisor", spec.divisor))
    assert divisor == spec.divisor, f"the network's divisor {divisor} is not the registry's {spec.divisor}"
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in net.modules()), "a network is built without hooks"
    eval_state = {k: v.clone() for k, v in net.eval().state_dict().items()}
    train_state = net.train().state_dict()
    assert list(train_state) == list(eval_state), "state_dict keys differ between train and eval modes"
    for key, value in train_state.items():
        assert value.is_contiguous(), f"{key} is not contiguous"
        assert torch.equal(value, eval_state[key]), f"{key} differs between train and eval modes"


def check_eval_outputs(spec: NetworkSpec, spatial_dims: int) -> None:
    net = build(spec, spatial_dims).eval()
    x = example(spec, spatial_dims)
    with torch.no_grad():
        out, again = net(x), net(x)
    expected = (BATCH, OUT_CHANNELS, *spec.sizes[spatial_dims])
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == expected, f"eval output {out.shape}, not {expected}"
    assert torch.isfinite(out).all(), "non-finite eval output"
    assert torch.equal(out, again), "eval mode is not deterministic (dropout at inference?)"
    # the training-mode forward (dropout and batch-norm statistics frozen) gives the same final output first
    net.train()
    for child in net.children():
        child.eval()
    with torch.no_grad():
        stacked = net(x)
    assert tuple(stacked.shape) == train_shape(spec, BATCH, spec.sizes[spatial_dims]), stacked.shape
    torch.testing.assert_close(first_output(spec, stacked), out, msg="the first training output is not the eval output")


def check_training(spec: NetworkSpec, spatial_dims: int) -> None:
    """Training-mode outputs and gradients: every parameter gets a finite, non-zero gradient."""
    net = build(spec, spatial_dims).train()
    out = net(example(spec, spatial_dims))
    expected = train_shape(spec, BATCH, spec.sizes[spatial_dims])
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == expected, f"training output {out.shape} not {expected}"
    assert torch.isfinite(out).all(), "non-finite training output"
    # a random target: no gradient cancels by symmetry (as y.sum() right after a norm would)
    (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(2))).mean().backward()
    params = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    missing = [n for n, p in params if p.grad is None]
    assert not missing, f"no gradient reaches {missing}"
    nonfinite = [n for n, p in params if not torch.isfinite(p.grad).all()]
    assert not nonfinite, f"non-finite gradient in {nonfinite}"
    zero = [n for n, p in params if not torch.any(p.grad != 0) and not any(s in n for s in spec.grad_may_vanish)]
    assert not zero, f"zero gradient in {zero}"


def check_size_checks(spec: NetworkSpec, spatial_dims: int) -> None:
    """Sizes not divisible by the divisor (on each axis) and inputs of the wrong rank: the one-line ``ValueError`` of
    ``custom_nets.nets.utils.check_input_size``, naming the network (or its base class), the input and the divisor."""
    net = build(spec, spatial_dims).eval()
    names = _network_names(net)
    size = list(spec.sizes[spatial_dims])
    bad_sizes = [size[:axis] + [s + spec.divisor // 2] + size[axis + 1 :] for axis, s in enumerate(size)]
    for bad in bad_sizes if spec.divisor > 1 else []:
        message = error_message(lambda: net(torch.zeros(1, IN_CHANNELS, *bad)))
        said = any(f"{n} needs every spatial size divisible by {spec.divisor}" in message for n in names)
        assert said and str(bad) in message and "\n" not in message, f"{bad}: unclear message {message!r}"
    for rank_size in (size[:-1], size + size[-1:]):
        x = torch.zeros(1, IN_CHANNELS, *rank_size)
        message = error_message(lambda: net(x))
        said = any(f"{n} expects a {spatial_dims + 2}-D input" in message for n in names)
        assert said and str(list(x.shape)) in message and "\n" not in message, f"unclear message {message!r}"


def check_torchscript(spec: NetworkSpec, spatial_dims: int) -> None:
    net = build(spec, spatial_dims).eval()
    inputs = [example(spec, spatial_dims, 1), example(spec, spatial_dims, 1, other_size(spec, spatial_dims))]
    with torch.no_grad():
        compiled = torch.jit.script(net) if spec.torchscript == "script" else torch.jit.trace(net, inputs[0])
        for x in inputs:
            torch.testing.assert_close(compiled(x), net(x), msg=f"{spec.torchscript} differs at {tuple(x.shape)}")
    if spec.torchscript != "script":
        return
    bad = [s + spec.divisor // 2 for s in spec.sizes[spatial_dims]]
    if spec.divisor > 1:
        message = error_message(lambda: compiled(torch.zeros(1, IN_CHANNELS, *bad)), Exception)
        assert f"divisible by {spec.divisor}" in message, f"the scripted network lost its size check: {message!r}"
    x = example(spec, spatial_dims)
    with torch.no_grad():
        out = compiled.train()(x)
    assert tuple(out.shape) == train_shape(spec, BATCH, spec.sizes[spatial_dims]), f"scripted training {out.shape}"


def check_onnx(spec: NetworkSpec, spatial_dims: int) -> None:
    """ONNX Runtime equals eager at the exported size and at another batch (and, with dynamic axes, spatial) size."""
    import onnxruntime

    from custom_nets.inference.backends import onnx_export

    net = build(spec, spatial_dims).eval()
    size = spec.sizes[spatial_dims]
    second = other_size(spec, spatial_dims) if spec.onnx_dynamic_spatial else size
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "net.onnx"
        onnx_export(net, example(spec, spatial_dims, 1), path, dynamic_spatial=spec.onnx_dynamic_spatial)
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for x in (example(spec, spatial_dims, 1), example(spec, spatial_dims, 2, second)):
        with torch.no_grad():
            expected = net(x).numpy()
        (actual,) = session.run(["pred"], {"image": x.numpy()})
        assert actual.shape == expected.shape, f"ONNX output {actual.shape} at {tuple(x.shape)}, eager {expected.shape}"
        np.testing.assert_allclose(actual, expected, atol=1e-4, rtol=1e-3, err_msg=f"ONNX at {tuple(x.shape)}")


def check_documentation(spec: NetworkSpec) -> None:
    """The exact parameter counts at the reference widths (meta device), each stated in the docstring with the paper."""
    doc = (inspect.getmodule(spec.cls).__doc__ or "") + (spec.cls.__doc__ or "")
    assert re.search(r"arXiv|doi|https?://", doc), f"{spec.cls.__name__}'s docstring cites no paper (arXiv / doi / URL)"
    for kwargs, expected in spec.reference:
        with torch.device("meta"):
            count = n_params(spec.cls(**kwargs))
        assert count == expected, f"{spec.cls.__name__}({kwargs}) has {count:,} parameters, not {expected:,}"
        assert f"{expected:,}" in doc, f"{spec.cls.__name__}'s docstring does not state {expected:,} ({kwargs})"


PER_DIMS_CHECKS = (check_plain_module, check_eval_outputs, check_training, check_size_checks, check_torchscript)


def run_contract(spec: NetworkSpec) -> None:
    """Every check on ``spec`` (ONNX only when onnx and onnxruntime are installed)."""
    check_registry_entry(spec)
    check_documentation(spec)
    for spatial_dims in sorted(spec.sizes):
        for check in PER_DIMS_CHECKS + ((check_onnx,) if HAS_ONNX else ()):
            check(spec, spatial_dims)


# ----------------------------------------------------------------------------------------------------------------------
# the registered networks
# ----------------------------------------------------------------------------------------------------------------------


def test_every_network_is_registered() -> None:
    import custom_nets.nets

    registered = {spec.cls.__name__ for spec in NETWORKS.values()}
    missing = sorted(set(custom_nets.nets.__all__) - registered)
    assert not missing, f"add a NetworkSpec line for {missing} to tests/nets/network_registry.py"


@pytest.mark.parametrize("name", _cases(with_dims=False))
def test_registry_entry_and_documentation(name: str) -> None:
    check_registry_entry(NETWORKS[name])
    check_documentation(NETWORKS[name])


@pytest.mark.parametrize("name, spatial_dims", _cases())
def test_plain_module(name: str, spatial_dims: int) -> None:
    check_plain_module(NETWORKS[name], spatial_dims)


@pytest.mark.parametrize("name, spatial_dims", _cases())
def test_eval_outputs(name: str, spatial_dims: int) -> None:
    check_eval_outputs(NETWORKS[name], spatial_dims)


@pytest.mark.parametrize("name, spatial_dims", _cases())
def test_training_outputs_and_gradients(name: str, spatial_dims: int) -> None:
    check_training(NETWORKS[name], spatial_dims)


@pytest.mark.parametrize("name, spatial_dims", _cases())
def test_size_checks(name: str, spatial_dims: int) -> None:
    check_size_checks(NETWORKS[name], spatial_dims)


@pytest.mark.parametrize("name, spatial_dims", _cases())
def test_torchscript(name: str, spatial_dims: int) -> None:
    check_torchscript(NETWORKS[name], spatial_dims)


@pytest.mark.skipif(not HAS_ONNX, reason="onnx / onnxruntime not installed (pip install -r requirements-export.txt)")
@pytest.mark.parametrize("name, spatial_dims", _cases())
def test_onnx_runtime(name: str, spatial_dims: int) -> None:
    check_onnx(NETWORKS[name], spatial_dims)
