"""Tests of :mod:`custom_nets.blocks.onednn`: a swapped-in oneDNN convolution really takes the oneDNN kernel without
autograd (below PyTorch's own size threshold) and is the ordinary convolution, with its gradients, under autograd.
Whole networks with oneDNN convolutions against the plain ones: ``tests/nets/test_net_speed.py``."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
from conftest import SPEEDUP_ATOL

from custom_nets.blocks.onednn import OneDNNConv3d, use_onednn_convolutions

pytestmark = pytest.mark.usefixtures("one_thread")


def test_onednn_conv_kernel_choice_and_gradients() -> None:
    """The oneDNN kernel runs only without autograd; with gradients the ordinary conv (and its backward) runs."""
    torch.manual_seed(0)
    conv = use_onednn_convolutions(nn.Sequential(nn.Conv3d(4, 16, 3, padding=1)))[0]
    assert type(conv) is OneDNNConv3d
    plain = use_onednn_convolutions(copy.deepcopy(nn.Sequential(conv)), enabled=False)[0]
    assert type(plain) is nn.Conv3d
    x = torch.randn(1, 4, 16, 16, 16)  # below PyTorch's oneDNN size threshold: the native kernel by default
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        fast = conv(x)
    assert any(e.key == "aten::mkldnn_convolution" for e in prof.key_averages())
    with torch.inference_mode():
        torch.testing.assert_close(fast, plain(x), atol=SPEEDUP_ATOL, rtol=1e-5)
    xg = x.clone().requires_grad_(True)
    conv(xg).sum().backward()
    xr = x.clone().requires_grad_(True)
    plain(xr).sum().backward()
    assert torch.equal(xg.grad, xr.grad)
    assert torch.equal(conv.weight.grad, plain.weight.grad)
