"""Tests of the AR-UNet (attention residual U-Net) and its options. What every network promises (shapes with deep
supervision, gradients, size checks, TorchScript, ONNX, parameter counts) is checked once for all by
``tests/nets/test_network_contract.py`` (ARUNet with deep supervision; AttentionResUNet for the max-pool variant). Its
blocks: ``tests/blocks/test_attention.py``, ``test_residual.py`` and ``test_sampling.py``."""

from __future__ import annotations

import pytest
import torch

from custom_nets.blocks.residual import PreActResidualBlock
from custom_nets.blocks.sampling import Downsample
from custom_nets.nets.arunet import ARUNet
from network_registry import n_params

SMALL = (4, 8, 16, 32)  # four levels: sizes must be divisible by 8

pytestmark = pytest.mark.usefixtures("one_thread")


def _size(spatial_dims: int) -> tuple[int, ...]:
    return (32,) * 3 if spatial_dims == 3 else (64,) * 2


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_output_shapes_without_deep_supervision(spatial_dims: int) -> None:
    """One tensor in training mode too (the contract runs ``deep_supervision=True``: stacked heads, index 0 final)."""
    torch.manual_seed(0)
    net = ARUNet(spatial_dims, in_channels=2, out_channels=3, channels=SMALL, deep_supervision=False)
    size = _size(spatial_dims)
    x = torch.randn(2, 2, *size)
    assert net.train()(x).shape == (2, 3, *size)
    with torch.no_grad():
        assert net.eval()(x).shape == (2, 3, *size)


def test_two_levels_and_options() -> None:
    net = ARUNet(2, 1, 2, channels=(4, 8), deep_supervision=True, separable=True, dropout=0.1, norm="instance")
    x = torch.randn(1, 1, 6, 10)
    assert net(x).shape == (1, 1, 2, 6, 10)  # no intermediate decoder level: only the final head
    assert net.eval()(x).shape == (1, 2, 6, 10)
    group = ARUNet(3, 1, 2, channels=(8, 16, 32), norm=("group", {"num_groups": 4}))
    assert group(torch.randn(1, 1, 8, 8, 12)).shape == (1, 2, 8, 8, 12)


def test_gradients_reach_every_parameter_without_deep_supervision() -> None:
    """The final head alone (the contract checks the deep-supervision configuration)."""
    torch.manual_seed(0)
    net = ARUNet(3, in_channels=2, out_channels=2, channels=SMALL, deep_supervision=False).train()
    x = torch.randn(2, 2, 16, 16, 16)
    net(x).square().mean().backward()
    names_without_grad = [n for n, p in net.named_parameters() if p.grad is None]
    assert not names_without_grad, names_without_grad
    zero = [n for n, p in net.named_parameters() if not bool(p.grad.abs().sum() > 0)]
    assert len(zero) < len(list(net.parameters())) // 10, zero  # essentially every parameter gets a gradient


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError):
        ARUNet(3, 1, 2, channels=(16,))
    with pytest.raises(ValueError):
        ARUNet(3, 1, 2, channels=(16, 0, 32))
    with pytest.raises(ValueError):
        ARUNet(4, 1, 2)
    with pytest.raises(ValueError):
        ARUNet(3, 1, 2, dropout=1.0)


# ----------------------------------------------------------------------------------------------------------------------
# Max-pool down-sampling and the LGG AttentionResUNet
# ----------------------------------------------------------------------------------------------------------------------


def test_downsample_default_is_the_strided_conv() -> None:
    conv = ARUNet(3, 1, 2, channels=SMALL)
    explicit = ARUNet(3, 1, 2, channels=SMALL, downsample="conv")
    assert n_params(conv) == n_params(explicit)
    assert isinstance(conv.encoder[1][0], Downsample)
    assert list(conv.state_dict()) == list(explicit.state_dict())  # same checkpoint keys as before the option
    with pytest.raises(ValueError, match="downsample"):
        ARUNet(3, 1, 2, channels=SMALL, downsample="avgpool")


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_maxpool_variant_shapes(spatial_dims: int) -> None:
    from custom_nets.nets.arunet import MaxPoolDownsample

    torch.manual_seed(0)
    net = ARUNet(spatial_dims, 2, 3, channels=SMALL, downsample="maxpool", deep_supervision=True)
    assert all(isinstance(level[0], MaxPoolDownsample) for level in net.encoder[1:])
    size = (16,) * 3 if spatial_dims == 3 else (32, 24)
    x = torch.randn(2, 2, *size)
    assert net.train()(x).shape == (2, 1 + len(SMALL) - 2, 3, *size)
    assert net.eval()(x).shape == (2, 3, *size)
    # the encoder halves every size at each level and reaches each width
    h = x
    for i, level in enumerate(net.encoder):
        h = level(h)
        assert h.shape[1] == SMALL[i] and tuple(h.shape[2:]) == tuple(s // 2**i for s in size)
    down = MaxPoolDownsample(spatial_dims, 4, 6)
    y = torch.randn(1, 4, *(6,) * spatial_dims)
    assert down(y).shape == (1, 6, *(3,) * spatial_dims)
    # fewer parameters than the stride-2 3x3 conv (1x1 conv after the pooling)
    assert n_params(net) < n_params(ARUNet(spatial_dims, 2, 3, channels=SMALL, deep_supervision=True))


def test_attention_resunet_defaults_and_shapes() -> None:
    from custom_nets.blocks.attention import AttentionGate as Gate
    from custom_nets.nets.arunet import MaxPoolDownsample
    from custom_nets.nets.attention_resunet import AttentionResUNet

    torch.manual_seed(0)
    net = AttentionResUNet()
    assert isinstance(net, ARUNet)
    assert (net.spatial_dims, net.in_channels, net.out_channels) == (2, 3, 1)
    assert net.channels == (16, 32, 64, 128, 256) and net.size_divisor == 16
    assert net.downsample == "maxpool" and isinstance(net.encoder[1][0], MaxPoolDownsample)
    # reuses ARUNet's blocks: no other residual block or gate type
    assert sum(isinstance(m, Gate) for m in net.modules()) == 4
    assert sum(isinstance(m, PreActResidualBlock) for m in net.modules()) == 9
    x = torch.randn(2, 3, 64, 48)
    net.eval()
    with torch.no_grad():
        assert net(x).shape == (2, 1, 64, 48)
    with pytest.raises(ValueError, match="divisible by 16"):
        net(torch.randn(1, 3, 64, 40))
    scripted = torch.jit.script(net)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x), atol=1e-5, rtol=1e-5)


def test_attention_resunet_separable() -> None:
    from custom_nets.nets.attention_resunet import AttentionResUNet

    torch.manual_seed(0)
    net = AttentionResUNet(separable=True, channels=(4, 8, 16)).train()
    assert any(isinstance(m, torch.nn.Conv2d) and m.groups > 1 for m in net.modules())
    out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 1, 32, 32)
    out.mean().backward()
    assert n_params(AttentionResUNet(separable=True)) < n_params(AttentionResUNet())
