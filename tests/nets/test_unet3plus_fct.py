"""Tests of UNet 3+ (full-scale skips, CGM) and FCT (convolutional attention, Wide-Focus): the options' shapes, the
CGM's gradients and gating. What every network promises (2D/3D shapes with deep supervision, gradients, size checks,
TorchScript, ONNX, parameter counts) is checked by ``tests/nets/test_network_contract.py``; their blocks and gating
functions by ``tests/blocks/test_full_scale.py`` and ``tests/blocks/test_conv_attention.py``; their losses by
``tests/losses/test_hybrid.py`` and ``tests/losses/test_deep_supervision.py``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from custom_nets.blocks.full_scale import FullScaleSkip
from custom_nets.losses.hybrid import UNet3PlusLoss, presence_target
from custom_nets.nets.fct import FCT
from custom_nets.nets.unet3plus import UNet3Plus

U3_SMALL = (4, 8, 16, 32)  # four levels: sizes divisible by 8
FCT_SMALL = (4, 8, 16, 32)  # four blocks: sizes divisible by 16

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------------------------------------
# UNet 3+
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spatial_dims, size, deep_supervision, cgm",
    [
        (2, (32, 24), False, False),
        (2, (32, 24), False, True),
        (2, (32, 24), True, True),
        (3, (16, 16, 8), False, False),
        (3, (16, 16, 8), True, True),
    ],
)
def test_unet3plus_option_shapes(spatial_dims: int, size: tuple, deep_supervision: bool, cgm: bool) -> None:
    torch.manual_seed(0)
    net = UNet3Plus(spatial_dims, 2, 3, channels=U3_SMALL, deep_supervision=deep_supervision, cgm=cgm)
    x = torch.randn(2, 2, *size)
    out = net.train()(x)
    n_heads = 1 + (len(U3_SMALL) - 1 if deep_supervision else 0) + (1 if cgm else 0)
    assert out.shape == ((2, n_heads, 3, *size) if n_heads > 1 else (2, 3, *size))
    if cgm:  # the presence head is constant over space
        presence = out[:, -1]
        first = presence.flatten(2)[..., :1].reshape(2, 3, *([1] * spatial_dims))
        assert torch.equal(presence, first.expand_as(presence))
    with torch.no_grad():
        assert net.eval()(x).shape == (2, 3, *size)


def test_unet3plus_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    net = UNet3Plus(2, 1, 2, channels=U3_SMALL, deep_supervision=True, cgm=True, cgm_dropout=0.0)
    x = torch.randn(2, 1, 16, 16)
    target = (torch.rand(2, 2, 16, 16) > 0.5).float()
    target[1, 1] = 0.0  # one absent organ
    UNet3PlusLoss(cgm=True)(net.train()(x), target).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert all(float(p.grad.abs().sum()) > 0 for n, p in net.named_parameters() if n.startswith("cgm."))


def test_cgm_presence_loss_alone_trains_only_the_cgm_path() -> None:
    torch.manual_seed(0)
    net = UNet3Plus(2, 1, 3, channels=U3_SMALL, cgm=True, cgm_dropout=0.0)
    out = net.train()(torch.randn(2, 1, 16, 16))
    target = torch.zeros(2, 3, 16, 16)
    target[0, 0, 2:5, 2:5] = 1.0
    presence = out[:, -1].flatten(2).mean(2)
    loss = F.binary_cross_entropy_with_logits(presence, presence_target(target))
    loss.backward()
    assert float(net.cgm[0].conv.conv.weight.grad.abs().sum()) > 0
    head_grad = net.head.conv.weight.grad  # the final head is not on the presence path
    assert head_grad is None or float(head_grad.abs().sum()) == 0.0
    torch.testing.assert_close(presence_target(target), torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))


def test_cgm_suppression_gives_zero_probability_not_one_half() -> None:
    torch.manual_seed(0)
    net = UNet3Plus(2, 1, 2, channels=U3_SMALL, cgm=True)
    with torch.no_grad():  # the CGM says "absent" for class 1, "present" for class 0
        net.cgm[0].conv.conv.weight.zero_()
        net.cgm[0].conv.conv.bias.copy_(torch.tensor([8.0, -8.0]))
        net.head.conv.weight.zero_()
        net.head.conv.bias.zero_()  # raw segmentation logits 0 everywhere (probability 0.5)
        prob = torch.sigmoid(net.eval()(torch.randn(1, 1, 16, 16)))
    assert float(prob[:, 1].max()) < 1e-6  # suppressed: ~0, not the 0.5 of "zeroed logits"
    torch.testing.assert_close(prob[:, 0], torch.full_like(prob[:, 0], 0.5))
    soft = UNet3Plus(2, 1, 2, channels=U3_SMALL, cgm=True, cgm_mode="soft")
    soft.load_state_dict(net.state_dict())
    with torch.no_grad():
        prob_soft = torch.sigmoid(soft.eval()(torch.randn(1, 1, 16, 16)))
    expected = 0.5 * float(torch.sigmoid(torch.tensor(-8.0)))  # sigmoid(seg) * sigmoid(presence)
    torch.testing.assert_close(prob_soft[:, 1], torch.full_like(prob_soft[:, 1], expected))


def test_unet3plus_cgm_torchscript() -> None:
    torch.manual_seed(0)
    net = UNet3Plus(2, 1, 2, channels=U3_SMALL, cgm=True)
    scripted = torch.jit.script(net)
    x = torch.randn(1, 1, 16, 16)
    assert scripted.train()(x).shape == net.train()(x).shape
    with torch.no_grad():
        torch.testing.assert_close(scripted.eval()(x), net.eval()(x))


def test_unet3plus_arguments_and_blocks() -> None:
    with pytest.raises(ValueError, match="cgm_mode"):
        UNet3Plus(2, cgm=True, cgm_mode="argmax")
    down = FullScaleSkip(2, 3, 5, scale_shift=-2)
    up = FullScaleSkip(2, 3, 5, scale_shift=1)
    assert down(torch.randn(1, 3, 16, 16)).shape == (1, 5, 4, 4)
    assert up(torch.randn(1, 3, 4, 4)).shape == (1, 5, 8, 8)


# ----------------------------------------------------------------------------------------------------------------------
# FCT
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial_dims, size, deep_supervision", [(2, (16, 32), False)])
def test_fct_shapes_without_deep_supervision(spatial_dims: int, size: tuple, deep_supervision: bool) -> None:
    torch.manual_seed(0)
    net = FCT(spatial_dims, 3, 2, channels=FCT_SMALL, num_heads=2, deep_supervision=deep_supervision)
    x = torch.randn(2, 3, *size)
    out = net.train()(x)
    assert out.shape == ((2, 3, 2, *size) if deep_supervision else (2, 2, *size))
    with torch.no_grad():
        assert net.eval()(x).shape == (2, 2, *size)


def test_fct_heads_must_divide_widths() -> None:
    with pytest.raises(ValueError, match="heads"):
        FCT(2, 1, 2, channels=(6, 12, 24), num_heads=4)
