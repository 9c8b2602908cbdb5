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
