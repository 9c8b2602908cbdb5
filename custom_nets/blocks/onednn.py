"""Inference-time convolutions that always take PyTorch's oneDNN (MKLDNN) CPU kernel.

PyTorch picks the CPU kernel of a float32 ``Conv2d``/``Conv3d`` with a size heuristic
(``ConvParams::use_mkldnn``): with batch 1, a kernel of at most 3 and ``N * C * D * H <= 20480`` (``N * C * H * W``
in 2D) it falls back to the native im2col + GEMM kernel (``slow_conv3d_forward`` / ``_slow_conv2d_forward``). At the
bundles' ROI sizes that heuristic hits real layers (the 4-channel first conv of a 64^3 BraTS patch, every 64-channel
conv at 16^3, every 16-channel conv at 32^3, ...), where the native kernel is 1.5x to 17x slower than oneDNN on this
CPU (one thread, PyTorch 2.13): e.g. ``Conv3d(4 -> 16)`` on 64^3 91 ms -> 15 ms, ``Conv3d(16 -> 16)`` on 32^3
46 ms -> 2.7 ms.

:class:`OneDNNConv2d` / :class:`OneDNNConv3d` are ``nn.Conv2d`` / ``nn.Conv3d`` with the same parameters, buffers and
``state_dict`` keys whose forward calls ``torch.mkldnn_convolution`` (the kernel PyTorch itself uses above the
threshold) when no autograd graph is recorded (``torch.no_grad`` / ``torch.inference_mode``) on a float32 CPU tensor.
Everything else (training, gradients enabled, other devices or dtypes, TorchScript, tracing / ONNX export,
``torch.compile``, ``torch.backends.mkldnn`` disabled, non-zero padding modes, string padding) runs the ordinary
``nn.ConvNd`` forward, so training is untouched. The two kernels compute the same convolution; they differ only in
float rounding (summation order).

:func:`use_onednn_convolutions` switches the plain ``nn.Conv2d``/``nn.Conv3d`` modules of a network to these classes
in place (by changing their class, as ``torch.nn.utils.parametrize`` does), and back with ``enabled=False``. The
networks themselves stay plain: :func:`custom_nets.inference.speedups.apply` makes this switch for inference.
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["OneDNNConv2d", "OneDNNConv3d", "use_onednn_convolutions", "onednn_applicable"]


def _register_flop_formula() -> None:
    """Count ``aten.mkldnn_convolution`` in ``torch.utils.flop_counter.FlopCounterMode`` exactly like
    ``aten.convolution`` (same formula, ``2 * N * C_out * prod(out spatial) * C_in / groups * prod(kernel)``): the
    counter only knows the ops the dispatcher reaches through ``aten.convolution``, and the same convolution must
    count the same FLOPs whichever kernel runs it."""
    try:
        from torch.utils import flop_counter
    except ImportError:  # pragma: no cover - very old torch
        return
    target = torch.ops.aten.mkldnn_convolution
    if target in flop_counter.flop_registry or target.default in flop_counter.flop_registry:
        return

    @flop_counter.register_flop_formula(target)
    def _mkldnn_conv_flop(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:  # noqa: ANN001
        return flop_counter.conv_flop_count(x_shape, w_shape, out_shape, transposed=False)


_register_flop_formula()


def onednn_applicable(conv: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``conv(x)`` may run ``torch.mkldnn_convolution`` (see the module docstring for the conditions)."""
    if torch.is_grad_enabled() or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return False
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        return False
    weight = conv.weight
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and weight.device.type == "cpu"
        and x.layout == torch.strided
        and x.dim() == weight.dim()
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
    )


def _weight_in(conv: nn.Module, fmt: torch.memory_format) -> torch.Tensor:
    """``conv.weight`` in memory format ``fmt``. A channels-last copy is cached on the module (a plain attribute, not in
    the ``state_dict``) and remade whenever the weight changes (its storage or version counter: ``load_state_dict``,
    an optimizer step): a channels-last input then costs no weight reorder per call (UNet 3+ 2D: 1.4x), while the
    parameter itself keeps the default layout."""
    weight = conv.weight
    if fmt == torch.contiguous_format or weight.is_contiguous(memory_format=fmt):
        return weight.contiguous(memory_format=fmt)
    key = (weight.data_ptr(), weight._version, weight.dtype, weight.device, fmt)
    cached = getattr(conv, "_onednn_weight_cache", None)
    if cached is None or cached[0] != key:
        cached = (key, weight.detach().contiguous(memory_format=fmt))
        conv._onednn_weight_cache = cached
    return cached[1]


def _mkldnn_conv(conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``torch.mkldnn_convolution`` with the memory-format choice of PyTorch's own dispatch (channels-last when the
    input or the weight is channels-last), or always channels-last when the module's ``channels_last`` attribute is
    set (:func:`use_onednn_convolutions`): the output is then channels-last even after an op that returned the default
    layout (a ``cat`` or an interpolation), as it would be with channels-last weights."""
    weight = conv.weight
    cl = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
    use_cl = (
        conv.__dict__.get("channels_last", False)
        or (x.is_contiguous(memory_format=cl) and not x.is_contiguous())
        or (weight.is_contiguous(memory_format=cl) and not weight.is_contiguous())
    )
    fmt = cl if use_cl else torch.contiguous_format
    return torch.mkldnn_convolution(
        x.contiguous(memory_format=fmt),
        _weight_in(conv, fmt),
        conv.bias,
        conv.padding,
        conv.stride,
        conv.dilation,
        conv.groups,
    )


class _OneDNNForward:
    """The forward shared by :class:`OneDNNConv2d` and :class:`OneDNNConv3d` (mixed in before ``nn.ConvNd``)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 (nn.ConvNd's argument name)
        if torch.jit.is_scripting():
            return self._conv_forward(input, self.weight, self.bias)
        return self._eager_forward(input)

    @torch.jit.unused
    def _eager_forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002
        if onednn_applicable(self, input):
            return _mkldnn_conv(self, input)
        return self._conv_forward(input, self.weight, self.bias)


class OneDNNConv2d(_OneDNNForward, nn.Conv2d):
    """``nn.Conv2d`` that always uses the oneDNN kernel for inference on CPU (see the module docstring)."""


class OneDNNConv3d(_OneDNNForward, nn.Conv3d):
    """``nn.Conv3d`` that always uses the oneDNN kernel for inference on CPU (see the module docstring)."""


_SWAP = {nn.Conv2d: OneDNNConv2d, nn.Conv3d: OneDNNConv3d}
_UNSWAP = {v: k for k, v in _SWAP.items()}


def use_onednn_convolutions(module: nn.Module, enabled: bool = True, channels_last: bool = False) -> nn.Module:
    """Turn every plain ``nn.Conv2d``/``nn.Conv3d`` in ``module`` into :class:`OneDNNConv2d`/:class:`OneDNNConv3d`
    (or back with ``enabled=False``), in place; parameters, buffers, hooks and ``state_dict`` keys are unchanged.
    With ``channels_last`` the oneDNN convolutions compute in channels-last layout (a cached channels-last copy of the
    weight; the parameter keeps its layout). Subclasses of the conv classes and transposed convs are left alone.
    Returns ``module``."""
    table = _SWAP if enabled else _UNSWAP
    for m in module.modules():
        new_cls = table.get(type(m))
        if new_cls is not None:
            m.__class__ = new_cls
            m.__dict__.pop("_onednn_weight_cache", None)
            m.__dict__.pop("channels_last", None)
            if enabled and channels_last:
                m.channels_last = True
    return module
