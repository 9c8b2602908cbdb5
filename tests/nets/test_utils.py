"""Tests of :mod:`custom_nets.nets.utils`: a network built on :class:`ResNetEncoderNetwork` gets the width and
per-stage checks, the encoder, ``channels`` and ``size_divisor`` by writing only its head."""

from __future__ import annotations

import pytest
import torch
from monai.networks.layers.factories import Conv

from custom_nets.blocks.common import resize_to
from custom_nets.nets.linknet import LinkNet
from custom_nets.nets.pspnet import PSPNet
from custom_nets.nets.utils import ResNetEncoderNetwork

pytestmark = pytest.mark.usefixtures("one_thread")


class ToyResNetNet(ResNetEncoderNetwork):
    """A 1x1 classifier on the last stage of a plain (stride 2 per stage) ResNet encoder."""

    def __init__(self, channels=(4, 8), layers=None, in_channels: int = 1, out_channels: int = 2) -> None:
        strides = (1,) + (2,) * (len(channels) - 1)
        super().__init__(2, in_channels, out_channels, channels, layers, "basic", strides)
        self.head = Conv[Conv.CONV, 2](self.encoder.out_channels[-1], out_channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return resize_to(self.head(self.encoder(x)[-1]), list(x.shape[2:]), self.interp_mode)


def test_a_resnet_encoder_network_writes_only_its_head() -> None:
    torch.manual_seed(0)
    net = ToyResNetNet(channels=(4, 8, 8))
    # stem (stride 4) and two stride-2 stages; layers=None gives two blocks per stage
    assert net.size_divisor == 16 and net.channels == (4, 8, 8)
    assert [len(stage) for stage in net.encoder.stages] == [2, 2, 2]
    x = torch.randn(2, 1, 32, 48)
    out = net(x)
    assert out.shape == (2, 2, 32, 48)
    out.mean().backward()
    assert all(p.grad is not None for p in net.parameters())
    with pytest.raises(ValueError, match="ToyResNetNet needs every spatial size divisible by 16"):
        net(torch.randn(1, 1, 32, 40))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ToyResNetNet(channels=(4,)), "ToyResNetNet needs at least 2 levels in `channels`"),
        (lambda: ToyResNetNet(layers=(1, 1, 1)), r"ToyResNetNet needs one entry of `layers` per level, got \[1, 1, 1"),
        (lambda: ToyResNetNet(channels=(4, 0)), "ToyResNetNet channel counts must be positive"),
        (lambda: LinkNet(layers=(2, 2)), "LinkNet needs one entry of `layers` per level"),
        (lambda: PSPNet(layers=(3, 4, 6)), "PSPNet needs one entry of `layers` per level"),
    ],
)
def test_resnet_encoder_networks_refuse_bad_encoder_arguments_in_one_line(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_linknet_and_pspnet_share_the_encoder_base() -> None:
    link = LinkNet(spatial_dims=2, in_channels=1, out_channels=2, channels=(4, 8, 8, 8))
    psp = PSPNet(spatial_dims=2, in_channels=1, out_channels=2, channels=(4, 4, 4, 4), layers=(1, 1, 1, 1))
    assert isinstance(link, ResNetEncoderNetwork) and isinstance(psp, ResNetEncoderNetwork)
    assert link.size_divisor == 32 and link.encoder.return_stem
    assert psp.size_divisor == 8 and psp.encoder.output_strides == (4, 8, 8, 8)
