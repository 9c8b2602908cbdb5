"""UNet 3+'s hybrid segmentation loss (focal + MS-SSIM + IoU), its CGM-aware deep-supervision wrapper, and a
Dice + BCE alternative, for multi-label (sigmoid per channel) segmentation in 2D or 3D.

References:
    * Huang et al., "UNet 3+", ICASSP 2020 (arXiv 2004.08790), Sec. 2.2: the hybrid loss
      ``l = l_focal + l_ms-ssim + l_iou`` on every (deeply supervised) output, and Sec. 2.3: the classification-guided
      module trained with a (binary) cross-entropy on "is the organ present";
    * Wang, Simoncelli, Bovik, "Multiscale structural similarity for image quality assessment", Asilomar 2003: MS-SSIM
      (5 scales, weights 0.0448, 0.2856, 0.3001, 0.2363, 0.1333, Gaussian window 11 / sigma 1.5);
    * Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017 (arXiv 1708.02002).

Public API:

* :class:`MultiScaleSSIMLoss`: ``1 - MS-SSIM`` per sample and channel (probabilities vs. targets in ``[0, 1]``).
* :class:`IoULoss`: soft Jaccard loss, MONAI's ``DiceLoss(jaccard=True)`` with a sigmoid.
* :class:`~custom_nets.losses.dice_bce.DiceBCELoss` (imported from :mod:`custom_nets.losses.dice_bce`): soft Dice +
  per-channel binary cross-entropy on logits.
* :class:`HybridLoss`: focal (MONAI ``FocalLoss``, sigmoid) + MS-SSIM + IoU, on logits.
* :func:`hybrid_segmentation_loss`: ``"hybrid"`` or ``"dice_bce"`` from one config value.
* :class:`UNet3PlusLoss`: splits the CGM presence head off a stacked UNet 3+ training output (see
  :mod:`custom_nets.nets.unet3plus`), applies the segmentation loss to the other heads (MONAI
  ``DeepSupervisionLoss`` weights) and a presence BCE.

FCT's weighted deep supervision needs no new code: ``StackedDeepSupervisionLoss(loss, weights=[0.57, 0.29, 0.14])``
(final output first).

Why not MONAI's ``DiceCELoss(sigmoid=True)`` for "Dice + BCE": with more than one output channel its CE term is the
*softmax* cross-entropy (BCE is used only for single-channel inputs), which is wrong for overlapping multi-label
classes such as the UW-Madison organs. ``DiceBCELoss`` uses ``BCEWithLogits`` per channel.

Why not MONAI's ``compute_ms_ssim`` as is: it averages over the channels before combining scales (one value per
sample), raises for images smaller than ``(kernel_size - 1) * (n_scales - 1) ** 2`` per side, and raises
``relu(cs)`` to fractional powers, whose gradient is infinite (NaN) when a contrast-structure term is <= 0, which
happens for anti-correlated probability maps. :class:`MultiScaleSSIMLoss` reuses its per-scale
``compute_ssim_and_cs`` but keeps channels apart, limits the scales to what the image supports, and clamps at
``eps`` (see the class).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss, FocalLoss
from monai.metrics.regression import compute_ssim_and_cs
from torch.nn.modules.loss import _Loss

from custom_nets.blocks.common import check_odd_kernel
from custom_nets.blocks.full_scale import gate_logits
from custom_nets.flags import as_flag
from custom_nets.losses.common import check_same_shape
from custom_nets.losses.deep_supervision import StackedDeepSupervisionLoss
from custom_nets.losses.dice_bce import DiceBCELoss

__all__ = [
    "HybridLoss",
    "IoULoss",
    "MS_SSIM_WEIGHTS",
    "MultiScaleSSIMLoss",
    "UNet3PlusLoss",
    "ms_ssim",
    "presence_target",
    "hybrid_segmentation_loss",
]

MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Per-scale exponents of MS-SSIM (Wang et al. 2003), finest scale first."""

_REDUCTIONS = ("mean", "sum", "none")


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


def _scales_and_kernel(spatial: Sequence[int], kernel_size: int, max_scales: int) -> tuple[int, list[int]]:
    """Number of usable scales and the per-dimension window size for images of size ``spatial``.

    The window of each dimension is ``kernel_size``, or the largest odd size that fits if the image is smaller. A
    scale ``s`` (image halved ``s`` times, sizes floored) is usable while every dimension still holds a full window;
    at least one scale is always used.
    """
    kernel = []
    for n in spatial:
        if n < 1:
            raise ValueError(f"MS-SSIM needs non-empty images, got spatial size {list(spatial)}.")
        k = min(kernel_size, n if n % 2 == 1 else n - 1)
        kernel.append(max(k, 1))
    scales = 1
    while scales < max_scales and all((n >> scales) >= k for n, k in zip(spatial, kernel)):
        scales += 1
    return scales, kernel


def ms_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    weights: Sequence[float] = MS_SSIM_WEIGHTS,
    kernel_size: int = 11,
    kernel_sigma: float = 1.5,
    data_range: float = 1.0,
    k1: float = 0.01,
    k2: float = 0.03,
    eps: float = 1.0e-4,
) -> torch.Tensor:
    """Multi-scale SSIM per sample and channel: ``x, y (B, C, *S)`` (2D or 3D) -> ``(B, C)``.

    ``MS-SSIM = l_M ** w_M * prod_{j=1..M} cs_j ** w_j`` (Wang et al. 2003) with ``cs_j`` the mean contrast-structure
    term at scale ``j`` and ``l_M cs_M`` the mean SSIM at the coarsest scale; Gaussian windows, 'valid' filtering, 2x
    average pooling between scales.

    Small images: the number of scales ``M`` is the largest (at most ``len(weights)``) for which the coarsest image
    still holds a full window in every dimension (5 scales need at least ``11 * 16 = 176`` voxels per side with the
    default window; a 64-pixel image uses 3, a 16-pixel one 1), the window shrinks to the largest odd size that fits
    an image smaller than it, and the weights of the scales used are renormalised to sum to 1. So the value stays in
    ``[0, 1]`` (1 for identical images) at any size, but is only the paper's MS-SSIM when all scales fit.

    Terms are clamped at ``eps`` before the fractional powers (a term <= 0, i.e. anti-correlated images, would give
    an infinite gradient); clamped terms contribute no gradient.
    """
    check_same_shape("MS-SSIM", x, y)
    spatial_dims = x.dim() - 2
    if spatial_dims not in (2, 3):
        raise ValueError(f"MS-SSIM supports 2D (B, C, H, W) and 3D (B, C, H, W, D) inputs, got {tuple(x.shape)}.")
    if len(weights) == 0 or min(weights) < 0:
        raise ValueError(f"MS-SSIM weights must be a non-empty sequence of non-negative numbers, got {list(weights)}.")
    n_scales, kernel = _scales_and_kernel(x.shape[2:], int(kernel_size), len(weights))
    w = torch.as_tensor(list(weights)[:n_scales], dtype=torch.float32, device=x.device)
    w = w / w.sum()
    sigma = [float(kernel_sigma)] * spatial_dims
    x = x.float()
    y = y.float()
    terms = []
    for scale in range(n_scales):
        if scale > 0:
            x = F.avg_pool2d(x, 2) if spatial_dims == 2 else F.avg_pool3d(x, 2)
            y = F.avg_pool2d(y, 2) if spatial_dims == 2 else F.avg_pool3d(y, 2)
        ssim_map, cs_map = compute_ssim_and_cs(
            x, y, spatial_dims=spatial_dims, kernel_size=kernel, kernel_sigma=sigma, data_range=data_range, k1=k1, k2=k2
        )
        value = ssim_map if scale == n_scales - 1 else cs_map
        terms.append(torch.flatten(value, 2).mean(dim=2))  # (B, C)
    stacked = torch.clamp(torch.stack(terms, dim=0), min=eps)  # (M, B, C)
    return torch.prod(stacked ** w.view(-1, 1, 1), dim=0)


class MultiScaleSSIMLoss(_Loss):
    """``1 - MS-SSIM`` per sample and channel (:func:`ms_ssim`), 2D or 3D.

    Inputs ``(B, C, *S)`` in ``[0, data_range]``: probabilities (or logits with ``sigmoid=True``) and targets.
    Identical inputs give 0; the loss grows with dissimilarity (at most 1).

    Args:
        sigmoid: apply a sigmoid to ``input`` first.
        weights: per-scale exponents, finest first (their count is the maximum number of scales).
        kernel_size: Gaussian window size (odd).
        kernel_sigma: Gaussian window standard deviation.
        data_range: value range of the inputs.
        eps: floor of every term before the powers.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (``(B, C)``).
    """

    def __init__(
        self,
        sigmoid: bool = False,
        weights: Sequence[float] = MS_SSIM_WEIGHTS,
        kernel_size: int = 11,
        kernel_sigma: float = 1.5,
        data_range: float = 1.0,
        eps: float = 1.0e-4,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}.")
        check_odd_kernel("MultiScaleSSIMLoss", kernel_size)
        self.sigmoid = sigmoid
        self.weights = tuple(float(v) for v in weights)
        self.kernel_size = int(kernel_size)
        self.kernel_sigma = float(kernel_sigma)
        self.data_range = float(data_range)
        self.eps = float(eps)
        self.reduction = reduction

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``input, target (B, C, *S)`` -> scalar (or ``(B, C)`` with ``reduction="none"``)."""
        prob = torch.sigmoid(input) if self.sigmoid else input
        value = ms_ssim(
            prob, target.to(prob.dtype), self.weights, self.kernel_size, self.kernel_sigma, self.data_range,
            eps=self.eps,
        )  # fmt: skip
        return _reduce(1.0 - value, self.reduction)


class IoULoss(DiceLoss):
    """Soft Jaccard (IoU) loss ``1 - |P T| / (|P| + |T| - |P T|)`` per sample and channel, averaged.

    MONAI's ``DiceLoss`` with ``jaccard=True`` (smoothing 1e-5 in numerator and denominator, so an empty target with
    an empty prediction gives 0); ``sigmoid=True`` by default, i.e. ``input`` are logits. Extra keyword arguments go
    to ``DiceLoss`` (``batch``, ``include_background``, ``reduction``, ...).
    """

    def __init__(self, sigmoid: bool = True, **kwargs) -> None:
        kwargs.pop("jaccard", None)
        super().__init__(sigmoid=sigmoid, jaccard=True, **kwargs)


class HybridLoss(_Loss):
    """UNet 3+ hybrid loss on logits: ``w_f * focal + w_s * (1 - MS-SSIM) + w_i * IoU``, sigmoid per channel.

    ``input`` logits and ``target`` in ``[0, 1]``, both ``(B, C, *S)`` (2D or 3D). The focal term is MONAI's
    ``FocalLoss(use_softmax=False)`` (sigmoid focal loss, mean over all elements), the MS-SSIM and IoU terms act on
    ``sigmoid(input)`` per sample and channel.

    Args:
        focal_weight, ssim_weight, iou_weight: term weights (1 each in the paper).
        gamma: focal-loss focusing parameter.
        alpha: optional focal-loss weight of the positive class.
        ssim_kwargs: extra arguments of :class:`MultiScaleSSIMLoss` (``kernel_size``, ``weights``, ...).
    """

    def __init__(
        self,
        focal_weight: float = 1.0,
        ssim_weight: float = 1.0,
        iou_weight: float = 1.0,
        gamma: float = 2.0,
        alpha: float | None = None,
        ssim_kwargs: dict | None = None,
    ) -> None:
        super().__init__()
        self.focal = FocalLoss(gamma=gamma, alpha=alpha, use_softmax=False)
        self.ssim = MultiScaleSSIMLoss(sigmoid=True, **(ssim_kwargs or {}))
        self.iou = IoULoss(sigmoid=True)
        self.focal_weight = float(focal_weight)
        self.ssim_weight = float(ssim_weight)
        self.iou_weight = float(iou_weight)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_same_shape("HybridLoss", input, target)
        target = target.to(input.dtype)
        return (
            self.focal_weight * self.focal(input, target)
            + self.ssim_weight * self.ssim(input, target)
            + self.iou_weight * self.iou(input, target)
        )


def hybrid_segmentation_loss(kind: str = "hybrid", **kwargs) -> _Loss:
    """A per-output segmentation loss chosen by one config value.

    ``"hybrid"``: :class:`HybridLoss` (UNet 3+: focal + MS-SSIM + IoU); ``"dice_bce"``: :class:`DiceBCELoss`.
    ``kwargs`` go to the chosen class. In a bundle config::

        "seg_loss": {"_target_": "custom_nets.losses.hybrid.hybrid_segmentation_loss", "kind": "@loss_kind"}
    """
    kinds = {"hybrid": HybridLoss, "dice_bce": DiceBCELoss}
    key = str(kind).lower()
    if key not in kinds:
        raise ValueError(f"loss kind must be one of {sorted(kinds)}, got {kind!r}.")
    return kinds[key](**kwargs)


def presence_target(target: torch.Tensor) -> torch.Tensor:
    """Per-sample, per-class presence: ``(B, C, *S)`` masks -> ``(B, C)`` float, 1 where the mask is non-empty."""
    return (torch.flatten(target, 2) > 0).any(dim=2).to(torch.float32)


class UNet3PlusLoss(_Loss):
    """Loss for UNet 3+ outputs: segmentation loss over the (deeply supervised) heads + CGM presence BCE.

    Accepts the layouts of :class:`custom_nets.nets.unet3plus.UNet3Plus`:

    * ``(B, C, *S)`` (eval output, or training without DS/CGM): ``seg_loss(input, target)``;
    * ``(B, H, C, *S)`` stacked training output. With ``cgm=True`` the **last** head holds the presence logits
      broadcast over space: it is split off, reduced to ``(B, C)`` by a spatial mean (exact, the map is constant) and
      scored with ``binary_cross_entropy_with_logits`` against :func:`presence_target` (a class is present if its
      mask is non-empty); the remaining heads (index 0 the final output) go to MONAI's ``DeepSupervisionLoss``
      through :class:`StackedDeepSupervisionLoss`.

    ``total = seg + cgm_weight * bce``. ``target`` is ``(B, C, *S)`` multi-label masks (one channel per class).

    Args:
        seg_loss: loss applied to every segmentation head; default :class:`HybridLoss`.
        cgm: the stacked input ends with a presence head (the network was built with ``cgm=True``).
        cgm_weight: weight of the presence BCE.
        weights: per-head weights of the segmentation heads, final first; ``None`` uses ``weight_mode``.
        weight_mode: MONAI ``DeepSupervisionLoss`` mode when ``weights`` is None (``"same"``: every head 1, as in
            the paper).
        gate_heads: score ``logit(sigmoid(head) * sigmoid(presence))`` (:func:`~custom_nets.blocks.full_scale.
            gate_logits`) instead of the raw heads, so the segmentation loss also trains the CGM (differentiable
            soft gating); default off: heads and presence are trained separately, as in the paper.
    """

    def __init__(
        self,
        seg_loss: _Loss | None = None,
        cgm: bool = True,
        cgm_weight: float = 1.0,
        weights: Sequence[float] | None = None,
        weight_mode: str = "same",
        gate_heads: bool = False,
    ) -> None:
        super().__init__()
        if cgm_weight < 0:
            raise ValueError(f"cgm_weight must be non-negative, got {cgm_weight}.")
        self.seg_loss = HybridLoss() if seg_loss is None else seg_loss
        self.deep_supervision = StackedDeepSupervisionLoss(self.seg_loss, weights=weights, weight_mode=weight_mode)
        self.cgm = as_flag(cgm, "UNet3PlusLoss cgm")
        self.cgm_weight = float(cgm_weight)
        self.gate_heads = as_flag(gate_heads, "UNet3PlusLoss gate_heads")

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``input (B, C, *S)`` or ``(B, H, C, *S)`` logits, ``target (B, C, *S)`` -> scalar."""
        if input.dim() == target.dim():
            return self.seg_loss(input, target)
        if input.dim() != target.dim() + 1:
            raise ValueError(
                f"prediction shape {tuple(input.shape)} fits neither target shape {tuple(target.shape)} nor a stacked "
                "UNet 3+ training output (B, heads, C, *spatial)."
            )
        if input.shape[2] != target.shape[1]:
            raise ValueError(
                f"UNet3PlusLoss needs one target channel per output channel (multi-label masks), got prediction "
                f"{tuple(input.shape)} and target {tuple(target.shape)}."
            )
        if not self.cgm:
            return self.deep_supervision(input, target)
        if input.shape[1] < 2:
            raise ValueError(
                f"cgm=True expects at least two stacked heads (segmentation + presence), got {tuple(input.shape)}; "
                "build the network with cgm=True or the loss with cgm=False."
            )
        presence = torch.flatten(input[:, -1], 2).mean(dim=2)  # (B, C)
        heads = input[:, :-1]
        if self.gate_heads:
            heads = torch.stack([gate_logits(h, presence) for h in torch.unbind(heads, dim=1)], dim=1)
        seg = self.deep_supervision(heads, target)
        bce = F.binary_cross_entropy_with_logits(presence, presence_target(target).to(presence.dtype))
        return seg + self.cgm_weight * bce
