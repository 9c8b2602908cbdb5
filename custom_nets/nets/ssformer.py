"""SSFormer: a Mix Transformer encoder with the progressive locality decoder, for 2D or 3D segmentation.

Reference: Wang, Huang, Tang, Meng, Su, Song, "Stepwise Feature Fusion: Local Guides Global", MICCAI 2022
(arXiv 2203.03635); reference code Qiming-Huang/ssformer (``mit_PLD_b2.py`` = SSFormer-S, ``mit_PLD_b4.py`` =
SSFormer-L). Trained there at 352 x 352 with AdamW (lr 1e-4, weight decay 0.01) and BCE + Dice; mean Dice on the
PraNet test sets, S / L: Kvasir 0.925 / 0.917, CVC-ClinicDB 0.916 / 0.906, CVC-ColonDB 0.772 / 0.802, ETIS
0.767 / 0.796, CVC-300 0.887 / 0.895.

Architecture:

* encoder: SegFormer's Mix Transformer (:class:`~custom_nets.blocks.mix_transformer.MixTransformer`), MiT-B2 for
  ``variant="S"`` (depths 3/4/6/3), MiT-B4 for ``"L"`` (3/8/27/3); widths 64/128/320/512, features ``c1 .. c4`` at
  strides 4, 8, 16, 32;
* progressive locality decoder (width ``decoder_channels``, 256):

  - Local Emphasis (:class:`LocalEmphasis`), one per stage at its own resolution: conv3 (no bias), ReLU, conv3 (no
    bias), ReLU, to ``decoder_channels``; stages 2-4 then resized (bi/trilinear) to the 1/4 grid of ``c1``;
  - Stepwise Feature Aggregation, deepest first: ``f = CBR(cat[LE4, LE3])``, ``f = CBR(cat[f, LE2])``,
    ``f = CBR(cat[f, LE1])`` with ``CBR`` = 1x1 conv (no bias), BatchNorm, ReLU (:class:`ConvBNReLU`);
  - head: dropout (0.1), 1x1 conv to ``out_channels`` logits at 1/4 resolution;

* the logits are resized (bi/trilinear) to the input's size. No deep supervision.

Output convention: ``(B, out_channels, *S)`` logits, in training and eval mode.

Deliberate differences from the reference code (see ``../shared/REFERENCES.md``, "SSFormer"):

* no ``linear_fuse`` layer (built and optimised there but never used): with 3 input channels and 1 class the network
  has 29,309,889 parameters (S) and 65,956,289 (L), the reference's counts without it (checked by
  ``tests/nets/test_ssformer.py``); about 19.9 (S) and 34.5 (L) GMACs at 352 x 352;
* one interpolation convention, ``align_corners=False`` everywhere (the reference uses ``True`` for its final x4
  upsampling only), and the output always has the input's size (the reference's only for multiples of 32; here any
  other size is refused with a clear error);
* no weights are loaded inside ``__init__`` from a fixed path: :meth:`SSFormer.load_pretrained` (or the
  ``pretrained_checkpoint`` argument) loads a user-supplied ImageNet MiT or SSFormer checkpoint **strictly** (the
  reference loads with ``strict=False``, which silently ignores misnamed weights);
* generic over ``spatial_dims``: a 3D SSFormer uses 3D patch embeddings, reductions and depthwise convs.

Parameter names are the reference's (``backbone.patch_embed1.proj.weight``, ``backbone.block1.0.attn.q.weight``,
``decode_head.linear_c4.proj.0.weight``, ``decode_head.linear_fuse34.conv.weight``, ``decode_head.linear_pred.weight``,
...), so its checkpoints and SegFormer's ImageNet MiT checkpoints load as they are.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import List

import torch
import torch.nn as nn
from monai.networks.layers import Conv, Norm

from custom_nets.blocks.common import LINEAR_MODE, check_dropout, check_positive, resize_to
from custom_nets.blocks.mix_transformer import MixTransformer
from custom_nets.nets.utils import SegmentationNetwork

__all__ = [
    "ConvBNReLU",
    "LocalEmphasis",
    "PretrainedCheckpointError",
    "ProgressiveLocalityDecoder",
    "SSFormer",
    "SSFORMER_VARIANTS",
]

#: encoder depths of the two published variants: S = MiT-B2, L = MiT-B4
SSFORMER_VARIANTS = {"S": (3, 4, 6, 3), "L": (3, 8, 27, 3)}
#: keys of the reference's checkpoints that this network deliberately lacks: its never-used ``linear_fuse`` layer
_UNUSED_REFERENCE_PREFIXES = ("decode_head.linear_fuse.",)
#: keys of SegFormer's ImageNet MiT checkpoints outside the encoder: the 1000-class classification head
_MIT_CLASSIFIER_PREFIXES = ("head.",)


class PretrainedCheckpointError(ValueError):
    """A user-supplied checkpoint cannot be read or does not fit the network; the message names the file and every
    missing, unexpected or wrongly shaped key (a bundle run prints it as one line, see
    :func:`custom_nets.bundle.report_dataset_errors_briefly`)."""


class LocalEmphasis(nn.Module):
    """Local Emphasis of SSFormer: conv3 (no bias), ReLU, conv3 (no bias), ReLU.

    ``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``. The convs are ``proj.0`` and ``proj.2`` as in the reference.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        conv = Conv[Conv.CONV, spatial_dims]
        self.proj = nn.Sequential(
            conv(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.ReLU(inplace=True),
            conv(out_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class ConvBNReLU(nn.Module):
    """1x1 conv (no bias), BatchNorm, ReLU: ``(B, in_channels, *S)`` -> ``(B, out_channels, *S)``.

    Written out (rather than MONAI's ``Convolution``) so that the parameters are named ``conv`` and ``bn`` as in the
    reference's mmcv ``ConvModule``.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = Conv[Conv.CONV, spatial_dims](in_channels, out_channels, kernel_size=1, bias=False)
        self.bn = Norm[Norm.BATCH, spatial_dims](out_channels)
        self.activate = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activate(self.bn(self.conv(x)))


class ProgressiveLocalityDecoder(nn.Module):
    """The progressive locality decoder of SSFormer (module ``decode_head`` of the reference).

    ``forward(c1, c2, c3, c4)`` with ``c_i (B, in_channels[i], *S_i)``, ``S_1`` the finest grid ->
    ``(B, out_channels, *S_1)`` logits. See the module docstring for the structure.

    Args:
        spatial_dims: 2 or 3.
        in_channels: widths of the four encoder features.
        out_channels: classes.
        channels: decoder width (256).
        dropout: dropout before the 1x1 prediction conv (0.1).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: Sequence[int],
        out_channels: int,
        channels: int = 256,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.linear_c4 = LocalEmphasis(spatial_dims, in_channels[3], channels)
        self.linear_c3 = LocalEmphasis(spatial_dims, in_channels[2], channels)
        self.linear_c2 = LocalEmphasis(spatial_dims, in_channels[1], channels)
        self.linear_c1 = LocalEmphasis(spatial_dims, in_channels[0], channels)
        self.linear_fuse34 = ConvBNReLU(spatial_dims, 2 * channels, channels)
        self.linear_fuse2 = ConvBNReLU(spatial_dims, 2 * channels, channels)
        self.linear_fuse1 = ConvBNReLU(spatial_dims, 2 * channels, channels)
        self.dropout = nn.Dropout(dropout)
        self.linear_pred = Conv[Conv.CONV, spatial_dims](channels, out_channels, kernel_size=1)
        self.interp_mode: str = LINEAR_MODE[spatial_dims]

    def _to(self, x: torch.Tensor, size: List[int]) -> torch.Tensor:
        return resize_to(x, size, self.interp_mode)

    def forward(self, c1: torch.Tensor, c2: torch.Tensor, c3: torch.Tensor, c4: torch.Tensor) -> torch.Tensor:
        size: List[int] = list(c1.shape[2:])
        le4 = self._to(self.linear_c4(c4), size)
        le3 = self._to(self.linear_c3(c3), size)
        f = self.linear_fuse34(torch.cat([le4, le3], dim=1))
        f = self.linear_fuse2(torch.cat([f, self._to(self.linear_c2(c2), size)], dim=1))
        f = self.linear_fuse1(torch.cat([f, self.linear_c1(c1)], dim=1))
        return self.linear_pred(self.dropout(f))


class SSFormer(SegmentationNetwork):
    """SSFormer (Wang et al., MICCAI 2022): MiT encoder + progressive locality decoder, for 2D or 3D segmentation.

    See the module docstring for the structure and the differences from the reference code.

    Shapes: ``(B, in_channels, *S)`` with every size divisible by 32 (checked; a clear ``ValueError`` otherwise) ->
    ``(B, out_channels, *S)`` logits.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels (3 for RGB; ImageNet MiT weights need 3).
        out_channels: output channels (one sigmoid channel for a binary mask).
        variant: ``"S"`` (MiT-B2 encoder) or ``"L"`` (MiT-B4).
        depths: blocks per encoder stage, overriding the variant's (e.g. ``(1, 1, 1, 1)`` for tests).
        embed_dims: encoder stage widths (64, 128, 320, 512).
        num_heads: attention heads per stage (1, 2, 5, 8).
        sr_ratios: key/value spatial reduction per stage (8, 4, 2, 1).
        decoder_channels: width of the decoder (256).
        drop_path_rate: stochastic depth of the last encoder block (0.1).
        dropout: dropout before the prediction conv (0.1).
        pretrained_checkpoint: path of an ImageNet MiT or SSFormer checkpoint to load strictly after building
            (:meth:`load_pretrained`); ``None`` (default) keeps the random initialisation.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        out_channels: int = 1,
        variant: str = "S",
        depths: Sequence[int] | None = None,
        embed_dims: Sequence[int] = (64, 128, 320, 512),
        num_heads: Sequence[int] = (1, 2, 5, 8),
        sr_ratios: Sequence[int] = (8, 4, 2, 1),
        decoder_channels: int = 256,
        drop_path_rate: float = 0.1,
        dropout: float = 0.1,
        pretrained_checkpoint: str | os.PathLike | None = None,
    ) -> None:
        super().__init__(spatial_dims, in_channels, out_channels, supported_dims=(2, 3))
        if str(variant).upper() not in SSFORMER_VARIANTS:
            raise ValueError(f"SSFormer variant must be one of {sorted(SSFORMER_VARIANTS)}, got {variant!r}.")
        check_positive("SSFormer", decoder_channels=decoder_channels)
        check_dropout("SSFormer", dropout=dropout)
        self.variant = str(variant).upper()
        self.backbone = MixTransformer(
            spatial_dims,
            in_channels,
            embed_dims=embed_dims,
            depths=SSFORMER_VARIANTS[self.variant] if depths is None else depths,
            num_heads=num_heads,
            sr_ratios=sr_ratios,
            drop_path_rate=drop_path_rate,
        )
        self.decode_head = ProgressiveLocalityDecoder(
            spatial_dims, self.backbone.embed_dims, out_channels, channels=decoder_channels, dropout=dropout
        )
        self.size_divisor = 32
        if pretrained_checkpoint is not None:
            self.load_pretrained(pretrained_checkpoint)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *S)`` -> ``(B, out_channels, *S)`` logits."""
        self.check_input(x)
        c = self.backbone(x)
        logits = self.decode_head(c[0], c[1], c[2], c[3])
        return resize_to(logits, list(x.shape[2:]), self.interp_mode)

    def load_pretrained(self, checkpoint: str | os.PathLike | Mapping[str, torch.Tensor]) -> "SSFormer":
        """Load an ImageNet MiT (encoder only) or a full SSFormer checkpoint **strictly**; returns ``self``.

        ``checkpoint`` is a file written by ``torch.save`` (read with ``weights_only=True`` on the CPU) or a state
        dict. A dict holding the weights under ``"state_dict"`` or ``"model"`` is unwrapped, and a ``"module."``
        prefix (DataParallel / DDP) is removed. Then, by the names it holds:

        * no ``backbone.`` / ``decode_head.`` keys: an ImageNet MiT checkpoint of SegFormer
          (``patch_embed1.proj.weight``, ``block1.0.attn.q.weight``, ...): its classifier (``head.*``) is dropped and
          the rest must match ``self.backbone`` exactly; the decoder keeps its initialisation;
        * otherwise an SSFormer checkpoint (this class's or the reference repository's ``mit_PLD_b2`` / ``mit_PLD_b4``):
          the reference's unused ``decode_head.linear_fuse.*`` is dropped and the rest must match the whole network.

        Raises:
            PretrainedCheckpointError: (a ``ValueError``) one line naming the checkpoint and every missing,
                unexpected and wrongly shaped key (or why the file cannot be read). Nothing is loaded then.
        """
        source = "the given state dict" if isinstance(checkpoint, Mapping) else str(checkpoint)
        state = _read_state_dict(checkpoint, source)
        if not any(k.startswith(("backbone.", "decode_head.")) for k in state):
            state = {k: v for k, v in state.items() if not k.startswith(_MIT_CLASSIFIER_PREFIXES)}
            target: nn.Module = self.backbone
            kind = "an ImageNet MiT encoder"
        else:
            state = {k: v for k, v in state.items() if not k.startswith(_UNUSED_REFERENCE_PREFIXES)}
            target = self
            kind = "an SSFormer"
        expected = target.state_dict()
        missing = [k for k in expected if k not in state]
        unexpected = [k for k in state if k not in expected]
        mismatched = [
            f"{k} {list(state[k].shape)} vs {list(v.shape)}"
            for k, v in expected.items()
            if k in state and tuple(state[k].shape) != tuple(v.shape)
        ]
        if missing or unexpected or mismatched:
            problems = [
                f"{label} ({len(keys)}): {_preview(keys)}"
                for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched))
                if keys
            ]
            raise PretrainedCheckpointError(
                f"{source}: read as {kind} checkpoint, it does not fit SSFormer(variant={self.variant!r}, spatial_dims="
                f"{self.spatial_dims}, in_channels={self.in_channels}, out_channels={self.out_channels}); "
                + "; ".join(problems)
            )
        target.load_state_dict(state, strict=True)
        return self


def _preview(keys: List[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _read_state_dict(checkpoint: str | os.PathLike | Mapping[str, torch.Tensor], source: str) -> dict:
    """The tensors of ``checkpoint`` by name: unwrapped from ``state_dict`` / ``model``, without ``module.``."""
    if isinstance(checkpoint, Mapping):
        state = checkpoint
    else:
        if not os.path.isfile(checkpoint):
            raise PretrainedCheckpointError(f"{source}: pretrained checkpoint not found (no such file).")
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception as error:  # a pickle that is not a plain state dict, a truncated file, ...
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise PretrainedCheckpointError(
                f"{source}: cannot read the checkpoint as a PyTorch state dict ({first_line})."
            ) from None
    for wrapper in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
            state = state[wrapper]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedCheckpointError(f"{source}: not a state dict (a mapping of parameter names to tensors).")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
