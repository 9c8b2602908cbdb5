"""The networks of ``custom_nets.nets`` as the contract tests (``tests/nets/test_network_contract.py``) see them: one
entry each, and the contract's whole set of checks runs on it.

Adding a network (``docs/design.md``, "Adding a network") adds one :class:`NetworkSpec` line to :data:`NETWORKS`.
The small widths keep every check to a fraction of a second on a 2-core CPU; the reference widths are only built on
the meta device to count parameters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn as nn

from custom_nets.nets import DDANet, DRRMSAN, FCT, SSFormer, UNet3Plus
from custom_nets.nets.arunet import ARUNet
from custom_nets.nets.attention_resunet import AttentionResUNet
from custom_nets.nets.linknet import LinkNet
from custom_nets.nets.pspnet import PSPNet


@dataclass(frozen=True)
class NetworkSpec:
    """What the contract needs to know about one network.

    Attributes:
        cls: the network, built as ``cls(spatial_dims=..., in_channels=..., out_channels=..., **small)``.
        small: tiny constructor options for fast tests (the same for every spatial_dims).
        sizes: a valid spatial input size per supported ``spatial_dims``: multiples of ``divisor``, not all equal (so
            that mixed-up axes show).
        divisor: every spatial input size must be a multiple of it (at the ``small`` widths); other sizes are refused
            with a one-line ``ValueError`` naming the network, the sizes and the divisor.
        train_heads: more than 1: training mode returns the deep-supervision outputs stacked, ``(B, train_heads, C,
            *S)``, index 0 the final output; eval mode always returns ``(B, C, *S)``.
        extra_channels: training mode returns ``(B, C + extra_channels, *S)``, the first ``C`` the segmentation (e.g.
            DDANet's reconstruction); eval mode ``(B, C, *S)``.
        torchscript: ``"script"`` (``torch.jit.script``, which keeps the size check and the training-mode outputs) or
            ``"trace"`` (eval mode only) for a network that cannot be scripted.
        onnx_dynamic_spatial: the ONNX export keeps dynamic spatial axes; ``False``: only the batch axis is dynamic.
        reference: ``(constructor kwargs, exact parameter count)`` pairs (reference widths, bundle defaults); each
            count is stated in the network's docstring (and the model cards state the same figures).
        grad_may_vanish: parameter-name fragments whose gradient may be exactly zero at the small widths (it must
            still exist and be finite).
    """

    cls: type[nn.Module]
    small: dict
    sizes: dict[int, tuple[int, ...]]
    divisor: int
    train_heads: int = 1
    extra_channels: int = 0
    torchscript: str = "script"
    onnx_dynamic_spatial: bool = True
    reference: tuple[tuple[dict, int], ...] = ()
    grad_may_vanish: tuple[str, ...] = field(default=())


def n_params(net: nn.Module) -> int:
    """The number of parameters of ``net`` (works on the meta device)."""
    return sum(p.numel() for p in net.parameters())


_2D, _3D = 2, 3
# reference widths of the 3D BraTS paper (1 input, 4 output channels) and the bundle defaults ({})
_BRATS_REF = {"spatial_dims": 3, "in_channels": 1, "out_channels": 4, "channels": (64, 128, 256, 512)}

NETWORKS: dict[str, NetworkSpec] = {
    "ARUNet": NetworkSpec(
        ARUNet, {"channels": (4, 8, 16, 32), "deep_supervision": True}, {_2D: (32, 48), _3D: (16, 16, 24)}, divisor=8,
        train_heads=3, reference=((_BRATS_REF, 30_899_370), ({}, 1_935_025)),
    ),
    "AttentionResUNet": NetworkSpec(
        AttentionResUNet, {"channels": (4, 8, 16, 32)}, {_2D: (32, 48), _3D: (16, 16, 24)}, divisor=8,
        reference=(({}, 2_328_513), ({"separable": True}, 424_945), ({"downsample": "conv"}, 2_676_673)),
    ),
    "DDANet": NetworkSpec(
        DDANet, {"channels": (4, 8, 16, 32), "decoder_channels": (16, 8, 4, 4)}, {_2D: (32, 48), _3D: (16, 16, 32)},
        divisor=16, extra_channels=1,  # the grayscale reconstruction
        reference=(({}, 6_831_918), ({"channels": (16, 32, 64, 128), "decoder_channels": (64, 32, 16, 8)}, 1_711_836)),
        grad_may_vanish=(".se.fc.",),  # at these widths a squeeze-excitation has one hidden unit, a ReLU may cut it
    ),
    "DRRMSAN": NetworkSpec(
        DRRMSAN, {"base_width": 4}, {_2D: (32, 48), _3D: (16, 16, 32)}, divisor=16, train_heads=5,
        reference=(({"base_width": 32}, 7_610_968), ({}, 1_898_478)),
    ),
    "FCT": NetworkSpec(
        FCT, {"channels": (4, 8, 16, 32), "num_heads": (1, 2, 2, 4, 2, 2, 1)}, {_2D: (32, 64), _3D: (16, 32, 32)},
        divisor=16, train_heads=3,  # sizes: at 1/8 a single key would leave the bottleneck's queries without gradient
        reference=(({"in_channels": 1, "out_channels": 3, "channels": (32, 64, 128, 256, 512)}, 26_935_721),
                   ({}, 6_755_545)),
    ),
    "LinkNet": NetworkSpec(
        LinkNet, {"channels": (8, 16, 16, 32)}, {_2D: (64, 96), _3D: (32, 32, 64)}, divisor=32,
        reference=((_BRATS_REF, 33_964_676), ({}, 8_532_643)),
    ),
    "PSPNet": NetworkSpec(
        # ONNX turns the pyramid's adaptive pooling into fixed windows: the feature grid (1/8) divisible by every bin
        PSPNet, {"channels": (4, 8, 8, 8), "layers": (1, 1, 2, 1), "bins": (1, 2, 3, 6), "dropout": 0.0},
        {_2D: (48, 96), _3D: (48, 48, 96)}, divisor=8, onnx_dynamic_spatial=False,
        reference=(({**_BRATS_REF, "layers": (3, 4, 6, 3)}, 78_666_052), ({}, 4_948_067)),
    ),
    "SSFormer": NetworkSpec(
        SSFormer, {"depths": (1, 1, 1, 1), "embed_dims": (8, 16, 32, 64), "num_heads": (1, 1, 2, 2),
                   "decoder_channels": 16}, {_2D: (64, 96), _3D: (32, 32, 64)}, divisor=32,
        reference=(({"spatial_dims": 2, "in_channels": 3, "out_channels": 1, "variant": "S"}, 29_309_889),
                   ({"spatial_dims": 2, "in_channels": 3, "out_channels": 1, "variant": "L"}, 65_956_289)),
    ),
    "UNet3Plus": NetworkSpec(
        UNet3Plus, {"channels": (4, 8, 16, 32), "deep_supervision": True}, {_2D: (32, 24), _3D: (16, 16, 8)}, divisor=8,
        train_heads=4,
        reference=(({"in_channels": 1, "out_channels": 1, "channels": (64, 128, 256, 512, 1024)}, 26_981_957),
                   ({"in_channels": 3, "out_channels": 1, "channels": (64, 128, 256, 512, 1024)}, 26_983_109),
                   ({}, 1_703_199)),
    ),
}  # fmt: skip
