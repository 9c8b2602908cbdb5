r"""Additive attention gate for U-Net skip connections.

Reference: Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018 (arXiv 1804.03999),
Eq. (1)-(2) and Fig. 2:

.. math::

    q = \psi^T \sigma_1(W_x^T x + W_g^T g + b_g) + b_\psi, \qquad \alpha = \sigma_2(q), \qquad
    \hat x = \alpha x

with :math:`\sigma_1` a ReLU and :math:`\sigma_2` a sigmoid. :math:`W_x`, :math:`W_g` and :math:`\psi` are 1x1
convolutions (linear transformations over channels).

Differences from the paper's figure: the paper down-samples the skip to the gating grid (strided :math:`W_x`) and
resamples :math:`\alpha` back up; here the projected gating signal is resampled (bi/trilinear, ``align_corners=False``)
to the skip's grid instead, so :math:`\alpha` is computed directly at the skip resolution and the gating signal may
have any (typically coarser) size. Each projection (:math:`W_x`, :math:`W_g`, :math:`\psi`) has its own norm layer.

Shapes: ``skip (B, Cs, *S)``, ``gating (B, Cg, *S')`` -> ``(B, Cs, *S)``; coefficients ``(B, 1, *S)`` in (0, 1).

MONAI's ``monai.networks.nets.attentionunet.AttentionBlock`` implements the same idea but requires the gating signal
at the skip's resolution and has no way to return the coefficients; it is not used.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from monai.networks.layers.factories import split_args
from monai.networks.layers.utils import get_act_layer

from custom_nets.blocks.common import LINEAR_MODE, ConvNormAct, check_positive, check_spatial_dims, has_norm, resize_to

__all__ = ["AttentionGate"]


def _norm_for_channels(norm: str | tuple | None, channels: int) -> str | tuple | None:
    r"""``norm`` unchanged, except that a group norm gets ``num_groups = gcd(num_groups, channels)``.

    Needed for the 1-channel :math:`\psi` projection: ``("group", {"num_groups": 8})`` cannot normalise one channel.
    """
    if not has_norm(norm):
        return None
    name, args = split_args(norm)
    if isinstance(name, str) and name.lower() == "group" and "num_groups" in args:
        args = dict(args)
        args["num_groups"] = math.gcd(int(args["num_groups"]), channels)
        return (name, args)
    return norm


class AttentionGate(nn.Module):
    r"""Additive attention gate (Oktay et al. 2018): ``skip * sigmoid(psi(relu(W_x(skip) + up(W_g(gating)))))``.

    Args:
        spatial_dims: 1, 2 or 3.
        skip_channels: channels ``Cs`` of the skip connection (the gated tensor).
        gating_channels: channels ``Cg`` of the gating signal (coarser decoder features).
        inter_channels: width of the intermediate space where the two projections are added.
        norm: MONAI norm name/tuple applied after each 1x1 projection (one norm layer per projection), or ``None``.
        act: activation between the sum and :math:`\psi` (ReLU in the paper).

    Inputs: ``skip (B, Cs, *S)`` and ``gating (B, Cg, *S')`` of any spatial size ``S'`` (usually ``S / 2``).
    Output: ``(B, Cs, *S)``, the gated skip. :meth:`coefficients` returns the attention map ``(B, 1, *S)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        skip_channels: int,
        gating_channels: int,
        inter_channels: int,
        norm: str | tuple | None = "batch",
        act: str | tuple = "relu",
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims, "AttentionGate")
        check_positive("AttentionGate", skip=skip_channels, gating=gating_channels, inter=inter_channels)
        # 1x1 projections, each with its own norm (no conv bias in front of it)
        self.w_x = ConvNormAct(spatial_dims, skip_channels, inter_channels, kernel_size=1, norm=norm, act=None)
        self.w_g = ConvNormAct(spatial_dims, gating_channels, inter_channels, kernel_size=1, norm=norm, act=None)
        self.act = get_act_layer(name=act)
        psi_norm = _norm_for_channels(norm, 1)
        self.psi = ConvNormAct(spatial_dims, inter_channels, 1, kernel_size=1, norm=psi_norm, act=None)
        self.interp_mode: str = LINEAR_MODE[spatial_dims]
        self.spatial_dims = spatial_dims
        self.skip_channels = skip_channels
        self.gating_channels = gating_channels
        self.inter_channels = inter_channels

    def coefficients(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        """Attention coefficients ``alpha`` in (0, 1), shape ``(B, 1, *skip.shape[2:])``."""
        x = self.w_x(skip)
        g = resize_to(self.w_g(gating), list(x.shape[2:]), self.interp_mode)
        return torch.sigmoid(self.psi(self.act(x + g)))

    def forward(self, skip: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        """``skip (B, Cs, *S)``, ``gating (B, Cg, *S')`` -> gated skip ``(B, Cs, *S)``."""
        return skip * self.coefficients(skip, gating)
