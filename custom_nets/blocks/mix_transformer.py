"""The Mix Transformer (MiT) encoder of SegFormer, generic over ``spatial_dims`` (2 or 3).

Reference: Xie, Wang, Yu, Anandkumar, Alvarez, Luo, "SegFormer: Simple and Efficient Design for Semantic
Segmentation with Transformers", NeurIPS 2021 (arXiv 2105.15203), Sec. 3.1. SSFormer (:mod:`custom_nets.nets.ssformer`)
uses MiT-B2 and MiT-B4 as its encoder.

* :class:`OverlapPatchEmbed`: a strided conv whose kernel overlaps its neighbours (7x7 stride 4 padding 3 for the first
  stage, 3x3 stride 2 padding 1 after), then LayerNorm over the channels of every token.
* :class:`EfficientSelfAttention`: multi-head attention whose keys and values come from a spatially reduced copy of the
  tokens (conv of kernel = stride = ``sr_ratio``, then LayerNorm): ``N`` queries against ``N / sr_ratio **
  spatial_dims`` keys, computed with :func:`torch.nn.functional.scaled_dot_product_attention` (no score matrix is
  materialised when PyTorch has a fused kernel for the device).
* :class:`MixFFN`: ``Linear(C, rC)``, depthwise 3x3(x3) conv on the token grid (the positional information of MiT:
  there is no positional embedding), GELU, ``Linear(rC, C)``.
* :class:`MiTBlock`: ``x = x + DropPath(Attn(LN(x)))``; ``x = x + DropPath(MixFFN(LN(x)))``; :class:`MiTStageBlocks`
  applies a stage's blocks in turn.
* :class:`MixTransformer`: four stages (patch embedding, blocks, LayerNorm) giving feature maps at strides 4, 8, 16, 32.

Module and parameter names are those of SegFormer's ``mix_transformer.py`` (``patch_embed1.proj``, ``block1.0.attn.q``,
``block1.0.attn.kv``, ``block1.0.attn.sr``, ``block1.0.mlp.dwconv.dwconv``, ``norm1`` ...), so an ImageNet MiT
checkpoint loads without renaming (:meth:`custom_nets.nets.SSFormer.load_pretrained`). MONAI has no spatial-reduction
attention or Mix-FFN (its ``SABlock`` / ``MLPBlock`` are plain ViT parts), hence these blocks; stochastic depth is
MONAI's :class:`~monai.networks.layers.DropPath`.

Tokens are ``(B, N, C)`` with ``N`` the positions of the stage's grid in row-major order; ``spatial`` is that grid's
size (a ``List[int]`` of ``spatial_dims`` entries). Dropout inside the blocks is not offered: MiT trains without it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import List, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.layers import Conv, DropPath

from custom_nets.blocks.common import check_dropout, check_positive, check_spatial_dims

__all__ = [
    "EfficientSelfAttention",
    "MiTBlock",
    "MiTStageBlocks",
    "MixFFN",
    "MixTransformer",
    "OverlapPatchEmbed",
    "tokens_to_map",
]

#: LayerNorm epsilon of MiT's blocks and stage norms (its patch-embedding and reduction norms use PyTorch's 1e-5)
MIT_NORM_EPS = 1.0e-6


def tokens_to_map(tokens: torch.Tensor, spatial: List[int]) -> torch.Tensor:
    """``(B, N, C)`` tokens -> ``(B, C, *spatial)`` map (``N = prod(spatial)``)."""
    return tokens.transpose(1, 2).reshape([tokens.shape[0], tokens.shape[2]] + spatial)


class OverlapPatchEmbed(nn.Module):
    """Overlapping patch embedding: conv (kernel ``patch_size``, ``stride``, padding ``patch_size // 2``), LayerNorm.

    ``(B, in_channels, *S)`` -> ``(tokens (B, N, embed_dim), spatial)`` with ``spatial = S / stride`` (for sizes
    divisible by ``stride``) and ``N = prod(spatial)``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        embed_dim: output channels.
        patch_size: odd conv kernel size (7 for the first stage, 3 after).
        stride: conv stride (4 for the first stage, 2 after).
    """

    def __init__(self, spatial_dims: int, in_channels: int, embed_dim: int, patch_size: int, stride: int) -> None:
        super().__init__()
        self.proj = Conv[Conv.CONV, spatial_dims](
            in_channels, embed_dim, kernel_size=patch_size, stride=stride, padding=patch_size // 2
        )
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, List[int]]:
        """``(B, in_channels, *S)`` -> ``((B, N, embed_dim), spatial)``."""
        x = self.proj(x)
        spatial: List[int] = list(x.shape[2:])
        return self.norm(x.flatten(2).transpose(1, 2)), spatial


class EfficientSelfAttention(nn.Module):
    """Multi-head self-attention with spatial reduction of the keys and values: ``(B, N, C)`` -> ``(B, N, C)``.

    ``q = Linear(x)``; with ``sr_ratio > 1`` the tokens are put back on their grid, reduced by a conv of kernel = stride
    = ``sr_ratio`` and LayerNorm-ed before ``k, v = Linear(.)`` (one ``kv`` layer, as in MiT); the heads are combined
    by scaled dot-product attention (scale ``1 / sqrt(C / num_heads)``) and projected by ``proj``. The grid sizes must
    be divisible by ``sr_ratio``.

    Args:
        spatial_dims: 2 or 3.
        dim: ``C``, divisible by ``num_heads``.
        num_heads: attention heads.
        sr_ratio: spatial reduction of keys and values (8, 4, 2, 1 over MiT's stages).
        qkv_bias: biases in ``q`` and ``kv``.
    """

    def __init__(self, spatial_dims: int, dim: int, num_heads: int, sr_ratio: int = 1, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim <= 0 or num_heads <= 0 or dim % num_heads != 0:
            raise ValueError(f"attention width {dim} must be a positive multiple of its number of heads {num_heads}.")
        if sr_ratio < 1:
            raise ValueError(f"sr_ratio must be >= 1, got {sr_ratio}.")
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.reduce = sr_ratio > 1
        # no parameters (and no state_dict entries, as in MiT) when there is no reduction
        conv = Conv[Conv.CONV, spatial_dims]
        self.sr: nn.Module = conv(dim, dim, kernel_size=sr_ratio, stride=sr_ratio) if self.reduce else nn.Identity()
        self.norm: nn.Module = nn.LayerNorm(dim) if self.reduce else nn.Identity()
        self.dim = dim
        self.num_heads = num_heads
        self.sr_ratio = sr_ratio

    def forward(self, x: torch.Tensor, spatial: List[int]) -> torch.Tensor:
        """``x (B, N, C)`` on a grid of size ``spatial`` -> ``(B, N, C)``."""
        b, n = x.shape[0], x.shape[1]
        head_dim = self.dim // self.num_heads
        q = self.q(x).reshape(b, n, self.num_heads, head_dim).transpose(1, 2)  # (B, heads, N, d)
        source = x
        if self.reduce:
            source = self.norm(self.sr(tokens_to_map(x, spatial)).flatten(2).transpose(1, 2))
        kv = self.kv(source).reshape(b, -1, 2, self.num_heads, head_dim).permute(2, 0, 3, 1, 4)  # (2, B, heads, M, d)
        attended = F.scaled_dot_product_attention(q, kv[0], kv[1])
        return self.proj(attended.transpose(1, 2).reshape(b, n, self.dim))


class _DepthwiseConv(nn.Module):
    """Depthwise 3x3(x3) conv with bias on tokens: ``(B, N, C)`` on grid ``spatial`` -> ``(B, N, C)``.

    A module of its own only so that the weight is named ``dwconv.dwconv.weight`` as in MiT checkpoints.
    """

    def __init__(self, spatial_dims: int, channels: int) -> None:
        super().__init__()
        self.dwconv = Conv[Conv.CONV, spatial_dims](channels, channels, kernel_size=3, padding=1, groups=channels)

    def forward(self, x: torch.Tensor, spatial: List[int]) -> torch.Tensor:
        return self.dwconv(tokens_to_map(x, spatial)).flatten(2).transpose(1, 2)


class MixFFN(nn.Module):
    """Mix-FFN: ``Linear(C, hidden)``, depthwise 3x3(x3) conv on the grid, GELU, ``Linear(hidden, C)``.

    ``x (B, N, C)`` on grid ``spatial`` -> ``(B, N, C)``.
    """

    def __init__(self, spatial_dims: int, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.dwconv = _DepthwiseConv(spatial_dims, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, dim)

    def forward(self, x: torch.Tensor, spatial: List[int]) -> torch.Tensor:
        return self.fc2(F.gelu(self.dwconv(self.fc1(x), spatial)))


class MiTBlock(nn.Module):
    """MiT transformer block: ``x + DropPath(Attn(LN(x)))``, then ``x + DropPath(MixFFN(LN(x)))``.

    ``x (B, N, C)`` on grid ``spatial`` -> ``(B, N, C)``.

    Args:
        spatial_dims: 2 or 3.
        dim: ``C``.
        num_heads: attention heads.
        mlp_ratio: hidden width of the Mix-FFN over ``C`` (4).
        sr_ratio: spatial reduction of the attention's keys and values.
        drop_path: stochastic-depth probability of both residual branches.
    """

    def __init__(
        self,
        spatial_dims: int,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        sr_ratio: int = 1,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=MIT_NORM_EPS)
        self.attn = EfficientSelfAttention(spatial_dims, dim, num_heads, sr_ratio=sr_ratio)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=MIT_NORM_EPS)
        self.mlp = MixFFN(spatial_dims, dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, spatial: List[int]) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), spatial))
        return x + self.drop_path(self.mlp(self.norm2(x), spatial))


class MiTStageBlocks(nn.Sequential):
    """The :class:`MiTBlock` s of one stage, applied in turn on the stage's token grid: ``x (B, N, C)`` on grid
    ``spatial`` -> ``(B, N, C)``.

    The blocks are named ``0``, ``1``, ... (``nn.Sequential``), as in MiT's ``block1.0``, ``block1.1`` ...
    """

    def forward(self, x: torch.Tensor, spatial: List[int]) -> torch.Tensor:
        for block in self:
            x = block(x, spatial)
        return x


class MixTransformer(nn.Module):
    """Mix Transformer encoder (SegFormer's MiT) with four stages, for 2D or 3D inputs.

    Stage ``i`` (1..4): overlapping patch embedding (7x7 stride 4 for stage 1, 3x3 stride 2 after), ``depths[i]``
    :class:`MiTBlock` s of width ``embed_dims[i]``, LayerNorm. Stochastic depth rises linearly from 0 to
    ``drop_path_rate`` over all blocks. MiT-B2: depths ``(3, 4, 6, 3)``; MiT-B4: ``(3, 8, 27, 3)``; both with widths
    ``(64, 128, 320, 512)``, heads ``(1, 2, 5, 8)`` and reductions ``(8, 4, 2, 1)``.

    Shapes: ``(B, in_channels, *S)`` with every size divisible by 32 (stride 32 and the stage-1 reduction) ->
    ``[c1, c2, c3, c4]`` with ``c_i`` of shape ``(B, embed_dims[i], *S / 2 ** (i + 1))``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        embed_dims: the four stage widths.
        depths: blocks per stage (at least 1 each).
        num_heads: attention heads per stage.
        sr_ratios: key/value spatial reduction per stage.
        mlp_ratio: Mix-FFN hidden width over the stage width.
        drop_path_rate: stochastic depth of the last block.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int = 3,
        embed_dims: Sequence[int] = (64, 128, 320, 512),
        depths: Sequence[int] = (3, 4, 6, 3),
        num_heads: Sequence[int] = (1, 2, 5, 8),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.1,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, "MixTransformer", (2, 3))
        settings = {"embed_dims": embed_dims, "depths": depths, "num_heads": num_heads, "sr_ratios": sr_ratios}
        for name, values in settings.items():
            if len(values) != 4 or any(int(v) < 1 for v in values):
                raise ValueError(
                    f"MixTransformer {name} must be four positive ints (one per stage), got {list(values)}."
                )
        check_positive("MixTransformer", in_channels=in_channels)
        check_dropout("MixTransformer", drop_path_rate=drop_path_rate)
        dims = [int(d) for d in embed_dims]
        rates = torch.linspace(0, drop_path_rate, int(sum(depths)), device="cpu").tolist()
        starts = [int(sum(depths[:i])) for i in range(4)]
        inputs = [in_channels] + dims[:3]

        def embed(i: int) -> OverlapPatchEmbed:
            return OverlapPatchEmbed(spatial_dims, inputs[i], dims[i], 7 if i == 0 else 3, 4 if i == 0 else 2)

        def blocks(i: int) -> MiTStageBlocks:
            return MiTStageBlocks(
                *[
                    MiTBlock(
                        spatial_dims, dims[i], int(num_heads[i]), mlp_ratio, int(sr_ratios[i]), rates[starts[i] + j]
                    )
                    for j in range(int(depths[i]))
                ]
            )

        # four named stages (not a list of stages) so that parameter names are MiT's: patch_embed1, block1, norm1, ...
        self.patch_embed1, self.block1, self.norm1 = embed(0), blocks(0), nn.LayerNorm(dims[0], eps=MIT_NORM_EPS)
        self.patch_embed2, self.block2, self.norm2 = embed(1), blocks(1), nn.LayerNorm(dims[1], eps=MIT_NORM_EPS)
        self.patch_embed3, self.block3, self.norm3 = embed(2), blocks(2), nn.LayerNorm(dims[2], eps=MIT_NORM_EPS)
        self.patch_embed4, self.block4, self.norm4 = embed(3), blocks(3), nn.LayerNorm(dims[3], eps=MIT_NORM_EPS)
        self.embed_dims = dims
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        """``(B, in_channels, *S)`` -> ``[c1, c2, c3, c4]`` at strides 4, 8, 16, 32."""
        # stage by stage: patch embedding of the previous feature map, the stage's blocks, its norm, back to a map
        features: List[torch.Tensor] = []
        tokens, spatial = self.patch_embed1(x)
        features.append(tokens_to_map(self.norm1(self.block1(tokens, spatial)), spatial))
        tokens, spatial = self.patch_embed2(features[-1])
        features.append(tokens_to_map(self.norm2(self.block2(tokens, spatial)), spatial))
        tokens, spatial = self.patch_embed3(features[-1])
        features.append(tokens_to_map(self.norm3(self.block3(tokens, spatial)), spatial))
        tokens, spatial = self.patch_embed4(features[-1])
        features.append(tokens_to_map(self.norm4(self.block4(tokens, spatial)), spatial))
        return features


def _init_weights(module: nn.Module) -> None:
    """MiT's initialisation: truncated normal (std 0.02) linear weights, He-normal (fan-out) convs, zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, (nn.Conv2d, nn.Conv3d)):
        fan_out = math.prod(module.kernel_size) * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        if module.bias is not None:
            nn.init.zeros_(module.bias)
