"""Blocks of the Fully Convolutional Transformer (FCT), generic over ``spatial_dims``: a channel LayerNorm,
convolutional multi-head attention, the Wide-Focus module and the FCT layer that combines them.

Reference: Tragakis, Kaul, Murray-Smith, Husmeier, "The Fully Convolutional Transformer for Medical Image
Segmentation", WACV 2023 (arXiv 2206.00566), Sec. 3 and Fig. 2.

* :class:`ChannelLayerNorm`: LayerNorm over the channels at every position (one weight and bias per channel). A
  popular port normalises over ``[C, H, W]`` instead, which ties the network to one image size and puts millions of
  parameters into the norm weights; this one works for any size and any ``spatial_dims``.
* :class:`ConvAttention`: queries, keys and values from depthwise 3x3 convs, each followed by a channel LayerNorm;
  keys and values are computed with stride ``kv_stride`` (2), which halves every spatial size of the key/value grid;
  then standard multi-head scaled dot-product attention (linear in/out projections over channels).
* :class:`WideFocus`: parallel 3x3 convs with dilations 1, 2, 3, each followed by GELU and dropout, summed, then a
  3x3 conv, GELU and dropout.
* :class:`FCTLayer`: ``x = x + ConvAttention(LN(x))``; ``x = x + WideFocus(LN(x))``.

Memory: attention compares every query position with every key position. With ``N`` positions and stride-2 keys
there are ``N / 2 ** spatial_dims`` keys, so the score matrix has ``N ** 2 / 4`` (2D) or ``N ** 2 / 8`` (3D) entries
per sample and head: at 112 x 112 (the first FCT layer of a 224 x 224 input) that is 12544 x 3136 = 39M floats
(157 MB in float32) per head if materialised. ``torch.nn.functional.scaled_dot_product_attention`` is used, which
on recent PyTorch picks a memory-efficient kernel that does not store the full matrix when it can; the compute stays
O(N^2). Keep 3D patches small (e.g. 64^3 gives 32^3 = 32768 queries at the first layer).

Speed on CPU: PyTorch's CPU flash-attention kernel is slow for heads narrower than 16 channels (PyTorch 2.13, AVX-512
EPYC, two threads, 16384 queries x 4096 keys: two heads of 8 channels 85 ms, the same heads zero-padded to 16 channels
64 ms, one head of 16 channels 32 ms). :func:`padded_attention` pads such heads with zero channels, which leaves every
score and output unchanged (the zeros add nothing to the dot products, and the padded output channels are dropped),
with the scale of the true head width; :class:`ConvAttention` does so when its ``min_head_dim`` is set (by
:func:`custom_nets.inference.speedups.apply`; the plain module computes plain attention). The FCT bundle uses one head
in its 16-wide blocks for the same reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import List

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import Convolution

from custom_nets.blocks.common import check_dropout, check_positive

__all__ = ["ChannelLayerNorm", "ConvAttention", "FCTLayer", "WideFocus", "padded_attention"]

#: narrowest head that PyTorch's CPU flash-attention kernel runs at full speed (see the module docstring): the
#: default of :func:`padded_attention`, and the width :func:`custom_nets.inference.speedups.apply` sets as
#: :attr:`ConvAttention.min_head_dim` for inference
MIN_CPU_HEAD_DIM = 16


def padded_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0, min_head_dim: int = MIN_CPU_HEAD_DIM
) -> torch.Tensor:
    """Scaled dot-product attention ``softmax(q k^T / sqrt(d)) v`` over ``(B, heads, N, d)`` queries and
    ``(B, heads, M, d)`` keys and values -> ``(B, heads, N, d)``.

    On CPU, heads narrower than ``min_head_dim`` are zero-padded to it for the kernel and cut back after: same
    result (the scale stays ``1 / sqrt(d)``), 1.3x faster for ``d = 8``. Elsewhere, and while tracing for export,
    this is plain :func:`torch.nn.functional.scaled_dot_product_attention`.
    """
    if torch.jit.is_tracing() or q.device.type != "cpu" or q.shape[-1] >= min_head_dim:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    head_dim = q.shape[-1]
    pad = [0, min_head_dim - head_dim]
    attended = F.scaled_dot_product_attention(
        F.pad(q, pad), F.pad(k, pad), F.pad(v, pad), dropout_p=dropout_p, scale=head_dim**-0.5
    )
    return attended[..., :head_dim]


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel dimension at every spatial position: ``(B, C, *S)`` -> ``(B, C, *S)``.

    ``y[b, :, p] = (x[b, :, p] - mean) / sqrt(var + eps) * weight + bias`` with the mean and (biased) variance taken
    over the ``C`` channels of position ``p``; ``weight`` and ``bias`` have ``C`` entries. Independent of the spatial
    size. Note that with ``C == 1`` the output is the constant ``bias`` (nothing left to normalise).

    Args:
        num_channels: ``C``.
        eps: added to the variance.
        affine: learn ``weight`` (init 1) and ``bias`` (init 0).
    """

    def __init__(self, num_channels: int, eps: float = 1.0e-5, affine: bool = True) -> None:
        super().__init__()
        check_positive("ChannelLayerNorm", num_channels=num_channels)
        self.norm = nn.LayerNorm(num_channels, eps=eps, elementwise_affine=affine)
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S)`` -> ``(B, C, *S)``."""
        # explicit non-negative permutations (``movedim`` exports to an ONNX Transpose with a negative axis, which
        # ONNX Runtime rejects)
        n = x.dim()
        channels_last = [0] + list(range(2, n)) + [1]
        channels_first = [0, n - 1] + list(range(1, n - 1))
        return self.norm(x.permute(channels_last)).permute(channels_first)


def _depthwise(spatial_dims: int, channels: int, stride: int, bias: bool) -> nn.Module:
    """Depthwise 3x3(x3) conv (``groups = channels``), padding 1: ``n -> ceil(n / stride)``."""
    return Convolution(
        spatial_dims, channels, channels, strides=stride, kernel_size=3, groups=channels, bias=bias, conv_only=True
    )


class ConvAttention(nn.Module):
    """Convolutional multi-head attention of the FCT: ``(B, C, *S)`` -> ``(B, C, *S)``.

    ``q = LN(dwconv_q(x))`` at stride 1, ``k = LN(dwconv_k(x))`` and ``v = LN(dwconv_v(x))`` at stride ``kv_stride``;
    the three maps are flattened to tokens (``N`` queries, ``N / kv_stride ** spatial_dims`` keys), linearly projected
    and split into ``num_heads`` heads of ``C / num_heads`` channels, combined by scaled dot-product attention, merged,
    projected by a linear layer and reshaped back to ``(B, C, *S)``. See the module docstring for the O(N^2) cost.

    Args:
        spatial_dims: 1, 2 or 3.
        channels: ``C``, divisible by ``num_heads``.
        num_heads: attention heads.
        kv_stride: stride of the key/value depthwise convs (2 in the paper).
        attn_dropout: dropout on the attention weights (training only).
        proj_dropout: dropout after the output projection.
        bias: biases in the depthwise convs and the projections.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        num_heads: int,
        kv_stride: int = 2,
        attn_dropout: float = 0.0,
        proj_dropout: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if channels <= 0 or num_heads <= 0 or channels % num_heads != 0:
            raise ValueError(f"channels ({channels}) must be a positive multiple of num_heads ({num_heads}).")
        if kv_stride < 1:
            raise ValueError(f"kv_stride must be >= 1, got {kv_stride}.")
        check_dropout("ConvAttention", attn_dropout=attn_dropout, proj_dropout=proj_dropout)
        self.conv_q = _depthwise(spatial_dims, channels, 1, bias)
        self.conv_k = _depthwise(spatial_dims, channels, kv_stride, bias)
        self.conv_v = _depthwise(spatial_dims, channels, kv_stride, bias)
        self.norm_q = ChannelLayerNorm(channels)
        self.norm_k = ChannelLayerNorm(channels)
        self.norm_v = ChannelLayerNorm(channels)
        self.proj_q = nn.Linear(channels, channels, bias=bias)
        self.proj_k = nn.Linear(channels, channels, bias=bias)
        self.proj_v = nn.Linear(channels, channels, bias=bias)
        self.proj_out = nn.Linear(channels, channels, bias=bias)
        self.dropout = nn.Dropout(proj_dropout)
        self.channels = channels
        self.num_heads = num_heads
        self.kv_stride = kv_stride
        self.attn_dropout = float(attn_dropout)
        # heads narrower than this are zero-padded for the CPU attention kernel (:func:`padded_attention`); 0 (the
        # plain module) computes plain scaled dot-product attention. An inference setting, not in the state_dict:
        # custom_nets.inference.speedups.apply sets it to MIN_CPU_HEAD_DIM
        self.min_head_dim: int = 0

    def _heads(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(B, N, C)`` -> ``(B, heads, N, C / heads)``."""
        b, n = tokens.shape[0], tokens.shape[1]
        return tokens.reshape(b, n, self.num_heads, self.channels // self.num_heads).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S)`` -> ``(B, C, *S)``."""
        q = torch.flatten(self.norm_q(self.conv_q(x)), 2).transpose(1, 2)  # (B, N, C)
        k = torch.flatten(self.norm_k(self.conv_k(x)), 2).transpose(1, 2)  # (B, N_kv, C)
        v = torch.flatten(self.norm_v(self.conv_v(x)), 2).transpose(1, 2)
        q = self._heads(self.proj_q(q))
        k = self._heads(self.proj_k(k))
        v = self._heads(self.proj_v(v))
        p = self.attn_dropout if self.training else 0.0
        attended = padded_attention(q, k, v, p, self.min_head_dim)  # (B, heads, N, C / heads)
        b, n = attended.shape[0], attended.shape[2]
        tokens = self.dropout(self.proj_out(attended.transpose(1, 2).reshape(b, n, self.channels)))
        return tokens.transpose(1, 2).reshape(x.shape)


class WideFocus(nn.Module):
    """Wide-Focus module of the FCT: ``(B, C, *S)`` -> ``(B, out_channels, *S)``.

    ``y = drop(gelu(conv(sum_d drop(gelu(conv3_d(x))))))`` over the dilations ``d`` (1, 2, 3), every conv 3x3 with
    'same' padding; a multi-receptive-field replacement of the transformer MLP.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels; default ``in_channels``.
        dilations: dilation of each parallel branch.
        dropout: dropout after every GELU (0.1 in the reference model).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int | None = None,
        dilations: Sequence[int] = (1, 2, 3),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        out = in_channels if out_channels is None else int(out_channels)
        check_positive("WideFocus", in_channels=in_channels, out_channels=out)
        dilations = tuple(int(d) for d in dilations)
        if len(dilations) == 0 or min(dilations) < 1:
            raise ValueError(f"WideFocus dilations must be positive ints (at least one), got {list(dilations)}.")
        check_dropout("WideFocus", dropout=dropout)
        self.branches = nn.ModuleList(
            [
                Convolution(spatial_dims, in_channels, out, kernel_size=3, dilation=d, bias=True, conv_only=True)
                for d in dilations
            ]
        )
        self.fuse = Convolution(spatial_dims, out, out, kernel_size=3, bias=True, conv_only=True)
        self.dropout = nn.Dropout(dropout)
        self.dilations = dilations

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``."""
        branches: List[torch.Tensor] = []
        for branch in self.branches:
            branches.append(self.dropout(F.gelu(branch(x))))
        summed = torch.stack(branches, dim=0).sum(dim=0)
        return self.dropout(F.gelu(self.fuse(summed)))


class FCTLayer(nn.Module):
    """The FCT layer (the paper's transformer block): attention and Wide-Focus, each pre-normed and residual.

    ``x = x + ConvAttention(LN(x))``, then ``x = x + WideFocus(LN(x))``, with channel LayerNorms.
    ``(B, C, *S)`` -> ``(B, C, *S)``.

    Args:
        spatial_dims: 1, 2 or 3.
        channels: ``C``, divisible by ``num_heads``.
        num_heads: attention heads.
        kv_stride: key/value stride of the attention (2).
        attn_dropout: dropout on the attention weights.
        dropout: dropout inside Wide-Focus and after the attention projection.
    """

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        num_heads: int,
        kv_stride: int = 2,
        attn_dropout: float = 0.0,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.norm1 = ChannelLayerNorm(channels)
        self.attention = ConvAttention(
            spatial_dims, channels, num_heads, kv_stride=kv_stride, attn_dropout=attn_dropout, proj_dropout=dropout
        )
        self.norm2 = ChannelLayerNorm(channels)
        self.wide_focus = WideFocus(spatial_dims, channels, dropout=dropout)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *S)`` -> ``(B, C, *S)``."""
        x = x + self.attention(self.norm1(x))
        return x + self.wide_focus(self.norm2(x))
