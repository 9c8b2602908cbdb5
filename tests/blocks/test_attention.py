"""Tests of :mod:`custom_nets.blocks.attention`: the additive attention gate (AR-UNet's) on its skip connection."""

from __future__ import annotations

import pytest
import torch

from custom_nets.blocks.attention import AttentionGate

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_attention_gate_coefficients(spatial_dims: int) -> None:
    torch.manual_seed(0)
    gate = AttentionGate(spatial_dims, skip_channels=6, gating_channels=10, inter_channels=3)
    skip = torch.randn(2, 6, *(8,) * spatial_dims)
    gating = torch.randn(2, 10, *(4,) * spatial_dims)  # half resolution
    alpha = gate.coefficients(skip, gating)
    assert alpha.shape == (2, 1, *(8,) * spatial_dims)
    assert bool((alpha > 0).all()) and bool((alpha < 1).all())
    out = gate(skip, gating)
    assert out.shape == skip.shape
    torch.testing.assert_close(out, skip * alpha)
    # gating at the skip's own resolution and at an arbitrary coarser one also work
    assert gate(skip, torch.randn(2, 10, *(8,) * spatial_dims)).shape == skip.shape
    assert gate(skip, torch.randn(2, 10, *(3,) * spatial_dims)).shape == skip.shape


def test_attention_gate_own_norms_and_widths() -> None:
    gate = AttentionGate(3, skip_channels=12, gating_channels=20, inter_channels=5, norm=("group", {"num_groups": 5}))
    assert gate.w_x.conv.in_channels == 12 and gate.w_x.conv.out_channels == 5
    assert gate.w_g.conv.in_channels == 20 and gate.w_g.conv.out_channels == 5
    assert gate.psi.conv.in_channels == 5 and gate.psi.conv.out_channels == 1
    norms = [m for m in gate.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(norms) == 3 and len({id(m) for m in norms}) == 3  # one norm per projection, none shared
    alpha = gate.coefficients(torch.randn(1, 12, 4, 4, 4), torch.randn(1, 20, 2, 2, 2))
    assert alpha.shape == (1, 1, 4, 4, 4)
