"""Adding a network as ``docs/design.md`` describes it: a toy network registered with one ``NetworkSpec`` line passes
the whole contract of ``tests/nets/test_network_contract.py``; toys broken in one way each fail it, so the contract
cannot silently pass anything."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Pool
from network_registry import NetworkSpec
from test_network_contract import (
    HAS_ONNX,
    check_eval_outputs,
    check_onnx,
    check_size_checks,
    check_torchscript,
    check_training,
    run_contract,
)

from custom_nets.nets.utils import check_input_size

pytestmark = pytest.mark.usefixtures("one_thread")


class ToyNet(nn.Module):
    """A two-level toy U-Net for the contract's own tests (after Ronneberger et al., "U-Net", MICCAI 2015, arXiv
    1505.04597), with one deep-supervision head.

    Shapes: input ``(B, in_channels, *S)``, every spatial size divisible by 2; output logits ``(B, out_channels, *S)``
    in eval mode, ``(B, 2, out_channels, *S)`` in training mode (index 0 the final output, 1 the coarse head upsampled).
    Parameters at the defaults (2D, 1 input and 2 output channels, ``channels=4``): 527.
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 2, channels: int = 4) -> None:
        super().__init__()
        self.spatial_dims, self.in_channels, self.out_channels = spatial_dims, in_channels, out_channels
        self.size_divisor = 2
        self.encoder = Convolution(spatial_dims, in_channels, channels, norm="batch")
        self.pool = Pool[Pool.MAX, spatial_dims](2)
        self.bottom = Convolution(spatial_dims, channels, channels, norm="batch")
        self.up = nn.Upsample(scale_factor=2.0, mode="nearest")
        self.decoder = Convolution(spatial_dims, 2 * channels, channels, norm="batch")
        self.head = Convolution(spatial_dims, channels, out_channels, kernel_size=1, conv_only=True)
        self.coarse_head = Convolution(spatial_dims, channels, out_channels, kernel_size=1, conv_only=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input_size(x, self.spatial_dims, self.size_divisor, "ToyNet")
        skip = self.encoder(x)
        bottom = self.bottom(self.pool(skip))
        out = self.head(self.decoder(torch.cat([skip, self.up(bottom)], dim=1)))
        if not self.training:
            return out
        return torch.stack([out, self.up(self.coarse_head(bottom))], dim=1)


# the one registry line a new network needs
TOY = NetworkSpec(ToyNet, {"channels": 4}, {2: (8, 12), 3: (4, 4, 8)}, divisor=2, train_heads=2, reference=(({}, 527),))


def test_a_registered_toy_network_passes_the_whole_contract() -> None:
    run_contract(TOY)


# ----------------------------------------------------------------------------------------------------------------------
# broken toys: each breaks one promise and the contract says which
# ----------------------------------------------------------------------------------------------------------------------


class WrongShapeToy(ToyNet):
    """Drops the last row in eval mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out if self.training else out[..., :-1]


class NoSizeCheckToy(ToyNet):
    """Pads odd sizes silently instead of refusing them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad: list[int] = []
        for size in x.shape[2:]:
            pad = [0, size % 2] + pad
        return super().forward(nn.functional.pad(x, pad))[..., : x.shape[-1]] if pad else super().forward(x)


class DeadParameterToy(ToyNet):
    """Holds a parameter no output depends on."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.unused = nn.Parameter(torch.zeros(3))


class StackedInEvalToy(ToyNet):
    """Returns the deep-supervision stack in eval mode too."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.training, training = True, self.training
        try:
            return super().forward(x)
        finally:
            self.training = training


class EvalDropoutToy(ToyNet):
    """Keeps dropout on at inference."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.dropout(super().forward(x), 0.5, training=True)


class SwappedHeadsToy(ToyNet):
    """Stacks the coarse head first in training mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out.flip(1) if self.training else out


class UnscriptableToy(ToyNet):
    """Uses a Python feature TorchScript cannot compile."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * len({"a": lambda: 1})


def _toy(cls: type[ToyNet], **changes) -> NetworkSpec:
    fields = {"small": {"channels": 4}, "sizes": {2: (8, 12)}, "divisor": 2, "train_heads": 2}
    return NetworkSpec(cls, **{**fields, "reference": (({}, 527),), **changes})


@pytest.mark.parametrize(
    "spec, check, message",
    [
        (_toy(WrongShapeToy), check_eval_outputs, "eval output"),
        (_toy(NoSizeCheckToy), check_size_checks, "accepted"),
        (_toy(DeadParameterToy), check_training, "no gradient reaches .*unused"),
        (_toy(StackedInEvalToy), check_eval_outputs, "eval output"),
        (_toy(EvalDropoutToy), check_eval_outputs, "not deterministic"),
        (_toy(SwappedHeadsToy), check_eval_outputs, "first training output is not the eval output"),
        (_toy(ToyNet, train_heads=1), check_training, "training output"),  # a registry line that lies about the heads
        (_toy(ToyNet, divisor=4, sizes={2: (8, 12)}), check_size_checks, "accepted"),  # a wrong divisor
        (_toy(ToyNet, reference=(({}, 1_000),)), run_contract, "527 parameters, not 1,000"),
        (_toy(ToyNet, reference=(({"channels": 8}, 1_911),)), run_contract, "does not state 1,911"),
        (_toy(ToyNet, sizes={2: (8, 8)}), run_contract, "different sizes"),
    ],
    ids=["wrong-shape", "odd-size-accepted", "dead-parameter", "stack-in-eval", "dropout-in-eval", "heads-swapped",
         "heads-miscounted",
         "wrong-divisor", "wrong-count", "count-not-documented", "square-sizes"],
)  # fmt: skip
def test_a_broken_network_fails_the_contract(spec: NetworkSpec, check, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check(spec, 2) if check is not run_contract else check(spec)


def test_a_network_torchscript_cannot_compile_fails_the_contract() -> None:
    with pytest.raises(Exception, match="(?i)lambda|not supported|cannot"):
        check_torchscript(_toy(UnscriptableToy), 2)


@pytest.mark.skipif(not HAS_ONNX, reason="onnx / onnxruntime not installed (pip install -r requirements-export.txt)")
def test_onnx_parity_is_checked() -> None:
    """An exported graph that differs from eager (a random choice frozen at export time) fails the ONNX check."""

    class RandomToy(ToyNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward(x) + torch.rand(1).item()

    with pytest.raises(AssertionError, match="ONNX"):
        check_onnx(_toy(RandomToy), 2)
