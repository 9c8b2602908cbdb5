"""Tests of :mod:`custom_nets.blocks.conv_attention`: FCT's channel layer norm, convolutional attention, Wide-Focus
and FCT layer, and :func:`padded_attention` (narrow heads zero-padded for the CPU kernel, as ``speedups.apply`` sets it:
the same outputs and gradients as the unpadded computation; a whole FCT padded: ``tests/nets/test_net_speed.py``)."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from nets.network_registry import n_params

from custom_nets.blocks import conv_attention
from custom_nets.blocks.conv_attention import ChannelLayerNorm, ConvAttention, FCTLayer, WideFocus, padded_attention
from custom_nets.inference import speedups

pytestmark = pytest.mark.usefixtures("one_thread")


def test_fct_blocks() -> None:
    torch.manual_seed(0)
    norm = ChannelLayerNorm(4)
    x = torch.randn(2, 4, 5, 7)
    expected = (x - x.mean(1, keepdim=True)) / torch.sqrt(x.var(1, unbiased=False, keepdim=True) + 1e-5)
    torch.testing.assert_close(norm(x), expected, atol=1e-5, rtol=1e-4)
    assert norm(torch.randn(1, 4, 3, 3, 3)).shape == (1, 4, 3, 3, 3)  # any size, any spatial_dims
    assert n_params(norm) == 8  # one weight and bias per channel, not per position
    attention = ConvAttention(3, 8, num_heads=2)
    assert attention.conv_k(torch.randn(1, 8, 6, 6, 6)).shape == (1, 8, 3, 3, 3)  # strided keys/values
    assert attention(torch.randn(1, 8, 6, 6, 6)).shape == (1, 8, 6, 6, 6)
    assert [b.dilation for b in WideFocus(2, 4).branches[0].modules() if isinstance(b, torch.nn.Conv2d)] == [(1, 1)]
    assert FCTLayer(2, 8, 2)(torch.randn(1, 8, 6, 10)).shape == (1, 8, 6, 10)


def _attention_inputs(head_dim: int, requires_grad: bool = False) -> tuple:
    gen = torch.Generator().manual_seed(head_dim)
    shapes = ((2, 3, 96, head_dim), (2, 3, 24, head_dim), (2, 3, 24, head_dim))
    return tuple(torch.randn(*s, generator=gen).requires_grad_(requires_grad) for s in shapes)


@pytest.mark.parametrize("head_dim", [1, 4, 8, 12, 16, 24])
def test_padded_attention_equals_sdpa(head_dim: int) -> None:
    """Zero-padding narrow heads changes neither the outputs nor the gradients (the scale stays 1/sqrt(d))."""
    q, k, v = _attention_inputs(head_dim, requires_grad=True)
    out = padded_attention(q, k, v)
    assert out.shape == (2, 3, 96, head_dim)
    expected = F.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    expected_grads = torch.autograd.grad(expected.square().sum(), (q, k, v))
    for g, e in zip(grads, expected_grads):
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-5)


def test_padded_attention_pads_only_narrow_cpu_heads() -> None:
    """The kernel sees 16-wide heads for narrow heads on CPU, the true width otherwise and while tracing."""
    seen: list = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, **kwargs):  # noqa: ANN001, ANN202
        seen.append(q.shape[-1])
        return real(q, k, v, **kwargs)

    with mock.patch.object(conv_attention.F, "scaled_dot_product_attention", spy):
        padded_attention(*_attention_inputs(8))
        padded_attention(*_attention_inputs(32))
        padded_attention(*_attention_inputs(8), min_head_dim=0)
    assert seen == [16, 32, 8]
    layer = speedups.apply(ConvAttention(2, 16, num_heads=2)).eval()
    assert layer.min_head_dim == conv_attention.MIN_CPU_HEAD_DIM
    x = torch.randn(1, 16, 16, 16)
    with torch.no_grad():
        traced = torch.jit.trace(layer, x)
        torch.testing.assert_close(traced(x), layer(x), atol=1e-6, rtol=1e-5)
    assert "aten::pad" not in str(traced.inlined_graph) and "constant_pad_nd" not in str(traced.inlined_graph)
