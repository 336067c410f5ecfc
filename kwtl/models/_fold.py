"""Inference-only copies of a network with eval-mode BatchNorm folded into the convolutions.

In eval mode a BatchNorm after a convolution is a per-channel affine map, so it can be
merged into the convolution's weights and bias: one pass over the activations less per
layer. Where a ReLU is followed by a max-pool, the two are swapped (``max`` and ``ReLU``
commute), so the ReLU runs on a quarter of the values. Two layers that oneDNN runs slowly on
channels-last tensors are replaced by equivalents built on faster kernels: 2×2 max-pools
(:class:`ChannelsLastMaxPool2d`) and convolutions with one output channel, such as FCRN's logit
layer (:class:`SingleOutputConv2d`). On this project's CPU the bf16 forward of FCRN-32
(batch 8, 256²) takes 99 ms in eval mode, 91 ms folded and 81 ms with the two layers
(``benchmarks/bench_layers.py``, ``benchmarks/RESULTS.md``). The result is the eval-mode
output up to floating-point rounding.

Two of these layers also train faster on the CPU (:func:`use_training_layers`, used by
``FCRNSegmenter`` for the network it builds): :class:`SingleOutputConv2d` and
:class:`Stride2ConvTranspose2d` compute their fp32 backward passes on channels-last tensors as
matrix products, where oneDNN's backward kernels for these shapes are slow.
"""

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

__all__ = [
    "fold_batchnorm",
    "ChannelsLastMaxPool2d",
    "SingleOutputConv2d",
    "Stride2ConvTranspose2d",
    "use_training_layers",
]

_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def _is_channels_last_on_cpu(x):
    # measured on CPU (oneDNN) only; cuDNN has its own kernels for these layers
    return (
        x.device.type == "cpu"
        and x.dim() == 4
        and x.is_contiguous(memory_format=torch.channels_last)
    )


class ChannelsLastMaxPool2d(nn.MaxPool2d):
    """``MaxPool2d(2, 2)`` computed as two element-wise maxima on a channels-last tensor.

    PyTorch's channels-last max-pool kernel is slow on narrow, large feature maps (on this
    project's CPU, 4.0 ms against 2.4 ms here for 8×32×256² bf16, and far slower when the CPU
    is shared); two ``torch.maximum`` calls on strided views of the NHWC layout read the
    input once, contiguously. Other memory
    formats and devices other than the CPU use the ordinary kernel. Built by
    :func:`fold_batchnorm` for inference-only copies.

    Examples
    --------
    >>> import torch
    >>> x = torch.randn(2, 3, 6, 5).contiguous(memory_format=torch.channels_last)
    >>> bool(torch.equal(ChannelsLastMaxPool2d()(x), torch.nn.MaxPool2d(2, 2)(x)))
    True
    """

    def __init__(self):
        super().__init__(kernel_size=2, stride=2)

    @staticmethod
    def supports(pool):
        """Whether ``pool`` is a plain 2×2, stride-2 max-pool that this class reproduces."""

        def pair(v):
            return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

        return (
            type(pool) is nn.MaxPool2d
            and pair(pool.kernel_size) == (2, 2)
            and pair(pool.stride) == (2, 2)
            and pair(pool.padding) == (0, 0)
            and pair(pool.dilation) == (1, 1)
            and not pool.ceil_mode
            and not pool.return_indices
        )

    def forward(self, x):
        if not _is_channels_last_on_cpu(x) or x.shape[1] == 1 or min(x.shape[2:]) < 2:
            return super().forward(x)  # (too small inputs: the ordinary kernel's error)
        n, c, h, w = x.shape
        # floor mode: an odd last row/column is dropped; splitting a dimension is always a view
        nhwc = x.permute(0, 2, 3, 1)[:, : h - h % 2, : w - w % 2]
        pairs = nhwc.view(n, h // 2, 2, w // 2, 2, c)
        rows = torch.maximum(pairs[:, :, 0], pairs[:, :, 1])
        return torch.maximum(rows[:, :, :, 0], rows[:, :, :, 1]).permute(0, 3, 1, 2)


class SingleOutputConv2d(nn.Conv2d):
    """A stride-1, zero-padded "same" ``Conv2d`` with one output channel, as one matrix product.

    oneDNN computes a convolution with a single output channel at a small fraction of its
    usual speed. Here the ``k×k`` taps are one product ``(k·k, C) @ (C, N·H·W)`` on the
    channels-last input, and the output is the sum of the ``k·k`` shifted tap planes,
    accumulated in float32. Under bf16 autocast the tap planes are rounded to bf16 (as a bf16
    convolution rounds its output) and the output is float32. Other memory formats and
    devices other than the CPU use the ordinary kernel. Built by :func:`fold_batchnorm` for
    inference-only copies.

    Examples
    --------
    >>> import torch
    >>> conv = torch.nn.Conv2d(4, 1, 3, padding=1)
    >>> fast = SingleOutputConv2d.from_conv(conv)
    >>> x = torch.randn(2, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    >>> bool(torch.allclose(fast(x), conv(x), atol=1e-5))
    True
    """

    @staticmethod
    def supports(conv):
        """Whether ``conv`` is a one-output, stride-1, zero-padded "same" convolution."""
        kh, kw = conv.kernel_size
        return (
            type(conv) is nn.Conv2d
            and conv.out_channels == 1
            and conv.groups == 1
            and conv.stride == (1, 1)
            and conv.dilation == (1, 1)
            and conv.padding_mode == "zeros"
            and kh % 2 == 1
            and kw % 2 == 1
            and tuple(conv.padding) == (kh // 2, kw // 2)
        )

    @classmethod
    def from_conv(cls, conv):
        """A copy of ``conv`` (which must satisfy :meth:`supports`) sharing its parameters."""
        if not cls.supports(conv):
            raise ValueError(f"not a one-output 'same' convolution: {conv!r}")
        new = cls(
            conv.in_channels,
            1,
            conv.kernel_size,
            padding=conv.padding,
            bias=conv.bias is not None,
            device="meta",
        )
        new.weight, new.bias = conv.weight, conv.bias
        return new.train(conv.training)

    def forward(self, x):
        if not _is_channels_last_on_cpu(x):
            return super().forward(x)
        if _wants_fast_backward(x, self.weight, self.bias):
            return _SingleOutputConvFunction.apply(x, self.weight, self.bias, self)
        return self._taps_forward(x, self.weight, self.bias)

    def _taps_forward(self, x, weight, bias):
        n, c, h, w = x.shape
        kh, kw = self.kernel_size
        ph, pw = kh // 2, kw // 2
        # (k·k, C) @ (C, N·H·W): the N·H·W x C matrix is the channels-last input, transposed
        weight = weight.reshape(c, kh * kw).t()
        if not torch.is_autocast_enabled(x.device.type):
            weight = weight.to(x.dtype)
        taps = torch.matmul(weight, x.permute(0, 2, 3, 1).reshape(n * h * w, c).t())
        taps = taps.view(kh, kw, n, h, w)
        dtype = torch.promote_types(taps.dtype, torch.float32)
        out = taps[ph, pw].to(dtype, copy=True)
        for i, j, dst, src in _shifts(kh, kw, h, w):
            if (i, j) != (ph, pw):  # the centre tap is already in
                out[(slice(None),) + dst] += taps[(i, j, slice(None)) + src]
        if bias is not None:
            out += bias.to(dtype)
        return out.unsqueeze(1)


def _shifts(kh, kw, h, w):
    """For each tap ``(i, j)`` of a zero-padded "same" ``kh×kw`` convolution: the output and
    input windows ``(dst, src)`` with ``out[dst] += w[i, j] · x[src]`` (empty shifts skipped)."""
    ph, pw = kh // 2, kw // 2
    for i in range(kh):
        dy = i - ph
        for j in range(kw):
            dx = j - pw
            if abs(dy) >= h or abs(dx) >= w:
                continue  # a shift past the edge adds 0
            # out[y, x] += tap[y + dy, x + dx] where both are inside the image
            yield (
                i,
                j,
                (slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx))),
                (slice(max(0, dy), h + min(0, dy)), slice(max(0, dx), w + min(0, dx))),
            )


def _wants_fast_backward(x, *params):
    """Training on the CPU without autocast: the layers below replace oneDNN's backward
    kernels (float64 too, so that ``torch.autograd.gradcheck`` can check them)."""
    return (
        torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and x.dtype in (torch.float32, torch.float64)
        and (x.requires_grad or any(p is not None and p.requires_grad for p in params))
    )


class _SingleOutputConvFunction(torch.autograd.Function):
    """Forward: :meth:`SingleOutputConv2d._taps_forward`. Backward: both gradients from one
    ``(N·H·W, k·k)`` matrix of shifted output gradients ``G`` (``G[(y, x), (i, j)] =
    g[y - i + kh//2, x - j + kw//2]``, zero outside): ``grad_x = G @ W`` and
    ``grad_W = Xᵀ @ G``, two matrix products instead of oneDNN's slow one-channel kernel."""

    @staticmethod
    def forward(ctx, x, weight, bias, layer):
        ctx.save_for_backward(x, weight)
        ctx.kernel_size, ctx.has_bias = layer.kernel_size, bias is not None
        with torch.no_grad():
            return layer._taps_forward(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        n, c, h, w = x.shape
        kh, kw = ctx.kernel_size
        g = grad.reshape(n, h, w)
        shifted = g.new_zeros((n, h, w, kh, kw))
        for i, j, dst, src in _shifts(kh, kw, h, w):
            # out[dst] used x[src] with weight (i, j): x[src] gets g[dst]
            shifted[(slice(None),) + src + (i, j)] = g[(slice(None),) + dst]
        shifted = shifted.view(n * h * w, kh * kw)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (shifted @ weight.reshape(c, kh * kw).t()).view(n, h, w, c).permute(0, 3, 1, 2)
        if ctx.needs_input_grad[1]:
            rows = x.permute(0, 2, 3, 1).reshape(n * h * w, c)
            # (k·k, N·H·W) @ (N·H·W, C), not the transpose: MKL runs this shape ~15x faster
            grad_w = (shifted.t() @ rows).t().reshape(1, c, kh, kw)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum().reshape(1)
        return grad_x, grad_w, grad_b, None


class Stride2ConvTranspose2d(nn.ConvTranspose2d):
    """A 2×2, stride-2 ``ConvTranspose2d`` whose backward pass is two matrix products.

    Each output 2×2 block is ``W`` applied to one input pixel, so on a channels-last tensor
    the layer is ``(N·H·W, C_in) @ (C_in, 4·C_out)`` followed by a pixel shuffle. The forward
    pass keeps oneDNN's kernel (faster here than the shuffle); in fp32 CPU training the
    backward pass uses the matrix form: ``grad_x = G @ Wᵀ`` and ``grad_W = Xᵀ @ G`` with
    ``G`` the output gradient shuffled back into ``(N·H·W, 4·C_out)`` — 1.5–2× faster than
    oneDNN's backward kernels for FCRN's three transposed convolutions on this project's CPU
    (``benchmarks/RESULTS.md``). Same gradients up to floating-point rounding. Other memory
    formats, devices, autocast and inference use the ordinary layer.

    Examples
    --------
    >>> import torch
    >>> deconv = torch.nn.ConvTranspose2d(4, 3, 2, stride=2)
    >>> fast = Stride2ConvTranspose2d.from_conv(deconv)
    >>> x = torch.randn(2, 4, 5, 5).contiguous(memory_format=torch.channels_last)
    >>> bool(torch.allclose(fast(x), deconv(x), atol=1e-6))
    True
    """

    @staticmethod
    def supports(conv):
        """Whether ``conv`` is a plain 2×2, stride-2 transposed convolution."""
        return (
            type(conv) is nn.ConvTranspose2d
            and conv.kernel_size == (2, 2)
            and conv.stride == (2, 2)
            and conv.padding == (0, 0)
            and conv.output_padding == (0, 0)
            and conv.dilation == (1, 1)
            and conv.groups == 1
            and conv.padding_mode == "zeros"
        )

    @classmethod
    def from_conv(cls, conv):
        """A copy of ``conv`` (which must satisfy :meth:`supports`) sharing its parameters."""
        if not cls.supports(conv):
            raise ValueError(f"not a 2x2, stride-2 transposed convolution: {conv!r}")
        new = cls(
            conv.in_channels,
            conv.out_channels,
            2,
            stride=2,
            bias=conv.bias is not None,
            device="meta",
        )
        new.weight, new.bias = conv.weight, conv.bias
        return new.train(conv.training)

    def forward(self, x, output_size=None):
        if (
            output_size is None
            and _is_channels_last_on_cpu(x)
            and _wants_fast_backward(x, self.weight, self.bias)
        ):
            return _Stride2DeconvFunction.apply(x, self.weight, self.bias)
        return super().forward(x, output_size)


class _Stride2DeconvFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.conv_transpose2d(x, weight, bias, stride=2)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        n, c_in, h, w = x.shape
        c_out = weight.shape[1]
        # (N, C_out, 2H, 2W) → rows (n, y, x), columns (dy, dx, C_out)
        blocks = (
            grad.permute(0, 2, 3, 1)
            .reshape(n, h, 2, w, 2, c_out)
            .permute(0, 1, 3, 2, 4, 5)
            .reshape(n * h * w, 4 * c_out)
        )
        matrix = weight.permute(0, 2, 3, 1).reshape(c_in, 4 * c_out)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (blocks @ matrix.t()).view(n, h, w, c_in).permute(0, 3, 1, 2)
        if ctx.needs_input_grad[1]:
            rows = x.permute(0, 2, 3, 1).reshape(n * h * w, c_in)
            grad_w = (rows.t() @ blocks).view(c_in, 2, 2, c_out).permute(0, 3, 1, 2)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(dim=(0, 2, 3))
        return grad_x, grad_w, grad_b


def use_training_layers(module):
    """Swap in, in place, the layers with faster CPU training passes: one-output "same"
    convolutions become :class:`SingleOutputConv2d` and 2×2 stride-2 transposed convolutions
    :class:`Stride2ConvTranspose2d`. They share the original parameters (same names, same
    state dict) and compute the same function; the faster paths run only on channels-last
    fp32 CPU tensors. Returns ``module``."""
    for name, child in list(module.named_children()):
        use_training_layers(child)
        if isinstance(child, nn.Conv2d) and SingleOutputConv2d.supports(child):
            setattr(module, name, SingleOutputConv2d.from_conv(child))
        elif isinstance(child, nn.ConvTranspose2d) and Stride2ConvTranspose2d.supports(child):
            setattr(module, name, Stride2ConvTranspose2d.from_conv(child))
    return module


def _folded_conv(conv, bn):
    """A convolution with bias equal to ``bn(conv(x))`` for ``bn`` in eval mode, or None."""
    if conv.groups != 1 or not bn.track_running_stats or bn.running_mean is None:
        return None
    if conv.out_channels != bn.num_features:
        return None
    with torch.no_grad():
        # torch's own fusion formula, evaluated in float64 and rounded once: bit-identical
        # to the previous hand-written fold on the FCRN (14 pairs checked), more exact than fp32
        weight, bias = fuse_conv_bn_weights(
            conv.weight.double(),
            None if conv.bias is None else conv.bias.double(),
            bn.running_mean.double(),
            bn.running_var.double(),
            bn.eps,
            bn.weight.double() if bn.affine else None,
            bn.bias.double() if bn.affine else None,
            transpose=isinstance(conv, nn.ConvTranspose2d),
        )
        folded = copy.deepcopy(conv)
        weight = weight.detach().to(conv.weight.dtype)
        folded.weight = nn.Parameter(
            weight.contiguous(memory_format=_format(conv.weight)), requires_grad=False
        )
        folded.bias = nn.Parameter(bias.detach().to(conv.weight.dtype), requires_grad=False)
    return folded


def _format(tensor):
    if (
        tensor.dim() == 4
        and tensor.is_contiguous(memory_format=torch.channels_last)
        and not tensor.is_contiguous()
    ):
        return torch.channels_last
    return torch.contiguous_format


def _fold_sequential(seq):
    layers = list(seq)
    out, i = [], 0
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, _CONVS) and isinstance(nxt, nn.BatchNorm2d):
            folded = _folded_conv(layer, nxt)
            if folded is not None:
                out.append(folded)
                i += 2
                continue
        out.append(layer)
        i += 1
    for j in range(len(out) - 1):  # ReLU then max-pool: pool first (they commute)
        if isinstance(out[j], nn.ReLU) and isinstance(out[j + 1], nn.MaxPool2d):
            out[j], out[j + 1] = out[j + 1], nn.ReLU(inplace=True)
    return nn.Sequential(*out)


def _fold_children(module):
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Sequential):
            _fold_children(child)
            setattr(module, name, _fold_sequential(child))
        else:
            _fold_children(child)


def _faster_layer(layer):
    if isinstance(layer, nn.MaxPool2d) and ChannelsLastMaxPool2d.supports(layer):
        return ChannelsLastMaxPool2d()
    if isinstance(layer, nn.Conv2d) and SingleOutputConv2d.supports(layer):
        return SingleOutputConv2d.from_conv(layer)
    return layer


def _replace_layers(module):
    for name, child in list(module.named_children()):
        _replace_layers(child)
        setattr(module, name, _faster_layer(child))


def fold_batchnorm(module, *, replace_layers=True):
    """An inference-only copy of ``module`` with eval-mode BatchNorm folded into convolutions.

    Inside every ``nn.Sequential``, a ``Conv2d``/``ConvTranspose2d`` (``groups=1``) directly
    followed by a ``BatchNorm2d`` with running statistics becomes one convolution with bias,
    and ``ReLU, MaxPool2d`` becomes ``MaxPool2d, ReLU``. Then 2×2 max-pools become
    :class:`ChannelsLastMaxPool2d` and one-output "same" convolutions become
    :class:`SingleOutputConv2d` (same results, faster on channels-last input). Other layers
    are kept as they are, so any network works (unfoldable parts are simply not folded). The
    copy is in eval mode, its parameters do not require gradients, and ``module`` is not
    modified.

    Parameters
    ----------
    module : torch.nn.Module
    replace_layers : bool, default=True
        Also swap in :class:`ChannelsLastMaxPool2d` and :class:`SingleOutputConv2d`. ``False``
        folds only (for comparisons, or to keep PyTorch's own kernels).

    Returns
    -------
    folded : torch.nn.Module
        Same class and extra methods as ``module`` (e.g. :meth:`FCRN.features`); its eval-mode
        output equals ``module.eval()``'s up to floating-point rounding.

    Examples
    --------
    >>> import torch
    >>> from kwtl.models import FCRN
    >>> from kwtl.models._fold import fold_batchnorm
    >>> net = FCRN(width=4, init="default").eval()
    >>> folded = fold_batchnorm(net)
    >>> sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    0
    >>> x = torch.randn(2, 1, 16, 16)
    >>> bool(torch.allclose(folded(x), net(x), atol=1e-4))
    True
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    folded = copy.deepcopy(module).eval()
    if isinstance(folded, nn.Sequential):
        folded = _fold_sequential(folded)
    _fold_children(folded)
    if replace_layers:
        _replace_layers(folded)
        folded = _faster_layer(folded)
    return folded.eval().requires_grad_(False)
