"""Tests of :mod:`custom_nets.blocks.full_scale`: UNet 3+'s classification-guided gating of the segmentation logits
(soft gate and hard suppression of absent classes). The full-scale skip's resampling is checked with UNet 3+'s
arguments (``test_unet3plus_arguments_and_blocks`` in ``tests/nets/test_unet3plus_fct.py``)."""

from __future__ import annotations

import pytest
import torch

from custom_nets.blocks.full_scale import SUPPRESSED_LOGIT, gate_logits, suppress_absent

pytestmark = pytest.mark.usefixtures("one_thread")


def test_gating_functions() -> None:
    seg = torch.tensor([[[-30.0, 0.0, 3.0, 40.0]], [[-30.0, 0.0, 3.0, 40.0]]]).reshape(2, 1, 4)
    presence = torch.tensor([[-2.0], [50.0]])
    gated = gate_logits(seg, presence)
    expected = torch.sigmoid(seg) * torch.sigmoid(presence)[:, :, None]
    assert torch.isfinite(gated).all()
    torch.testing.assert_close(torch.sigmoid(gated), expected, atol=1e-6, rtol=1e-4)
    hard = suppress_absent(seg, presence)
    assert torch.equal(hard[0], torch.full_like(hard[0], SUPPRESSED_LOGIT)) and torch.equal(hard[1], seg[1])
