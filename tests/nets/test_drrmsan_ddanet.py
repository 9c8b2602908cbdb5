"""Tests of DRRMSAN and DDANet and DRRMSAN's own blocks. What every network promises (shapes, training outputs,
gradients, size checks, TorchScript, ONNX, parameter counts) is checked by ``tests/nets/test_network_contract.py``; here
what is particular to these two. The shared blocks they are built of: ``tests/blocks/test_multires.py`` and
``tests/blocks/test_se_residual.py``; the DDANet loss: ``tests/losses/test_ddanet.py``; its grayscale target:
``tests/transforms/test_grayscale.py``."""

from __future__ import annotations

import pytest
import torch

from custom_nets.losses.ddanet import MaskAndReconstructionLoss
from custom_nets.losses.deep_supervision import StackedDeepSupervisionLoss
from custom_nets.nets.ddanet import DDANet
from custom_nets.nets.drrmsan import DRRMSAN, MinPool, PooledImageInput
from custom_nets.transforms.grayscale import RGBToGrayscale

SMALL_DDA = {"channels": (4, 8, 16, 32), "decoder_channels": (16, 8, 4, 4)}

pytestmark = pytest.mark.usefixtures("one_thread")


def _size(spatial_dims: int) -> tuple[int, ...]:
    return (16,) * 3 if spatial_dims == 3 else (32, 48)


# ----------------------------------------------------------------------------------------------------------------------
# DRRMSAN's own blocks (custom_nets.nets.drrmsan)
# ----------------------------------------------------------------------------------------------------------------------


def test_min_pool_is_per_sample_with_the_right_stride() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 2, 8, 12)
    for k in (2, 4):
        out = MinPool(2, k)(x)
        expected = x.reshape(3, 2, 8 // k, k, 12 // k, k).amin(dim=(3, 5))
        assert out.shape == (3, 2, 8 // k, 12 // k)
        torch.testing.assert_close(out, expected)
        # each sample alone gives the same result: no reduction over the batch
        torch.testing.assert_close(MinPool(2, k)(x[1:2]), out[1:2])
    x3 = torch.randn(2, 1, 4, 4, 4)
    torch.testing.assert_close(MinPool(3, 2)(x3), x3.reshape(2, 1, 2, 2, 2, 2, 2, 2).amin(dim=(3, 5, 7)))


def test_pooled_image_input_branch_order_and_size() -> None:
    torch.manual_seed(0)
    branch = PooledImageInput(2, 3, 2, factor=4, norm=None, act=("relu", {}))
    x = torch.rand(2, 3, 16, 16)
    assert branch(x).shape == (2, 6, 4, 4)
    # the min branch sees the per-sample minimum over each 4x4 window
    seen = {}
    branch.min_conv.register_forward_hook(lambda m, inp, out: seen.setdefault("min", inp[0]))
    branch(x)
    torch.testing.assert_close(seen["min"], x.reshape(2, 3, 4, 4, 4, 4).amin(dim=(3, 5)))


# ----------------------------------------------------------------------------------------------------------------------
# DRRMSAN
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_drrmsan_final_is_weighted_sum(spatial_dims: int) -> None:
    torch.manual_seed(0)
    weights = (0.1, 0.2, 0.3, 0.4)
    net = DRRMSAN(spatial_dims, in_channels=2, out_channels=3, base_width=4, side_weights=weights)
    size = _size(spatial_dims)
    x = torch.randn(2, 2, *size)
    out = net.train()(x)
    assert out.shape == (2, 5, 3, *size)
    expected = sum(w * out[:, k + 1] for k, w in enumerate(weights))
    torch.testing.assert_close(out[:, 0], expected)


def test_drrmsan_every_side_output_gets_gradient() -> None:
    torch.manual_seed(0)
    net = DRRMSAN(2, 3, 1, base_width=4).train()
    x = torch.randn(2, 3, 32, 32)
    for k in range(1, 5):
        net.zero_grad(set_to_none=True)
        net(x)[:, k].square().mean().backward()
        side = net.decoder[k - 1].side
        assert side.weight.grad is not None and bool(side.weight.grad.abs().sum() > 0), k
        others = [net.decoder[j].side.weight.grad for j in range(4) if j != k - 1]
        assert all(g is None or not bool(g.abs().sum() > 0) for g in others)  # each head is its own output
    # BCE on all five outputs (the paper's training) reaches every parameter
    net.zero_grad(set_to_none=True)
    loss = StackedDeepSupervisionLoss(torch.nn.BCEWithLogitsLoss(), weights=[1.0] * 5)
    target = (torch.rand(2, 1, 32, 32) > 0.5).float()
    loss(net(x), target).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not bool(p.grad.abs().sum() > 0)]
    assert not missing, missing


def test_drrmsan_arguments() -> None:
    with pytest.raises(ValueError, match="side_weights"):
        DRRMSAN(side_weights=(0.5, 0.5))
    with pytest.raises(ValueError, match="pooled_input_channels"):
        DRRMSAN(base_width=4, pooled_input_channels=(1, 2))
    with pytest.raises(ValueError, match="divisible by 16"):
        DRRMSAN(base_width=4)(torch.randn(1, 3, 40, 32))
    net = DRRMSAN(base_width=4, pooled_input_channels=(2, 3, 5))
    assert [lvl.image_input.out_channels for lvl in net.encoder[:3]] == [6, 9, 15]
    assert net.encoder[3].image_input is None  # the bottleneck has no image input
    assert [lvl.image_input.factor for lvl in net.encoder[:3]] == [2, 4, 8]
    assert [len(lvl.respath) for lvl in net.decoder] == [1, 2, 3, 4]  # deepest first


def test_drrmsan_reference_widths() -> None:
    """The MultiRes widths at the reference ``base_width=32`` (the parameter counts: the contract)."""
    with torch.device("meta"):
        assert DRRMSAN(base_width=32).encoder_widths == (51, 105, 212, 426, 853)


# ----------------------------------------------------------------------------------------------------------------------
# DDANet
# ----------------------------------------------------------------------------------------------------------------------


def test_ddanet_gradients_and_dual_decoder_attention() -> None:
    torch.manual_seed(0)
    net = DDANet(2, 3, 1, **SMALL_DDA).train()
    x = torch.rand(2, 3, 32, 32)
    # the mask loss alone reaches the reconstruction decoder, through the attention maps
    net(x)[:, :1].square().mean().backward()
    recon_grads = [p.grad for n, p in net.named_parameters() if ".recon_block." in n]
    assert recon_grads and all(g is not None for g in recon_grads)
    assert net.recon_head.weight.grad is None or not bool(net.recon_head.weight.grad.abs().sum() > 0)
    net.zero_grad(set_to_none=True)
    label = torch.cat([(torch.rand(2, 1, 32, 32) > 0.5).float(), RGBToGrayscale()(x[0]).expand(2, 1, 32, 32)], dim=1)
    MaskAndReconstructionLoss()(net(x), label).backward()
    assert all(p.grad is not None for p in net.parameters())
    # at these tiny widths a squeeze-excitation layer has one hidden unit, which a ReLU may switch off
    zero = [n for n, p in net.named_parameters() if not bool(p.grad.abs().sum() > 0) and ".se.fc." not in n]
    assert not zero, zero


def test_ddanet_arguments() -> None:
    with pytest.raises(ValueError, match="decoder width"):
        DDANet(channels=(4, 8), decoder_channels=(8,))
    net = DDANet()  # defaults are the reference widths
    assert net.channels == (32, 64, 128, 256) and net.decoder_channels == (128, 64, 32, 16)
    two_levels = DDANet(2, 3, 1, channels=(4, 8), decoder_channels=(8, 4))
    assert two_levels.size_divisor == 4 and two_levels.eval()(torch.randn(1, 3, 8, 12)).shape == (1, 1, 8, 12)
