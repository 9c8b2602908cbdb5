"""Tests of LinkNet and PSPNet. What every network promises (shapes, gradients, size checks, TorchScript, ONNX,
parameter counts at the reference widths) is checked by ``tests/nets/test_network_contract.py`` (LinkNet with deconv
upsampling, PSPNet at ``TINY_PSPNET``); here what is particular to these two. Their blocks (ResNet encoder, pyramid
pooling): ``tests/blocks/test_resnet.py`` and ``tests/blocks/test_pyramid_pooling.py``. Small widths and inputs keep
the run short on a 2-core CPU."""

from __future__ import annotations

import pytest
import torch
from conftest import assert_script_matches_eager

from custom_nets.nets.linknet import LinkNet
from custom_nets.nets.pspnet import PSPNet

TINY_LINKNET = {"channels": (8, 16, 16, 32)}
TINY_PSPNET = {"channels": (4, 8, 8, 8), "layers": (1, 1, 2, 1), "bins": (1, 2, 3, 6)}

pytestmark = pytest.mark.usefixtures("one_thread")


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
