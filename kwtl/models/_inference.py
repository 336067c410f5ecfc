"""Full-image inference with bounded memory, in either test-time BatchNorm mode.

``bn_mode="running"`` is ordinary eval mode. ``bn_mode="batch"`` normalises every
BatchNorm layer with the statistics of *all* images being predicted, which is what the
authors' code did under PyTorch 1.3.1 (the whole test set in one batch). When the
images do not fit in one batch, the statistics are pooled layer by layer: the statistics of
layer k are accumulated over all images with layers 1..k-1 already fixed, so the result does not
depend on how images are batched (up to floating-point summation order) and memory stays bounded.
"""

import contextlib
import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..utils import normalize_uint8
from ._fold import fold_batchnorm

__all__ = [
    "predict_logit_maps",
    "forward_patches",
    "forward_tiled",
    "mc_dropout_mean_proba",
    "pooled_batchnorm_statistics",
]

_MULTIPLE = 8  # three 2x2 max-pools
#: Tile overlap of :func:`forward_tiled`: FCRN's receptive field reaches 23 pixels from an
#: output pixel (three 3x3 convolutions at strides 1, 2, 4, one at stride 8, the last 3x3
#: convolution at stride 1; the transposed 2x2 convolutions add nothing), rounded up to a
#: multiple of 8 so that every tile starts on the max-pool grid of the whole image.
DEFAULT_TILE_MARGIN = 32
DEFAULT_TILE_SIZE = 512


class _StopForward(Exception):
    pass


def _pad_amounts(shape):
    h, w = shape
    return (-h) % _MULTIPLE, (-w) % _MULTIPLE


def _to_input(batch_uint8, device, channels_last):
    x = normalize_uint8(torch.from_numpy(np.ascontiguousarray(batch_uint8)).to(device))
    x = x.unsqueeze(1)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _padded_input(images, device, channels_last):
    """Stack same-shape images, pad (reflect) to a multiple of 8."""
    x = _to_input(np.stack(images), device, channels_last=False)
    ph, pw = _pad_amounts(images[0].shape)
    if ph or pw:
        mode = "reflect" if min(images[0].shape) > max(ph, pw) else "replicate"
        x = F.pad(x, (0, pw, 0, ph), mode=mode)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _batches_by_shape(images, max_pixels):
    """Index batches of same-shape images with at most ``max_pixels`` pixels (≥ 1 image)."""
    order = {}
    for i, im in enumerate(images):
        order.setdefault(im.shape, []).append(i)
    for shape, idx in order.items():
        per = max(1, int(max_pixels) // int(np.prod(shape)))
        for s in range(0, len(idx), per):
            yield idx[s : s + per]


def _autocast(device, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def forward_patches(module, patches, *, device="cpu", dtype=None, channels_last=False):
    """Logits of a batch of same-size uint8 patches, module used as it is (no mode change).

    Parameters
    ----------
    module : torch.nn.Module
    patches : ndarray of shape (B, H, W), dtype uint8
        H and W must be divisible by 8.
    device, dtype, channels_last
        Device, autocast dtype (None = fp32) and memory format.

    Returns
    -------
    logits : torch.Tensor of shape (B, H, W), float32, on ``device``
    """
    x = _to_input(patches, device, channels_last)
    with torch.no_grad(), _autocast(device, dtype):
        out = module(x)
    return out.float()[:, 0]


def forward_tiled(
    forward,
    module,
    images,
    *,
    tile_size=DEFAULT_TILE_SIZE,
    margin=DEFAULT_TILE_MARGIN,
    device="cpu",
    dtype=None,
    channels_last=False,
    **kwargs,
):
    """Whole-image maps of a patch-wise ``forward``, tile by tile with overlapping margins.

    The images are padded (reflect) at the bottom/right to a multiple of 8 and cut into
    tiles of ``tile_size`` x ``tile_size`` output pixels; each tile is computed from its input
    region grown by ``margin`` pixels on every side (clipped at the image border) and only
    its core is kept. Tiles start at multiples of 8, so the max-pool grid is the whole
    image's; with ``margin`` at least the network's receptive-field radius the result equals
    one forward pass over the whole padded image (up to floating-point rounding), while memory
    is bounded by the tile size whatever the image size.

    Parameters
    ----------
    forward : callable
        ``forward(module, batch_uint8 (k, h, w), device=, dtype=, channels_last=, **kwargs)``
        -> tensor (k, h, w), e.g. :func:`forward_patches` or :func:`mc_dropout_mean_proba`.
    module : torch.nn.Module
    images : ndarray of shape (k, H, W), dtype uint8
        Same-shape images, computed together (one batch of k per tile).
    tile_size : int, default=512
        Output pixels per tile side (rounded up to a multiple of 8).
    margin : int, default=32
        Overlap on each side (rounded up to a multiple of 8).
    device, dtype, channels_last, **kwargs
        Passed to ``forward``.

    Returns
    -------
    maps : torch.Tensor of shape (k, H, W), float32, on ``device``
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(
            f"images must be a uint8 array (k, H, W), got {images.dtype} {images.shape}"
        )
    k, h, w = images.shape
    tile = max(_MULTIPLE, -(-int(tile_size) // _MULTIPLE) * _MULTIPLE)
    margin = max(0, -(-int(margin) // _MULTIPLE) * _MULTIPLE)
    ph, pw = _pad_amounts((h, w))
    if ph or pw:
        mode = "reflect" if min(h, w) > max(ph, pw) else "edge"
        images = np.pad(images, ((0, 0), (0, ph), (0, pw)), mode=mode)
    H, W = h + ph, w + pw
    out = torch.empty((k, h, w), dtype=torch.float32, device=device)
    for r in range(0, H, tile):
        for c in range(0, W, tile):
            r0, r1 = max(0, r - margin), min(H, r + tile + margin)
            c0, c1 = max(0, c - margin), min(W, c + tile + margin)
            region = images[:, r0:r1, c0:c1]
            if not region.flags.writeable:  # torch.from_numpy warns on read-only arrays
                region = region.copy()
            maps = forward(
                module, region, device=device, dtype=dtype, channels_last=channels_last, **kwargs
            )
            rr, cc = min(r + tile, h), min(c + tile, w)
            if rr > r and cc > c:
                out[:, r:rr, c:cc] = maps[:, r - r0 : rr - r0, c - c0 : cc - c0]
    return out


def mc_dropout_mean_proba(
    module, patches, *, n_passes, device="cpu", dtype=None, channels_last=False
):
    """Mean foreground probability over ``n_passes`` stochastic passes (MC dropout).

    The module must be in MC-dropout mode (eval, dropout active; see
    ``kwtl.models._fcrn.enable_mc_dropout``). When it has ``features``/``head`` (as
    :class:`~kwtl.models.FCRN`), the deterministic part before the dropout layer runs once
    and only the head is repeated: the same distribution of outputs as ``n_passes`` full
    passes at a fraction of the cost.

    Returns
    -------
    proba : torch.Tensor of shape (B, H, W), float32, on ``device``
    """
    x = _to_input(patches, device, channels_last)
    total = None
    with torch.no_grad(), _autocast(device, dtype):
        if hasattr(module, "features") and hasattr(module, "head"):
            feats = module.features(x)
            passes = (module.head(feats) for _ in range(int(n_passes)))
        else:
            passes = (module(x) for _ in range(int(n_passes)))
        for logits in passes:
            prob = torch.sigmoid(logits.float()[:, 0])
            total = prob if total is None else total.add_(prob)
    return total.div_(int(n_passes))


def _accumulate_bn_input(bn, stats):
    def hook(_module, args):
        x = args[0].detach().to(torch.float64)
        dims = (0, 2, 3)
        stats["sum"] = stats.get("sum", 0) + x.sum(dim=dims)
        stats["sumsq"] = stats.get("sumsq", 0) + (x * x).sum(dim=dims)
        stats["count"] = stats.get("count", 0) + x.numel() // x.shape[1]
        raise _StopForward

    return bn.register_forward_pre_hook(hook)


def predict_logit_maps(
    module,
    images,
    *,
    bn_mode="batch",
    device="cpu",
    dtype=None,
    channels_last=False,
    max_pixels=2**22,
    cache_bytes=None,
):
    """Full-resolution logit maps of uint8 images.

    Parameters
    ----------
    module : torch.nn.Module
        A fully convolutional network (input divisible by 8). It is not modified.
    images : list of ndarray of shape (H_i, W_i), dtype uint8
    bn_mode : {"batch", "running"}, default="batch"
        Test-time BatchNorm statistics: of all ``images`` pooled, or the running averages.
    device : str or torch.device
    dtype : torch.dtype or None
        Autocast dtype (e.g. ``torch.bfloat16``); None for fp32.
    channels_last : bool
    max_pixels : int
        Pixels per forward batch (memory bound). With ``bn_mode="batch"``, when all images
        have one shape and fit in one batch, a single forward pass computes the statistics;
        otherwise they are pooled layer by layer.
    cache_bytes : int or None
        Memory for intermediate activations kept between the layer-by-layer passes of
        ``bn_mode="batch"`` (see :func:`pooled_batchnorm_statistics`); None means
        ``64 * max_pixels`` bytes, 0 recomputes every pass from the images.

    Returns
    -------
    logits : list of ndarray of shape (H_i, W_i), float32
    """
    if bn_mode not in ("batch", "running"):
        raise ValueError(f"bn_mode must be 'batch' or 'running', got {bn_mode!r}")
    batches = list(_batches_by_shape(images, max_pixels))
    if bn_mode == "running":
        net = fold_batchnorm(module)  # an eval-mode copy
    else:
        net = copy.deepcopy(module).eval()
        bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if bns and len(batches) > 1:
            if cache_bytes is None:
                cache_bytes = 64 * int(max_pixels)
            pooled_batchnorm_statistics(
                net,
                bns,
                images,
                batches,
                device,
                dtype,
                channels_last,
                cache_bytes=int(cache_bytes),
            )
            net = fold_batchnorm(net)  # the statistics are now fixed: eval-mode arithmetic
        else:
            for bn in bns:  # train mode on a copy: normalise with this single batch's statistics
                bn.train()
                bn.momentum = None
    out = [None] * len(images)
    with torch.no_grad():
        for idx in batches:
            x = _padded_input([images[i] for i in idx], device, channels_last)
            with _autocast(device, dtype):
                logits = net(x).float()[:, 0]
            h, w = images[idx[0]].shape
            logits = logits[:, :h, :w].cpu().numpy()
            for k, i in enumerate(idx):
                out[i] = logits[k]
    return out


def pooled_batchnorm_statistics(
    net, bns, images, batches, device, dtype, channels_last, cache_bytes=0
):
    """Set each BatchNorm's running statistics to the pooled statistics of its input.

    Layer k's statistics need layers 1..k-1 fixed, so a plain implementation runs one partial
    forward pass over all images per BatchNorm. When ``net`` has a ``stages()`` method (an
    ordered list of submodules whose composition is the forward pass, as
    :meth:`FCRN.stages`) and ``cache_bytes > 0``, the output of the last finished stage is kept
    for all batches whenever it fits in ``cache_bytes``, and later passes resume from it: about
    two forward passes in all instead of one partial pass per BatchNorm. Same arithmetic,
    same result.
    """
    stages = _checked_stages(net, bns) if cache_bytes and cache_bytes > 0 else None
    with torch.no_grad():
        if stages is None:
            for bn in bns:
                _pool_statistics(
                    bn,
                    lambda: (
                        _padded_input([images[i] for i in idx], device, channels_last)
                        for idx in batches
                    ),
                    lambda x: net(x),
                    device,
                    dtype,
                )
            return
        cached, start = None, 0  # cached[b]: output of stages[:start] for batch b

        def inputs():
            if cached is not None:
                return iter(cached)
            return (
                _padded_input([images[i] for i in idx], device, channels_last) for idx in batches
            )

        for s, stage in enumerate(stages):
            run = stages[start : s + 1]
            for bn in [m for m in stage.modules() if m in bns]:
                _pool_statistics(bn, inputs, lambda x, run=run: _chain(run, x), device, dtype)
            if not any(m in bns for later in stages[s + 1 :] for m in later.modules()):
                break
            advanced = _advance(
                inputs(), stages[start : s + 1], len(batches), cache_bytes, device, dtype
            )
            if advanced is not None:
                cached, start = advanced, s + 1


def _chain(stages, x):
    for stage in stages:
        x = stage(x)
    return x


def _pool_statistics(bn, inputs, forward, device, dtype):
    stats = {}
    handle = _accumulate_bn_input(bn, stats)
    try:
        for x in inputs():
            try:
                with _autocast(device, dtype):
                    forward(x)
            except _StopForward:
                pass
    finally:
        handle.remove()
    mean = stats["sum"] / stats["count"]
    var = (stats["sumsq"] / stats["count"] - mean * mean).clamp(min=0.0)
    bn.running_mean.copy_(mean.to(bn.running_mean.dtype))
    bn.running_var.copy_(var.to(bn.running_var.dtype))


def _advance(inputs, stages, n_batches, cache_bytes, device, dtype):
    """Outputs of ``stages`` for every batch, or None if they would exceed ``cache_bytes``."""
    out, used = [], 0
    for b, x in enumerate(inputs):
        with _autocast(device, dtype):
            y = _chain(stages, x)
        used += y.numel() * y.element_size()
        if used * n_batches / (b + 1) > cache_bytes:  # projected total over all batches
            return None
        out.append(y)
    return out


def _checked_stages(net, bns):
    stages = getattr(net, "stages", None)
    if not callable(stages):
        return None
    stages = list(stages())
    inside = {m for stage in stages for m in stage.modules()}
    if not stages or not all(bn in inside for bn in bns):
        return None
    return stages
