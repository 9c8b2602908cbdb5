"""Small helpers shared by the networks of :mod:`custom_nets.nets`."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_input_size(x: torch.Tensor, spatial_dims: int, divisor: int, net_name: str) -> None:
    """Raise a clear ``ValueError`` unless ``x`` is ``(B, C, *spatial)`` with every spatial size divisible by ``divisor``.

    Networks call this at the top of ``forward`` so that a bad patch size fails with a message naming the network,
    the offending sizes and the fix, instead of a shape mismatch deep inside a ``torch.cat``.
    """
    if x.dim() != spatial_dims + 2:
        raise ValueError(
            f"{net_name} expects a {spatial_dims + 2}-D input (batch, channel, {spatial_dims} spatial dims), "
            f"got shape {list(x.shape)}."
        )
    spatial = x.shape[2:]
    for size in spatial:
        if size % divisor != 0:
            raise ValueError(
                f"{net_name} needs every spatial size divisible by {divisor}, got {list(spatial)}; "
                f"pad or crop the input (e.g. DivisiblePadd(k={divisor})) or choose an ROI size that is a multiple "
                f"of {divisor}."
            )


def check_channels(channels: Sequence[int], min_levels: int, net_name: str) -> tuple[int, ...]:
    """Validate per-level widths and return them as a tuple."""
    channels = tuple(int(c) for c in channels)
    if len(channels) < min_levels:
        raise ValueError(f"{net_name} needs at least {min_levels} levels in `channels`, got {list(channels)}.")
    if any(c <= 0 for c in channels):
        raise ValueError(f"{net_name} channel widths must be positive, got {list(channels)}.")
    return channels


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last memory format (``channels_last`` for 4-D, ``channels_last_3d`` for 5-D tensors).

    Only the memory layout changes (same shape, same values); other ranks are returned unchanged. oneDNN (MKLDNN)
    convolutions on CPU run natively on channels-last data, while on the default (channels-first) layout every
    convolution reorders its input and output to a blocked layout and back: at full resolution with few channels
    those reorders cost as much as the convolution. Every following op (norms, activations, additions,
    concatenations, pooling, interpolation) keeps the layout.
    """
    if x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    if x.dim() == 5:
        return x.contiguous(memory_format=torch.channels_last_3d)
    return x


def set_weight_memory_format(module: torch.nn.Module, channels_last: bool) -> None:
    """Store every 4-D / 5-D parameter of ``module`` in channels-last (``True``) or the default contiguous layout.

    Values, shapes, parameter objects (so optimizer references) and ``state_dict`` keys are unchanged; only the
    memory layout of the conv weights changes (a no-op for parameters already in that layout). A channels-last
    network in eval mode then avoids one weight reorder per conv call. The networks call it from ``train(mode)``:
    channels-last in eval mode, the default layout in training mode, so training runs exactly the reference
    computation (a different conv algorithm changes the rounding, which batch statistics of small maps amplify).
    """
    with torch.no_grad():
        for p in module.parameters():
            if p.dim() == 4:
                fmt = torch.channels_last if channels_last else torch.contiguous_format
            elif p.dim() == 5:
                fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
            else:
                continue
            if not p.is_contiguous(memory_format=fmt):
                p.data = p.data.contiguous(memory_format=fmt)


class ChannelsLastInEval(torch.nn.Module):
    """Base of the networks made fast for CPU inference: oneDNN convolutions and, in eval mode, channels-last.

    A subclass calls :meth:`enable_fast_inference` at the end of ``__init__``, implements its computation as
    ``_forward(x)`` and returns ``self._forward_in_eval_layout(x)`` from ``forward``. With ``channels_last`` (a plain
    attribute: not a constructor argument, not in the ``state_dict``; the 2D networks) the eval-mode forward runs on
    a :func:`to_channels_last` copy of the input and returns a contiguous tensor, and ``train(mode)`` puts the conv
    weights channels-last in eval mode and back to the default layout in training mode
    (:func:`set_weight_memory_format`), so training computes exactly what the reference layout computes.
    """

    def enable_fast_inference(self, channels_last: bool) -> None:
        """Take the oneDNN conv kernel for CPU inference (:func:`~custom_nets.blocks.onednn.use_onednn_convolutions`:
        PyTorch's size heuristic sends some layers of the default ROIs to a much slower native kernel) and, if
        ``channels_last``, run the eval-mode forward channels-last. Training and the ``state_dict`` are unchanged."""
        from custom_nets.blocks.onednn import use_onednn_convolutions

        self.channels_last = bool(channels_last)
        use_onednn_convolutions(self)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _forward_in_eval_layout(self, x: torch.Tensor) -> torch.Tensor:
        """``self._forward(x)``; in eval mode with ``channels_last``, on a channels-last copy of ``x`` (output made
        contiguous)."""
        if self.channels_last and not self.training:
            return self._forward(to_channels_last(x)).contiguous()
        return self._forward(x)

    def train(self, mode: bool = True):  # type: ignore[override]
        super().train(mode)
        if getattr(self, "channels_last", False):
            set_weight_memory_format(self, not mode)
        return self
