"""CPU inference speed-ups of a network, applied in one place.

The networks of :mod:`custom_nets.nets` are plain ``nn.Module`` s (their ``state_dict`` is the same contiguous dict in
every mode, and training runs exactly what they define). :func:`apply` makes a network faster for inference on the
CPU without changing what it computes beyond float rounding, its parameters, its buffers or its ``state_dict`` keys:

1. **oneDNN convolutions** (:func:`custom_nets.blocks.onednn.use_onednn_convolutions`): PyTorch's size heuristic
   sends batch-1 convolutions of the bundles' ROIs to a native im2col kernel 1.5-17x slower than oneDNN; the swapped
   convolutions call oneDNN whenever no autograd graph is recorded, and run the ordinary forward otherwise.
2. **Channels-last in eval mode** for the 2D networks that measured faster with it (:data:`CHANNELS_LAST_NETWORKS`):
   a forward pre-hook gives the network a channels-last copy of its input in eval mode (oneDNN then skips two
   layout reorders per convolution at full resolution), and a forward hook returns a contiguous output. The weights
   keep the default layout, so the ``state_dict`` stays contiguous. The 3D networks measured 0.96-1.07x with
   channels-last and keep the default layout.
3. **Padded attention heads** (:func:`custom_nets.blocks.conv_attention.padded_attention`): every
   :class:`~custom_nets.blocks.conv_attention.ConvAttention` gets ``min_head_dim = MIN_CPU_HEAD_DIM``, so heads
   narrower than that are zero-padded for PyTorch's CPU attention kernel (same scores and outputs, faster kernel).

Everything happens in place on the given module (no wrapper: checkpoints load into it as into the plain network) and
is undone by :func:`remove`. Inference (``scripts/segment.py``'s eager backend), evaluation and the bundles' own
``inference.json`` / ``evaluate.json`` call it; training uses the plain module, so no speed-up changes the rounding
of a training step. In a bundle config::

    "network": "$custom_nets.inference.speedups.apply(@network_def.to(@device))"
"""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn as nn

from custom_nets.blocks.conv_attention import MIN_CPU_HEAD_DIM, ConvAttention
from custom_nets.blocks.onednn import use_onednn_convolutions

__all__ = ["CHANNELS_LAST_NETWORKS", "apply", "applied", "remove", "to_channels_last"]

#: class names of the networks that run channels-last in eval mode when 2D (measured 1.2-1.7x faster on CPU with
#: oneDNN; subclasses such as AttentionResUNet count as their base)
CHANNELS_LAST_NETWORKS = ("ARUNet", "DDANet", "DRRMSAN", "UNet3Plus")

_STATE = "_custom_nets_speedups"


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last memory format (``channels_last`` for 4-D, ``channels_last_3d`` for 5-D tensors).

    Only the memory layout changes (same shape, same values); other ranks are returned unchanged. oneDNN
    convolutions on CPU run natively on channels-last data, while on the default layout every convolution reorders its
    input and output to a blocked layout and back; every following op (norms, activations, additions, concatenations,
    pooling, interpolation) keeps the layout.
    """
    if x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    if x.dim() == 5:
        return x.contiguous(memory_format=torch.channels_last_3d)
    return x


def _channels_last_input(module: nn.Module, args: Tuple[torch.Tensor]) -> Tuple[torch.Tensor]:
    """Forward pre-hook: in eval mode, a channels-last copy of a CPU input (typed for TorchScript)."""
    x = args[0]
    if module.training or x.device.type != "cpu":
        return args
    return (to_channels_last(x),)


def _contiguous_output(module: nn.Module, args: Tuple[torch.Tensor], output: torch.Tensor) -> torch.Tensor:
    """Forward hook: in eval mode, the output in the default (contiguous) layout (typed for TorchScript)."""
    if module.training or not isinstance(output, torch.Tensor):
        return output
    return output.contiguous()


def _wants_channels_last(model: nn.Module) -> bool:
    """2D networks of :data:`CHANNELS_LAST_NETWORKS` (a 2D network has 4-D conv weights)."""
    names = {cls.__name__ for cls in type(model).__mro__}
    if not names.intersection(CHANNELS_LAST_NETWORKS):
        return False
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def applied(model: nn.Module) -> dict[str, bool] | None:
    """The speed-ups :func:`apply` put on ``model`` (``{"onednn": ..., "channels_last": ..., "attention": ...}``),
    or ``None`` for a plain module."""
    state = getattr(model, _STATE, None)
    return dict(state) if state is not None else None


def apply(model: nn.Module, onednn: bool = True, channels_last: bool | None = None,
          attention: bool = True) -> nn.Module:
    """Make ``model`` faster for CPU inference, in place (see the module docstring); returns ``model``.

    Args:
        model: a network, e.g. from a bundle's ``network_def`` (on any device: on CUDA the convolutions and attention
            take their ordinary path and the channels-last hooks do nothing).
        onednn: swap ``nn.Conv2d`` / ``nn.Conv3d`` for the oneDNN-always versions.
        channels_last: run the eval-mode forward channels-last; ``None`` (default) for the 2D networks of
            :data:`CHANNELS_LAST_NETWORKS` only.
        attention: pad narrow attention heads for the CPU kernel.

    Applying twice is the same as once (the first call's choices stay; :func:`remove` first to change them).
    """
    if applied(model) is not None:
        return model
    if channels_last is None:
        channels_last = _wants_channels_last(model)
    if onednn:
        use_onednn_convolutions(model, channels_last=channels_last)
    if attention:
        for m in model.modules():
            if isinstance(m, ConvAttention):
                m.min_head_dim = MIN_CPU_HEAD_DIM
    if channels_last:
        model.register_forward_pre_hook(_channels_last_input)
        model.register_forward_hook(_contiguous_output)
    setattr(model, _STATE, {"onednn": bool(onednn), "channels_last": bool(channels_last), "attention": bool(attention)})
    return model


def remove(model: nn.Module) -> nn.Module:
    """Undo :func:`apply` in place: plain convolutions, plain attention, no layout hooks; returns ``model``."""
    state = applied(model)
    if state is None:
        return model
    use_onednn_convolutions(model, enabled=False)
    for m in model.modules():
        if isinstance(m, ConvAttention):
            m.min_head_dim = 0
    for hooks, fn in ((model._forward_pre_hooks, _channels_last_input), (model._forward_hooks, _contiguous_output)):
        for key in [k for k, hook in hooks.items() if hook is fn]:
            del hooks[key]
    delattr(model, _STATE)
    return model
