"""Tests of :mod:`custom_nets.blocks.mix_transformer` (SSFormer's encoder): the Mix Transformer's feature strides, a
stage's blocks applied in turn under the reference parameter names, and the spatial-reduction attention against the
explicit formula."""

from __future__ import annotations

import pytest
import torch

from custom_nets.blocks.mix_transformer import (
    EfficientSelfAttention,
    MiTBlock,
    MiTStageBlocks,
    MixTransformer,
    tokens_to_map,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_encoder_feature_strides() -> None:
    encoder = MixTransformer(2, 3, embed_dims=(8, 16, 32, 64), depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2))
    features = encoder(torch.randn(1, 3, 64, 128))
    assert [tuple(f.shape) for f in features] == [(1, 8, 16, 32), (1, 16, 8, 16), (1, 32, 4, 8), (1, 64, 2, 4)]


def test_stage_blocks_apply_each_block_in_turn_under_mit_names() -> None:
    torch.manual_seed(0)
    stage = MiTStageBlocks(MiTBlock(2, 8, 2, sr_ratio=2), MiTBlock(2, 8, 2, sr_ratio=2)).eval()
    spatial = [4, 6]
    x = torch.randn(2, 24, 8)
    with torch.no_grad():
        expected = stage[1](stage[0](x, spatial), spatial)
        torch.testing.assert_close(stage(x, spatial), expected)
        torch.testing.assert_close(torch.jit.script(stage)(x, spatial), expected)
    assert {k.split(".")[0] for k in stage.state_dict()} == {"0", "1"}  # block1.0..., block1.1... in MixTransformer
    encoder = MixTransformer(2, 3, embed_dims=(8, 16, 32, 64), depths=(2, 1, 1, 1), num_heads=(1, 1, 2, 2))
    assert "block1.1.attn.q.weight" in encoder.state_dict() and len(encoder.block1) == 2


def test_spatial_reduction_attention_matches_explicit_softmax() -> None:
    """Keys and values come from the sr-strided conv + LayerNorm; the result is softmax(q k^T / sqrt(d)) v."""
    torch.manual_seed(0)
    attention = EfficientSelfAttention(2, dim=8, num_heads=2, sr_ratio=2).eval()
    spatial = [4, 6]
    x = torch.randn(2, 24, 8)
    with torch.no_grad():
        reduced = attention.norm(attention.sr(tokens_to_map(x, spatial)).flatten(2).transpose(1, 2))
        assert reduced.shape == (2, 6, 8)  # 24 positions reduced by 2 x 2
        q = attention.q(x).reshape(2, 24, 2, 4).transpose(1, 2)
        k, v = attention.kv(reduced).reshape(2, 6, 2, 2, 4).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-2, -1) / 2.0, dim=-1)
        expected = attention.proj((weights @ v).transpose(1, 2).reshape(2, 24, 8))
        torch.testing.assert_close(attention(x, spatial), expected)
    assert not hasattr(EfficientSelfAttention(2, 8, 2, sr_ratio=1).sr, "weight")  # no reduction, no parameters
