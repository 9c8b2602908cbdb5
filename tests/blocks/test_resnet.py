"""Tests of :mod:`custom_nets.blocks.resnet` (LinkNet's and PSPNet's encoder): the ResNet encoder's shapes, strides
and dilations, and the basic and bottleneck blocks' projection shortcut."""

from __future__ import annotations

import pytest
import torch

from custom_nets.blocks.resnet import ResNetBasicBlock, ResNetBottleneckBlock, ResNetEncoder, get_resnet_block

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("block, expansion", [("basic", 1), ("bottleneck", 4)])
def test_resnet_encoder_shapes_and_strides(block: str, expansion: int) -> None:
    enc = ResNetEncoder(3, 2, block=block, layers=(1, 1, 1, 1), channels=(4, 8, 8, 16)).eval()
    assert enc.out_channels == tuple(c * expansion for c in (4, 8, 8, 16))
    assert enc.output_strides == (4, 8, 16, 32)
    with torch.no_grad():
        feats = enc(torch.randn(1, 2, 32, 32, 64))
    assert [tuple(f.shape) for f in feats] == [
        (1, c, 32 // s, 32 // s, 64 // s) for c, s in zip(enc.out_channels, enc.output_strides)
    ]


def test_resnet_encoder_dilation_keeps_size_and_scripts() -> None:
    enc = ResNetEncoder(
        2, 1, block="bottleneck", layers=(1, 1, 1, 1), channels=(4, 4, 8, 8), strides=(1, 2, 1, 1),
        dilations=(1, 1, 2, 4), return_stem=True,
    )  # fmt: skip
    assert enc.output_strides == (4, 8, 8, 8)
    assert enc.stem_output_stride == 4 and enc.stem_channels == 4
    x = torch.randn(2, 1, 32, 48)
    enc.eval()
    scripted = torch.jit.script(enc)
    with torch.no_grad():
        eager, script = enc(x), scripted(x)
    shapes = [(2, 4, 8, 12), (2, 16, 8, 12), (2, 16, 4, 6), (2, 32, 4, 6), (2, 32, 4, 6)]  # stem first
    assert [tuple(f.shape) for f in eager] == shapes
    assert [stage[0].dilation for stage in enc.stages] == [1, 1, 2, 4]
    for a, b in zip(eager, script):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("cls", [ResNetBasicBlock, ResNetBottleneckBlock])
def test_residual_blocks_projection_and_dilation(cls) -> None:
    same = cls(8 * cls.expansion, 8, spatial_dims=3)
    assert same.downsample is None  # identity shortcut when shape is kept
    block = cls(8, 8, spatial_dims=3, stride=2, dilation=2)
    assert block.downsample is not None and block.out_channels == 8 * cls.expansion
    y = block(torch.randn(2, 8, 8, 8, 8))
    assert y.shape == (2, 8 * cls.expansion, 4, 4, 4)
    assert get_resnet_block("Basic") is ResNetBasicBlock and get_resnet_block("bottleneck") is ResNetBottleneckBlock
    with pytest.raises(ValueError):
        get_resnet_block("wide")
