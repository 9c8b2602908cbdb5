"""Tests of LinkNet, PSPNet and their blocks (ResNet encoder, pyramid pooling). What every network promises (shapes,
gradients, size checks, TorchScript, ONNX, parameter counts at the reference widths) is checked by
``tests/test_network_contract.py`` (LinkNet with deconv upsampling, PSPNet at ``TINY_PSPNET``); here what is particular
to these two. Small widths and inputs keep the run short on a 2-core CPU."""

from __future__ import annotations

import pytest
import torch

from custom_nets.blocks.pyramid_pooling import PyramidPooling
from custom_nets.blocks.resnet import ResNetBasicBlock, ResNetBottleneckBlock, ResNetEncoder, get_resnet_block
from custom_nets.nets.linknet import LinkNet
from custom_nets.nets.pspnet import PSPNet

TINY_LINKNET = {"channels": (8, 16, 16, 32)}
TINY_PSPNET = {"channels": (4, 8, 8, 8), "layers": (1, 1, 2, 1), "bins": (1, 2, 3, 6)}

pytestmark = pytest.mark.usefixtures("one_thread")


def assert_script_matches_eager(net: torch.nn.Module, x: torch.Tensor) -> None:
    net.eval()
    scripted = torch.jit.script(net)
    with torch.no_grad():
        expected = net(x)
        actual = scripted(x)
    assert actual.shape == expected.shape
    torch.testing.assert_close(actual, expected)


# ---------------------------------------------------------------- blocks


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


@pytest.mark.parametrize("norm", ["batch", "instance", ("group", {"num_groups": 2})])
def test_pyramid_pooling_batch_one_training(norm) -> None:
    ppm = PyramidPooling(3, 16, bins=(1, 2, 3, 6), norm=norm).train()
    assert ppm.branch_channels == 4 and ppm.out_channels == 32
    x = torch.randn(1, 16, 4, 5, 6, requires_grad=True)  # batch 1, grid smaller than the largest bin
    y = ppm(x)
    assert y.shape == (1, 32, 4, 5, 6)
    torch.testing.assert_close(y[:, :16], x)  # the input is passed through first
    y.mean().backward()
    assert all(p.grad is not None for p in ppm.parameters())


def test_pyramid_pooling_2d_custom_reduction_and_script() -> None:
    ppm = PyramidPooling(2, 12, bins=(1, 3), reduction_channels=5)
    assert ppm.out_channels == 12 + 2 * 5
    assert_script_matches_eager(ppm, torch.randn(2, 12, 9, 7))


# ---------------------------------------------------------------- LinkNet


@pytest.mark.parametrize("spatial_dims, size", [(2, (64, 96)), (3, (32, 32, 64))])
def test_linknet_nontrainable_upsampling_output_shape(spatial_dims: int, size: tuple) -> None:
    net = LinkNet(spatial_dims, 3, 2, upsample_mode="nontrainable", **TINY_LINKNET).eval()
    assert net.divisor == 32
    with torch.no_grad():
        y = net(torch.randn(2, 3, *size))
    assert y.shape == (2, 2, *size)


def test_linknet_other_depth_and_bottleneck() -> None:
    net = LinkNet(2, 1, 3, channels=(4, 8, 8), layers=(1, 1, 1), block="bottleneck").eval()
    assert net.divisor == 16
    with torch.no_grad():
        assert net(torch.randn(1, 1, 16, 48)).shape == (1, 3, 16, 48)


def test_linknet_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        LinkNet(channels=(32,))
    with pytest.raises(ValueError):
        LinkNet(channels=(8, 16, 32, 64), layers=(2, 2))
    with pytest.raises(ValueError):
        LinkNet(upsample_mode="pixelshuffle")


def test_linknet_nontrainable_upsampling_script_matches_eager() -> None:
    net = LinkNet(2, 4, 3, upsample_mode="nontrainable", **TINY_LINKNET)
    assert_script_matches_eager(net, torch.randn(1, 4, 32, 32))


# ---------------------------------------------------------------- PSPNet


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_pspnet_dilated_encoder(spatial_dims: int) -> None:
    net = PSPNet(spatial_dims, 3, 2, **TINY_PSPNET)
    assert net.divisor == 8
    assert net.encoder.output_strides == (4, 8, 8, 8)
    assert [stage[-1].dilation for stage in net.encoder.stages] == [1, 1, 2, 4]


def test_pspnet_batch_one_training() -> None:
    net = PSPNet(3, 4, 3, **TINY_PSPNET).train()
    y = net(torch.randn(1, 4, 16, 16, 16))
    assert y.shape == (1, 3, 16, 16, 16)
    y.mean().backward()


def test_pspnet_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        PSPNet(channels=(16,), layers=(3,))
    with pytest.raises(ValueError):
        PSPNet(channels=(16, 32, 64, 128), layers=(3, 4, 6))
    with pytest.raises(ValueError):
        PSPNet(dropout=1.5)
    with pytest.raises(ValueError):
        PSPNet(bins=())
