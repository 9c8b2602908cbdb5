"""CPU inference speed-ups (issues #9 and #18: ``custom_nets.inference.speedups.apply``) compute what the plain
networks compute.

The networks are plain modules; :func:`speedups.apply` swaps in oneDNN convolutions, pads narrow attention heads and,
for the 2D ``ARUNet`` / ``AttentionResUNet``, ``DRRMSAN``, ``UNet3Plus`` and ``DDANet``, runs the eval-mode forward on
a channels-last copy of the input. Each test compares the sped-up module with the plain module (the reference
computation) on the same weights: outputs in eval mode, outputs and gradients in training mode, checkpoint loading
and TorchScript; and the ``state_dict`` stays contiguous and the same in both modes.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
from conftest import SPEEDUP_ATOL

from custom_nets.nets import DDANet, DRRMSAN, UNet3Plus
from custom_nets.nets.arunet import ARUNet
from custom_nets.inference import speedups
from custom_nets.inference.speedups import to_channels_last
from custom_nets.nets.attention_resunet import AttentionResUNet



def _builders() -> dict:
    return {
        "arunet2d": lambda: ARUNet(spatial_dims=2, in_channels=3, out_channels=2, channels=(8, 16, 32)),
        "attention_resunet": lambda: AttentionResUNet(in_channels=3, out_channels=1, channels=(8, 16, 32, 64)),
        "drrmsan": lambda: DRRMSAN(in_channels=3, out_channels=1, base_width=8),
        "unet3plus": lambda: UNet3Plus(in_channels=1, out_channels=3, channels=(8, 16, 32, 64), skip_channels=8),
        "unet3plus_cgm_soft": lambda: UNet3Plus(
            in_channels=1, out_channels=3, channels=(8, 16, 32, 64), skip_channels=8, cgm=True, cgm_mode="soft"
        ),
        "ddanet": lambda: DDANet(in_channels=3, out_channels=1, channels=(16, 32, 64), decoder_channels=(32, 16, 8)),
    }


PLAIN_BUILDERS = _builders()
# the networks as inference runs them
BUILDERS = {name: (lambda build=build: speedups.apply(build())) for name, build in PLAIN_BUILDERS.items()}


def _randomise_norm_stats(net: nn.Module) -> None:
    """Non-trivial running statistics and affine parameters, so a wrong eval path would show."""
    gen = torch.Generator().manual_seed(1)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            if m.affine:
                m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
                m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


def _reference(net: nn.Module) -> nn.Module:
    """A plain copy (the reference path): no speed-up, contiguous weights."""
    ref = speedups.remove(copy.deepcopy(net))
    assert speedups.applied(ref) is None and not ref._forward_pre_hooks and not ref._forward_hooks
    for p in ref.parameters():
        assert p.is_contiguous()
    return ref


def _input(net: nn.Module, size: int = 64) -> torch.Tensor:
    return torch.randn(2, net.in_channels, size, size, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_eval_output_equals_reference(name: str) -> None:
    torch.manual_seed(0)
    net = BUILDERS[name]()
    assert speedups.applied(net)["channels_last"]
    _randomise_norm_stats(net)
    net.eval()
    ref = _reference(net).eval()
    x = _input(net)
    with torch.inference_mode():
        out = net(x)
        expected = ref(x)
    assert out.shape == expected.shape
    assert out.is_contiguous()
    torch.testing.assert_close(out, expected, atol=SPEEDUP_ATOL, rtol=1e-5)
    # the input itself is left untouched
    assert x.is_contiguous()


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_training_outputs_and_gradients_equal_reference(name: str) -> None:
    torch.manual_seed(0)
    net = BUILDERS[name]().train()
    ref = _reference(net).train()
    x = _input(net)
    torch.manual_seed(2)  # same dropout masks in both
    out = net(x)
    torch.manual_seed(2)
    expected = ref(x)
    torch.testing.assert_close(out, expected, atol=SPEEDUP_ATOL, rtol=1e-5)
    out.float().pow(2).mean().backward()
    expected.float().pow(2).mean().backward()
    ref_params = dict(ref.named_parameters())
    for key, p in net.named_parameters():
        if p.grad is None:
            assert ref_params[key].grad is None, key
            continue
        torch.testing.assert_close(p.grad, ref_params[key].grad, atol=SPEEDUP_ATOL, rtol=1e-4, msg=key)
    # batch-norm running statistics were updated identically
    ref_buffers = dict(ref.named_buffers())
    for key, b in net.named_buffers():
        torch.testing.assert_close(b, ref_buffers[key], atol=SPEEDUP_ATOL, rtol=1e-5, msg=key)


@pytest.mark.parametrize("name", ["attention_resunet", "unet3plus"])
def test_checkpoint_round_trip(name: str) -> None:
    """state_dict keys unchanged; a checkpoint of contiguous tensors loads and gives the reference output."""
    torch.manual_seed(0)
    net = BUILDERS[name]()
    _randomise_norm_stats(net)
    ref = _reference(net)
    state = {k: v.clone().contiguous() for k, v in ref.state_dict().items()}
    torch.manual_seed(1)
    fresh = BUILDERS[name]()  # sped up before loading, as a bundle config does
    assert list(fresh.state_dict()) == list(state)
    fresh.load_state_dict(state)
    fresh.eval()
    ref.eval()
    x = _input(fresh)
    with torch.inference_mode():
        torch.testing.assert_close(fresh(x), ref(x), atol=SPEEDUP_ATOL, rtol=1e-5)


@pytest.mark.parametrize("name", ["arunet2d", "drrmsan"])
def test_torchscript_matches_eager(name: str) -> None:
    torch.manual_seed(0)
    net = BUILDERS[name]().eval()
    scripted = torch.jit.script(net)
    x = _input(net)
    with torch.inference_mode():
        torch.testing.assert_close(scripted(x), _reference(net).eval()(x), atol=SPEEDUP_ATOL, rtol=1e-5)


def test_to_channels_last_only_changes_layout() -> None:
    x4 = torch.randn(1, 3, 5, 6)
    x5 = torch.randn(1, 3, 4, 5, 6)
    y4, y5 = to_channels_last(x4), to_channels_last(x5)
    assert y4.is_contiguous(memory_format=torch.channels_last)
    assert y5.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(y4, x4) and torch.equal(y5, x5)
    x3 = torch.randn(1, 3, 5)
    assert to_channels_last(x3) is x3


def _conv_input_layouts(net: nn.Module, x: torch.Tensor) -> list[bool]:
    """Whether each convolution of ``net(x)`` computed channels-last (its input, or its oneDNN forced layout)."""
    seen: list[bool] = []

    def hook(module: nn.Module, args: tuple) -> None:
        inp = args[0]
        seen.append(module.__dict__.get("channels_last", False) and not torch.is_grad_enabled()
                    or (inp.is_contiguous(memory_format=torch.channels_last) and not inp.is_contiguous()))

    handles = [m.register_forward_pre_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        net(x)
    finally:
        for h in handles:
            h.remove()
    return seen


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_layout_follows_the_mode(name: str) -> None:
    """Channels-last convolutions in eval mode only; training mode uses the default layout (reference computation).
    The parameters keep the default layout in every mode (same objects: optimizer references), so the state_dict is
    contiguous and the same in train and eval modes."""
    net = BUILDERS[name]()
    params = {k: p for k, p in net.named_parameters()}
    assert all(p.is_contiguous() for p in net.parameters())
    x = _input(net, 32)
    net.eval()
    with torch.inference_mode():
        layouts = _conv_input_layouts(net, x)
    assert layouts and all(layouts)
    assert {k: p for k, p in net.named_parameters()} == params
    assert all(p.is_contiguous() for p in net.parameters())
    eval_state = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    train_state = net.state_dict()  # before a training forward updates the batch-norm statistics
    assert list(train_state) == list(eval_state)
    assert all(v.is_contiguous() and torch.equal(v, eval_state[k]) for k, v in train_state.items())
    assert not any(_conv_input_layouts(net, x))
    assert all(p.is_contiguous() for p in net.parameters())


def test_3d_networks_keep_the_default_layout() -> None:
    net = speedups.apply(ARUNet(spatial_dims=3, channels=(4, 8))).eval()
    assert not speedups.applied(net)["channels_last"]
    assert all(p.is_contiguous() for p in net.parameters())


# --- oneDNN convolutions in whole networks (the kernel choice itself: tests/blocks/test_onednn.py) ---------------

from custom_nets.blocks.onednn import OneDNNConv2d, OneDNNConv3d  # noqa: E402
from custom_nets.nets import FCT  # noqa: E402
from custom_nets.nets.linknet import LinkNet  # noqa: E402
from custom_nets.nets.pspnet import PSPNet  # noqa: E402

ONEDNN_BUILDERS = {
    "arunet3d": (lambda: ARUNet(spatial_dims=3, in_channels=4, out_channels=3, channels=(8, 16, 32)), 5, 32),
    "linknet3d": (lambda: LinkNet(spatial_dims=3, in_channels=4, out_channels=3, channels=(8, 16, 32, 64)), 5, 32),
    "pspnet3d": (lambda: PSPNet(spatial_dims=3, in_channels=4, out_channels=3, channels=(4, 8), layers=(1, 1)), 5, 16),
    "fct": (lambda: FCT(spatial_dims=2, in_channels=1, out_channels=3, channels=(8, 16, 32, 64, 128)), 4, 64),
    "drrmsan": (PLAIN_BUILDERS["drrmsan"], 4, 64),
}


def _plain_reference(net: nn.Module) -> nn.Module:
    """A copy with ordinary convolutions (PyTorch's own kernel choice) and the default layout everywhere."""
    ref = speedups.remove(copy.deepcopy(net))
    assert not any(isinstance(m, (OneDNNConv2d, OneDNNConv3d)) for m in ref.modules())
    return ref


@pytest.mark.parametrize("name", sorted(ONEDNN_BUILDERS))
def test_networks_are_plain_modules(name: str) -> None:
    """A network as built has ordinary convolutions, plain attention and no hooks; speedups.apply is undone by
    speedups.remove, and applying twice is applying once."""
    net = ONEDNN_BUILDERS[name][0]()
    assert not any(isinstance(m, (OneDNNConv2d, OneDNNConv3d)) for m in net.modules())
    assert all(getattr(m, "min_head_dim", 0) == 0 for m in net.modules())
    assert not net._forward_pre_hooks and not net._forward_hooks and speedups.applied(net) is None
    speedups.apply(net)
    hooks = (len(net._forward_pre_hooks), len(net._forward_hooks))
    assert speedups.apply(net) is net and (len(net._forward_pre_hooks), len(net._forward_hooks)) == hooks
    assert any(isinstance(m, (OneDNNConv2d, OneDNNConv3d)) for m in net.modules())
    speedups.remove(net)
    assert not any(isinstance(m, (OneDNNConv2d, OneDNNConv3d)) for m in net.modules())
    assert not net._forward_pre_hooks and not net._forward_hooks and speedups.applied(net) is None


@pytest.mark.parametrize("name", sorted(ONEDNN_BUILDERS))
def test_onednn_convolutions_equal_reference(name: str) -> None:
    builder, ndim, size = ONEDNN_BUILDERS[name]
    torch.manual_seed(0)
    net = speedups.apply(builder())
    assert any(isinstance(m, (OneDNNConv2d, OneDNNConv3d)) for m in net.modules())
    _randomise_norm_stats(net)
    net.eval()
    ref = _plain_reference(net).eval()
    assert list(net.state_dict()) == list(ref.state_dict())
    x = torch.randn(1, net.in_channels, *([size] * (ndim - 2)), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        out = net(x)
        expected = ref(x)
    torch.testing.assert_close(out, expected, atol=SPEEDUP_ATOL, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(net(x), expected, atol=SPEEDUP_ATOL, rtol=1e-5)


def test_onednn_convolutions_script_and_trace() -> None:
    torch.manual_seed(0)
    net = speedups.apply(ONEDNN_BUILDERS["linknet3d"][0]()).eval()
    x = torch.randn(1, 4, 32, 32, 32)
    with torch.no_grad():
        expected = _plain_reference(net).eval()(x)
        torch.testing.assert_close(torch.jit.script(net)(x), expected, atol=SPEEDUP_ATOL, rtol=1e-5)
        traced = torch.jit.trace(net, x)
    assert "mkldnn_convolution" not in str(traced.inlined_graph)


# --- narrow attention heads padded in a whole FCT (padded_attention itself: tests/blocks/test_conv_attention.py) ---

from custom_nets.blocks.conv_attention import ConvAttention  # noqa: E402


def test_fct_narrow_heads_equal_unpadded_path() -> None:
    """A whole FCT with 4-wide heads gives the same output padded (speedups.apply) and unpadded (the plain module), in
    eval and training, and so does its TorchScript version (which pads too)."""
    torch.manual_seed(0)
    plain = FCT(2, 1, 3, channels=(8, 16, 32), num_heads=2, dropout=0.0, layer_dropout=0.0)
    net = speedups.apply(copy.deepcopy(plain))
    assert all(m.min_head_dim == 16 for m in net.modules() if isinstance(m, ConvAttention))
    x = torch.randn(2, 1, 32, 32)
    for training in (False, True):
        net.train(training)
        plain.train(training)
        out = net(x)
        expected = plain(x)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(net.eval())(x), net(x), atol=1e-5, rtol=1e-5)
