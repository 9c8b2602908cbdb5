"""Every bundle network is a plain module, and ``custom_nets.inference.speedups.apply`` keeps its outputs (issue #18).

For each bundle's ``network_def`` (default widths, random weights and batch-norm statistics): the ``state_dict`` is
contiguous and identical in train and eval modes, before and after the speed-ups; the sped-up network gives the
plain network's eval output (atol/rtol 1e-5, as ``tests/test_net_speed.py``); FLOPs are counted on the plain network
without patching anything.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from conftest import REPO

from custom_nets.inference import speedups

BUNDLES = sorted(p.parent.parent.name for p in (REPO / "bundles").glob("*/configs/inference.json"))
ATOL = 1e-5


def _network(name: str) -> tuple[nn.Module, list[int]]:
    """The bundle's network_def and a small input shape ``(1, C, *S)`` it accepts."""
    from monai.bundle import ConfigParser

    root = REPO / "bundles" / name
    parser = ConfigParser()
    parser.read_meta(str(root / "configs" / "metadata.json"))
    parser.read_config(str(root / "configs" / "inference.json"))
    parser["bundle_root"] = str(root)
    image = json.loads((root / "configs" / "metadata.json").read_text())["network_data_format"]["inputs"]["image"]
    divisor = max(int(str(axis).split("*")[0]) for axis in image["spatial_shape"])
    dims = len(image["spatial_shape"])
    side = max(divisor, 32 if dims == 3 else 64)
    torch.manual_seed(0)
    return parser.get_parsed_content("network_def"), [1, int(image["num_channels"]), *([side] * dims)]


def _randomise_norm_stats(net: nn.Module) -> None:
    gen = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)


def _state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _assert_ordinary_state(net: nn.Module) -> None:
    """Contiguous tensors, the same keys and values in train and eval modes."""
    net.eval()
    eval_state = net.state_dict()
    assert all(v.is_contiguous() for v in eval_state.values())
    eval_copy = _state(net)
    net.train()
    train_state = net.state_dict()
    assert list(train_state) == list(eval_copy)
    for key, value in train_state.items():
        assert value.is_contiguous(), key
        assert torch.equal(value, eval_copy[key]), key


@pytest.mark.parametrize("name", BUNDLES)
def test_bundle_network_is_plain_and_speedups_keep_outputs(name: str) -> None:
    net, shape = _network(name)
    _randomise_norm_stats(net)
    assert speedups.applied(net) is None and not net._forward_pre_hooks and not net._forward_hooks
    _assert_ordinary_state(net)
    plain = copy.deepcopy(net).eval()
    fast = speedups.apply(net)
    _assert_ordinary_state(fast)
    assert list(fast.state_dict()) == list(plain.state_dict())
    fast.eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        expected = plain(x)
        out = fast(x)
    assert out.shape == expected.shape
    assert out.is_contiguous() or not expected.is_contiguous()  # no layout change leaks out
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=1e-5)


def test_flops_are_counted_on_unpatched_networks() -> None:
    """FlopCounterMode on a plain FCT attention layer counts the attention at its true head width (2 heads of 8
    channels, 256 queries, 64 keys), with no constant patched; the sped-up layer pads its heads to 16 channels."""
    from custom_nets import benchmarking as benchmark
    from custom_nets.blocks.conv_attention import ConvAttention

    layer = ConvAttention(2, 16, num_heads=2).eval()
    x = torch.randn(1, 16, 16, 16)
    with torch.no_grad():
        _, by_op = benchmark.count_flops(lambda: layer(x))
        attention = sum(n for op, n in by_op.items() if "attention" in op)
        assert attention == 2 * 4 * 256 * 64 * 8
        speedups.apply(layer)
        _, by_op = benchmark.count_flops(lambda: layer(x))
    assert sum(n for op, n in by_op.items() if "attention" in op) == 2 * attention
