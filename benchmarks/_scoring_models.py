"""The models, the reference scoring loops (the authors' way: fp32, NCHW, batch by batch)
and the timing/agreement helpers of ``bench_scoring.py``. Not part of kwtl."""

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kwtl.datasets import PatchSet
from kwtl.models import FCRNSegmenter
from kwtl.models._fcrn import enable_mc_dropout
from kwtl.selection import (
    AUGMENTATIONS,
    ConsistencySelector,
    EntropySelector,
    MCDropoutSelector,
)

from _perf_common import (
    PeakRSS,
    sync,
)

_CONSISTENCY_AUGS = ("autocontrast", "brightness", "sharpness")
_MIB = 1024.0


# ============================================================================================
# model
# ============================================================================================
def make_segmenter(args, **overrides):
    params = dict(
        module__width=args.width,
        patch_size=args.patch_size,
        stride=args.stride,
        precision=args.precision,
        batch_size=args.train_batch_size,
        lr=args.train_lr,
        random_state=args.seed,
        device=args.device,
    )
    if args.kwtl_batch_size is not None:
        params["inference_batch_size"] = args.kwtl_batch_size
    params.update(overrides)
    return FCRNSegmenter(**params).initialize()


def _load_state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def segmenter_with_state(args, state):
    """A segmenter (affine BatchNorm) holding ``state`` (affine or not: meta weights are
    switched to affine as in the paper)."""
    width = int(state["conv1.0.weight"].shape[0])
    if width != args.width:
        print(f"note: the weights have width {width}; using it instead of --width {args.width}")
        args.width = width
    seg = make_segmenter(args)
    affine = "conv1.1.weight" in state
    if not affine:
        seg.module_.load_state_dict(state)
        seg.to_affine()
    else:
        seg.to_affine()
        seg.module_.load_state_dict(state)
    return seg


def _as_input(batch_uint8, device):
    """The authors' input: fp32 NCHW, ``x / 127.5 - 1`` (kwtl's ``normalize_uint8``)."""
    x = torch.from_numpy(np.ascontiguousarray(batch_uint8)).to(device=device)
    return x.to(torch.float32).div_(127.5).sub_(1.0).unsqueeze(1)


def calibrate_bn(module, patches, device, batch_size=8):
    """Set the BatchNorm running statistics to the average batch statistics of ``patches``
    (one fp32 train-mode pass, cumulative average), so that eval-mode scores are meaningful."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    module.train()
    with torch.no_grad():
        for s in range(0, len(patches), batch_size):
            module(_as_input(patches[s : s + batch_size], device))
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    module.eval()


def pretrain(seg, images, masks, args, rng):
    """A few kwtl training steps so that the model is not random (scores then spread out)."""
    if args.train_steps <= 0:
        return
    xs = PatchSet.from_images(images, args.patch_size, args.stride)
    ys = xs.with_arrays(masks)
    for _ in range(args.train_steps):
        idx = np.sort(rng.choice(len(xs), size=min(args.train_batch_size, len(xs)), replace=False))
        x = torch.from_numpy(xs[idx])[:, None]
        y = torch.from_numpy(ys[idx].astype(np.float32))[:, None]
        seg.train_step((x, y))


# ============================================================================================
# the reference loops (authors' way: fp32, NCHW, batch by batch)
# ============================================================================================
def _pil_augment(batch, name, magnitude):
    from PIL import Image, ImageEnhance, ImageOps

    out = np.empty_like(batch)
    for i, patch in enumerate(batch):
        img = Image.fromarray(np.ascontiguousarray(patch))  # mode "L"
        if name == "autocontrast":
            img = ImageOps.autocontrast(img)
        elif name == "brightness":
            img = ImageEnhance.Brightness(img).enhance(magnitude)
        elif name == "sharpness":
            img = ImageEnhance.Sharpness(img).enhance(magnitude)
        else:
            raise ValueError(name)
        out[i] = np.asarray(img)
    return out


def _augment(batch, name, magnitude, how):
    if how == "pil":
        return _pil_augment(batch, name, magnitude)
    return AUGMENTATIONS[name](batch, magnitude)


def _entropy(p):
    return torch.special.entr(p) + torch.special.entr(1.0 - p)


def ref_consistency(module, pool, batch_size, device, magnitude, augment="kwtl", threshold=0.5):
    """Sum over the 3 augmentations of per-pixel BCE-with-logits against the hard mask of the
    clean prediction, mean over pixels."""
    module.eval()
    scores = np.empty(len(pool), dtype=np.float64)
    with torch.no_grad():
        for idx, batch in pool.iter_batches(batch_size):
            clean = module(_as_input(batch, device))[:, 0]
            target = (torch.sigmoid(clean) >= threshold).to(torch.float32)
            total = torch.zeros_like(clean)
            for name in _CONSISTENCY_AUGS:
                z = module(_as_input(_augment(batch, name, magnitude, augment), device))[:, 0]
                total += F.binary_cross_entropy_with_logits(z, target, reduction="none")
            scores[idx] = total.mean(dim=(1, 2)).double().cpu().numpy()
    return scores


def ref_mc_dropout(module, pool, batch_size, device, n_passes, p, seed):
    """Entropy of the mean of ``n_passes`` dropout predictions (only Dropout2d active),
    mean over pixels."""
    torch.manual_seed(seed)
    module.eval()
    scores = np.empty(len(pool), dtype=np.float64)
    with torch.no_grad(), enable_mc_dropout(module, p):
        for idx, batch in pool.iter_batches(batch_size):
            x = _as_input(batch, device)
            mean = None
            for _ in range(n_passes):
                prob = torch.sigmoid(module(x)[:, 0])
                mean = prob if mean is None else mean + prob
            scores[idx] = _entropy(mean / n_passes).mean(dim=(1, 2)).double().cpu().numpy()
    return scores


def ref_entropy(module, pool, batch_size, device):
    module.eval()
    scores = np.empty(len(pool), dtype=np.float64)
    with torch.no_grad():
        for idx, batch in pool.iter_batches(batch_size):
            prob = torch.sigmoid(module(_as_input(batch, device))[:, 0])
            scores[idx] = _entropy(prob).mean(dim=(1, 2)).double().cpu().numpy()
    return scores


# ============================================================================================
# helpers
# ============================================================================================
def timed(fn, device, repeats=1):
    """Run ``fn`` ``repeats`` times; return (last result, list of seconds, peak RSS MiB,
    peak RSS growth over the RSS at the start of the call, MiB)."""
    times, result, peak, growth = [], None, 0.0, 0.0
    for _ in range(repeats):
        sync(device)
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            result = fn()
            sync(device)
            times.append(time.perf_counter() - t0)
        peak = max(peak, mem.peak)
        growth = max(growth, mem.peak - mem.start)
    return result, times, peak, growth


def agreement(a, b, fraction=0.1):
    """Top-``fraction`` overlap |top_k(a) ∩ top_k(b)| / k (k = ceil(fraction n), ties to the
    lower index as kwtl's ``select``) and Spearman's rho."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    k = max(1, int(math.ceil(fraction * len(a))))
    top_a = np.argsort(-a, kind="stable")[:k]
    top_b = np.argsort(-b, kind="stable")[:k]
    overlap = len(np.intersect1d(top_a, top_b)) / k
    rho = float(spearmanr(a, b)[0]) if len(a) > 2 else float("nan")
    return {
        "k": k,
        "top10_overlap": overlap,
        "spearman": rho,
        "max_abs_diff": float(np.max(np.abs(a - b))),
        "score_std": float(np.std(b)),
    }


# ============================================================================================
# the selectors and the reference loops by name
# ============================================================================================
def _make_selector(name, args, random_state=None):
    if name == "consistency":
        return ConsistencySelector(magnitude=args.magnitude, batch_size=args.kwtl_chunk)
    if name == "mc_dropout":
        return MCDropoutSelector(
            n_passes=args.mc_passes,
            p=args.mc_p,
            batch_size=args.kwtl_chunk,
            random_state=args.seed if random_state is None else random_state,
        )
    if name == "entropy":
        return EntropySelector(batch_size=args.kwtl_chunk)
    raise ValueError(f"unknown selector {name!r}")


def _reference(name, module, pool, args):
    if name == "consistency":
        return ref_consistency(
            module, pool, args.batch_size, args.device, args.magnitude, augment=args.ref_augment
        )
    if name == "mc_dropout":
        return ref_mc_dropout(
            module, pool, args.batch_size, args.device, args.mc_passes, args.mc_p, seed=args.seed
        )
    return ref_entropy(module, pool, args.batch_size, args.device)


def _forward_passes(name, args):
    return {"consistency": 1 + len(_CONSISTENCY_AUGS), "mc_dropout": args.mc_passes, "entropy": 1}[
        name
    ]
