"""Tests of the residual blocks in :mod:`custom_nets.blocks.residual`: what :class:`ProjectionResidualBlock` gives
a subclass that only builds its body, that the package's post-activation blocks are built on it, and the pre-activation
:class:`PreActResidualBlock` (AR-UNet's)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from custom_nets.blocks.common import ConvNormAct
from custom_nets.blocks.multires import MultiResBlock, ResPathStep
from custom_nets.blocks.residual import PreActResidualBlock, ProjectionResidualBlock
from custom_nets.blocks.se_residual import SEResidualBlock

pytestmark = pytest.mark.usefixtures("one_thread")


class ToyBlock(ProjectionResidualBlock):
    """A body of one conv (no norm, no activation): all a subclass has to write."""

    def build_body(self, norm, act) -> None:
        self.conv = nn.Conv2d(self.in_channels, self.out_channels, self.kernel_size, padding=self.kernel_size // 2)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_projection_residual_block_sums_body_and_projected_shortcut_then_activates() -> None:
    torch.manual_seed(0)
    block = ToyBlock(2, 3, 5).eval()
    x = torch.randn(2, 3, 6, 7)
    y = block(x)
    assert y.shape == (2, 5, 6, 7)
    assert torch.allclose(y, torch.relu(block.conv(x) + block.shortcut(x)))
    assert (y >= 0).all() and (y > 0).any()
    # the shortcut is a 1x1 conv (no bias in front of its norm) + norm, present also when the width does not change
    same = ToyBlock(2, 4, 4)
    assert isinstance(same.shortcut, ConvNormAct)
    assert same.shortcut.conv.weight.shape == (4, 4, 1, 1) and same.shortcut.conv.bias is None
    assert sorted(k for k in same.state_dict() if k.startswith("shortcut.conv")) == ["shortcut.conv.weight"]
    assert (block.spatial_dims, block.in_channels, block.out_channels, block.kernel_size) == (2, 3, 5, 3)


def test_projection_residual_block_trains_and_scripts() -> None:
    torch.manual_seed(0)
    block = ToyBlock(2, 2, 3)
    x = torch.randn(4, 2, 5, 5)
    target = torch.randn(4, 3, 5, 5).abs()
    optimizer = torch.optim.Adam(block.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = (block(x) - target).pow(2).mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    block.eval()
    assert torch.allclose(torch.jit.script(block)(x), block(x))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ToyBlock(2, 0, 4), "ToyBlock channel counts must be positive"),
        (lambda: ToyBlock(2, 3, 4, kernel_size=2), "ToyBlock kernel_size must be a positive odd number"),
        (lambda: SEResidualBlock(2, 3, 4, kernel_size=4), "SEResidualBlock kernel_size"),
        (lambda: ResPathStep(2, 3, -1), "ResPathStep channel counts"),
    ],
)
def test_projection_residual_block_refuses_bad_arguments_in_one_line(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_a_base_without_a_body_says_so() -> None:
    with pytest.raises(NotImplementedError, match="ProjectionResidualBlock must build its body"):
        ProjectionResidualBlock(2, 3, 4)


@pytest.mark.parametrize(
    "block, keys",
    [
        (SEResidualBlock(2, 3, 8), {"conv1", "conv2", "shortcut", "se"}),
        (MultiResBlock(2, 3, 8), {"conv1", "conv2", "conv3", "norm_cat", "shortcut", "norm_out"}),
        (ResPathStep(2, 3, 8), {"conv", "shortcut", "norm"}),
    ],
)
def test_post_activation_blocks_share_the_base_and_keep_their_parameter_names(block, keys: set) -> None:
    # the names are the state_dict keys of trained checkpoints
    assert isinstance(block, ProjectionResidualBlock)
    assert {k.split(".")[0] for k in block.state_dict()} == keys
    x = torch.randn(2, 3, 6, 6)
    assert block(x).shape == (2, block.out_channels, 6, 6)


@pytest.mark.parametrize("separable", [False, True])
def test_preact_residual_block(separable: bool) -> None:
    block = PreActResidualBlock(3, 4, 8, separable=separable)
    x = torch.randn(2, 4, 6, 6, 6)
    assert block(x).shape == (2, 8, 6, 6, 6)
    assert not isinstance(block.shortcut, torch.nn.Identity)  # projection shortcut for in != out
    same = PreActResidualBlock(2, 8, 8, separable=separable, norm=None)
    assert isinstance(same.shortcut, torch.nn.Identity)
    y = torch.randn(1, 8, 5, 7)
    y_copy = y.clone()
    assert same(y).shape == (1, 8, 5, 7)
    torch.testing.assert_close(y, y_copy)  # no in-place activation on the input, even without a norm
    if separable:
        depthwise = [m for m in block.modules() if isinstance(m, torch.nn.Conv3d) and m.groups > 1]
        assert {m.groups for m in depthwise} == {4, 8}
        dense = PreActResidualBlock(3, 4, 8, separable=False)
        assert sum(p.numel() for p in block.parameters()) < sum(p.numel() for p in dense.parameters())
