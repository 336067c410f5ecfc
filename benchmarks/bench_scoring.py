#!/usr/bin/env python
"""Benchmark kwtl's patch scoring against a plain fp32, NCHW, batch-by-batch PyTorch loop.

Issue 5 (performance). Three modes, selected by flags (several may be combined):

* default (``compare``): on the same model (same weights, deep-copied) and the same patches,
  time kwtl's ``ConsistencySelector.score`` (clean + 3 augmentations = 4 forward passes per
  patch), ``MCDropoutSelector.score`` (``--mc-passes`` passes) and optionally
  ``EntropySelector.score`` against a reference loop written the way the authors' code runs:
  fp32, NCHW, ``module.eval()``, batch by batch, ``x = uint8 / 127.5 - 1``, the same score
  formulas. Prints patches/s of both, the speed-up, the peak RSS of each phase, and the
  agreement of the scores (top-10 % overlap and Spearman's rho).
* ``--pool-scaling``: kwtl only, pools of 1k, 4k, 16k, 64k patches (``--pool-sizes``) cut
  lazily (a ``PatchSet``) from EM images, each pool scored in a fresh subprocess: time and
  peak RSS of that process.
* ``--em-pool``: kwtl only, every patch of the 132 EM pool images (256², stride 30: 61,776
  patches) scored with ``ConsistencySelector`` in a fresh subprocess: time and peak RSS
  (target < 2 GiB). ``--max-patches`` caps the pool for a smoke run.

Run ``python benchmarks/bench_scoring.py --help`` for the options; see benchmarks/README.md
for the commands behind RESULTS.md. Nothing here is timed inside the test suite.
"""

import argparse
import copy
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kwtl.datasets import PatchSet, patch_coordinates, read_image
from kwtl.models import FCRNSegmenter
from kwtl.models._fcrn import enable_mc_dropout
from kwtl.selection import (
    AUGMENTATIONS,
    ConsistencySelector,
    EntropySelector,
    MCDropoutSelector,
)

try:  # run as a script (benchmarks/ is on sys.path)
    from _perf_common import (
        DEFAULT_DATA,
        DEFAULT_SPLITS,
        PeakRSS,
        add_process_args,
        current_rss_mib,
        environment,
        image_files,
        load_images,
        print_env,
        print_table,
        process_peak_rss_mib,
        repeat_to,
        ru_maxrss_mib,
        setup_process,
        split_files,
        sync,
        synthetic_images,
        write_json,
    )
except ImportError:  # imported as a module of the benchmarks folder
    from benchmarks._perf_common import (
        DEFAULT_DATA,
        DEFAULT_SPLITS,
        PeakRSS,
        add_process_args,
        current_rss_mib,
        environment,
        image_files,
        load_images,
        print_env,
        print_table,
        process_peak_rss_mib,
        repeat_to,
        ru_maxrss_mib,
        setup_process,
        split_files,
        sync,
        synthetic_images,
        write_json,
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
# compare mode
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


def prepare_model_and_pool(args):
    """Pool of ``--n-patches`` random patches of the EM pool images, and the scoring model."""
    rng = np.random.default_rng(args.seed)
    pool_files, test_files = split_files(args.data, args.splits)
    if pool_files and not args.synthetic:
        images, _ = load_images(pool_files)
        train_images, train_masks = load_images(test_files[: args.train_images], masks=True)
        source = f"EM images from {args.data} ({len(images)} pool images)"
    else:
        images, _ = synthetic_images(4, args.patch_size, args.seed)
        train_images, train_masks = synthetic_images(
            args.train_images, args.patch_size, args.seed + 1, masks=True
        )
        source = "synthetic EM-like images (kwtl.datasets.make_cells, domain='em')"
    grid = PatchSet.from_images(images, args.patch_size, args.stride)
    n = min(args.n_patches, len(grid))
    pool = grid.subset(np.sort(rng.choice(len(grid), size=n, replace=False)))
    calib = grid[
        np.sort(rng.choice(len(grid), size=min(args.calib_patches, len(grid)), replace=False))
    ]
    if args.weights:
        seg = segmenter_with_state(args, _load_state(args.weights))
    else:
        seg = make_segmenter(args).to_affine()
    pretrain(seg, train_images, train_masks, args, rng)
    calibrate_bn(seg.module_, calib, args.device)
    return seg, pool, source


def run_compare(args):
    seg, pool, source = prepare_model_and_pool(args)
    reference = copy.deepcopy(seg.module_).to(memory_format=torch.contiguous_format).float().eval()
    n = len(pool)
    print(
        f"pool: {n} patches {args.patch_size}x{args.patch_size} of {source}; FCRN width "
        f"{args.width}, affine BN, BN running stats calibrated on {args.calib_patches} patches, "
        f"{args.train_steps} pre-training steps"
    )
    print(
        f"kwtl: precision={args.precision} (resolved {'fp32' if seg._amp_dtype is None else 'bf16'}"
        f", channels_last={seg._channels_last}), inference_batch_size="
        f"{seg.inference_batch_size}, selector chunk={args.kwtl_chunk or seg.inference_batch_size}"
        f"; reference: fp32 NCHW, batch {args.batch_size}, augmentations: {args.ref_augment}"
    )
    warm = pool.subset(np.arange(min(n, max(args.batch_size, seg.inference_batch_size))))
    rows, details = [], {}
    for name in args.selectors:
        passes = _forward_passes(name, args)
        # warm-up (oneDNN primitive creation, allocator) outside the timings
        _make_selector(name, args).score(warm, seg)
        _reference(name, reference, warm, args)
        print(f"[{name}] kwtl ...", flush=True)
        kwtl_scores, kwtl_times, kwtl_peak, kwtl_growth = timed(
            lambda: _make_selector(name, args).score(pool, seg), args.device, args.repeats
        )
        print(f"[{name}] reference ...", flush=True)
        ref_scores, ref_times, ref_peak, ref_growth = timed(
            lambda: _reference(name, reference, pool, args), args.device, args.repeats
        )
        agree = agreement(kwtl_scores, ref_scores)
        kwtl_rate = n / float(np.median(kwtl_times))
        ref_rate = n / float(np.median(ref_times))
        row_ref = {
            "selector": name,
            "path": "fp32 NCHW loop",
            "batch": args.batch_size,
            "passes": passes,
            "seconds": float(np.median(ref_times)),
            "patches_s": ref_rate,
            "speedup": 1.0,
            "peak_rss": ref_peak,
            "rss_growth": ref_growth,
        }
        row_kwtl = {
            "selector": name,
            "path": "kwtl",
            "batch": seg.inference_batch_size,
            "passes": passes,
            "seconds": float(np.median(kwtl_times)),
            "patches_s": kwtl_rate,
            "speedup": kwtl_rate / ref_rate,
            "peak_rss": kwtl_peak,
            "rss_growth": kwtl_growth,
            "top10": agree["top10_overlap"],
            "spearman": agree["spearman"],
        }
        rows += [row_ref, row_kwtl]
        details[name] = {
            "kwtl_seconds": kwtl_times,
            "reference_seconds": ref_times,
            "agreement": agree,
            "kwtl_peak_rss_mib": kwtl_peak,
            "reference_peak_rss_mib": ref_peak,
            "n_patches": n,
            "forward_passes_per_patch": passes,
        }
        if name == "mc_dropout" and not args.no_mc_noise_floor:
            # Monte-Carlo noise floor: kwtl against itself with other dropout masks
            other = _make_selector(name, args, random_state=args.seed + 1).score(pool, seg)
            floor = agreement(other, kwtl_scores)
            details[name]["noise_floor_kwtl_vs_kwtl_other_seed"] = floor
            rows.append(
                {
                    "selector": name,
                    "path": "kwtl vs kwtl (other seed)",
                    "top10": floor["top10_overlap"],
                    "spearman": floor["spearman"],
                }
            )
    return rows, details


# ============================================================================================
# pool-scaling and EM-pool modes (one subprocess per pool)
# ============================================================================================
def _run_worker(spec, args, state_path):
    """Run this script in a fresh process on ``spec``; return its result dict."""
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "spec.json"
        out_path = Path(tmp) / "result.json"
        spec = dict(spec, state=str(state_path), out=str(out_path), args=_worker_args(args))
        spec_path.write_text(json.dumps(spec))
        proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--_worker", str(spec_path)]
        )
        child_peak = None
        if hasattr(os, "wait4"):
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            child_peak = (
                usage.ru_maxrss / (1024.0 * 1024.0)
                if sys.platform == "darwin"
                else usage.ru_maxrss / _MIB
            )
        else:  # pragma: no cover
            proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"worker for {spec['mode']} failed with exit code {proc.returncode}")
        result = json.loads(out_path.read_text())
    result["peak_rss_mib_wait4"] = child_peak
    return result


_WORKER_KEYS = (
    "width",
    "patch_size",
    "stride",
    "precision",
    "train_batch_size",
    "train_lr",
    "seed",
    "device",
    "kwtl_batch_size",
    "kwtl_chunk",
    "magnitude",
    "mc_passes",
    "mc_p",
    "threads",
    "malloc",
    "data",
    "splits",
    "synthetic",
    "pool_selector",
)


def _worker_args(args):
    return {
        k: (str(getattr(args, k)) if isinstance(getattr(args, k), Path) else getattr(args, k))
        for k in _WORKER_KEYS
    }


def worker_main(spec_path):
    spec = json.loads(Path(spec_path).read_text())
    args = argparse.Namespace(**spec["args"])
    setup_process(args)
    t_start = time.perf_counter()
    seg = segmenter_with_state(args, _load_state(spec["state"]))
    seg.module_.eval()
    rss_model = current_rss_mib()
    selector = _make_selector(args.pool_selector, args)
    n = int(spec["n_patches"])
    if spec["mode"] == "em":
        pool_files, _ = split_files(args.data, args.splits)
        n_images = int(spec["n_images"])
        if pool_files and not args.synthetic:
            images, _ = load_images(pool_files[:n_images])
            images = repeat_to(images, n_images)
            source = f"EM pool images ({len(set(map(id, images)))} distinct)"
        else:
            images = repeat_to(synthetic_images(4, args.patch_size, args.seed)[0], n_images)
            source = "synthetic EM-like images (4 distinct, repeated by reference)"
        coords = patch_coordinates([im.shape for im in images], args.patch_size, args.stride)
        n_total = len(coords)
        if n:  # --max-patches
            coords = coords[:n]
    else:  # a pool of exactly n patches, from as many (repeated) images as needed
        all_files = sorted(image_files(Path(args.data) / "EM" / "images"))
        if all_files and not args.synthetic:
            probe = read_image(all_files[0])
            per_image = len(patch_coordinates([probe.shape], args.patch_size, args.stride))
            need = int(math.ceil(n / per_image))
            distinct, _ = load_images(all_files[: min(need, len(all_files))])
            source = f"EM images ({len(distinct)} distinct)"
        else:
            distinct = synthetic_images(4, args.patch_size, args.seed)[0]
            per_image = len(patch_coordinates([distinct[0].shape], args.patch_size, args.stride))
            need = int(math.ceil(n / per_image))
            source = "synthetic EM-like images (4 distinct)"
        images = repeat_to(distinct, need)
        coords = patch_coordinates([im.shape for im in images], args.patch_size, args.stride)[:n]
        n_total = len(coords)
    pool = PatchSet(images, coords, args.patch_size)
    distinct_bytes = sum(im.nbytes for im in {id(im): im for im in images}.values())
    rss_data = current_rss_mib()
    # warm-up on one chunk, outside the timing
    chunk = args.kwtl_chunk or seg.inference_batch_size
    selector.score(pool.subset(np.arange(min(len(pool), chunk))), seg)
    rss_warm = current_rss_mib()
    sync(args.device)
    t0 = time.perf_counter()
    scores = selector.score(pool, seg)
    sync(args.device)
    seconds = time.perf_counter() - t0
    result = {
        "mode": spec["mode"],
        "selector": args.pool_selector,
        "n_patches": len(pool),
        "n_patches_full_pool": n_total,
        "n_images": len(images),
        "source": source,
        "image_mib": distinct_bytes / (1024.0 * 1024.0),
        "seconds": seconds,
        "patches_s": len(pool) / seconds,
        "rss_after_model_mib": rss_model,
        "rss_after_data_mib": rss_data,
        "rss_after_warmup_mib": rss_warm,
        "peak_rss_mib": ru_maxrss_mib(),
        "scores_finite": bool(np.isfinite(scores).all()),
        "score_min": float(np.min(scores)),
        "score_max": float(np.max(scores)),
        "wall_seconds_total": time.perf_counter() - t_start,
        "threads": torch.get_num_threads(),
    }
    if torch.device(args.device).type == "cuda":
        result["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    Path(spec["out"]).write_text(json.dumps(result))


def _scoring_state(args, tmpdir):
    """The model of the subprocess modes: ``--weights`` or a seeded, BN-calibrated FCRN."""
    rng = np.random.default_rng(args.seed)
    if args.weights:
        seg = segmenter_with_state(args, _load_state(args.weights))
    else:
        seg = make_segmenter(args).to_affine()
    pool_files, _ = split_files(args.data, args.splits)
    if pool_files and not args.synthetic:
        images, _ = load_images(pool_files[:8])
    else:
        images, _ = synthetic_images(2, args.patch_size, args.seed)
    grid = PatchSet.from_images(images, args.patch_size, args.stride)
    calib = grid[
        np.sort(rng.choice(len(grid), size=min(args.calib_patches, len(grid)), replace=False))
    ]
    calibrate_bn(seg.module_, calib, args.device)
    path = Path(tmpdir) / "state.pt"
    torch.save(
        {k: v.detach().cpu().contiguous() for k, v in seg.module_.state_dict().items()}, path
    )
    return path


def run_pool_scaling(args, state_path):
    rows = []
    for n in args.pool_sizes:
        print(
            f"[pool-scaling] {n} patches ({args.pool_selector}) in a fresh process ...", flush=True
        )
        res = _run_worker({"mode": "pool", "n_patches": int(n)}, args, state_path)
        rows.append(res)
    return rows


def run_em_pool(args, state_path):
    print(
        f"[em-pool] {args.em_images} EM images, {args.patch_size}², stride {args.stride}, "
        f"{args.pool_selector}"
        + (f", capped at {args.max_patches} patches" if args.max_patches else "")
        + " in a fresh process ...",
        flush=True,
    )
    return _run_worker(
        {"mode": "em", "n_patches": int(args.max_patches or 0), "n_images": int(args.em_images)},
        args,
        state_path,
    )


# ============================================================================================
# main
# ============================================================================================
def build_parser():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument(
        "--n-patches",
        type=int,
        default=256,
        help="patches of the side-by-side comparison (random patches of the EM pool)",
    )
    p.add_argument("--patch-size", type=int, default=256)
    p.add_argument("--stride", type=int, default=30, help="patch grid step")
    p.add_argument("--width", type=int, default=32, help="FCRN width (channels of conv1)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=8,
        help="patches per forward pass of the fp32 reference loop (authors' eval: 256)",
    )
    p.add_argument(
        "--kwtl-batch-size",
        type=int,
        default=None,
        help="FCRNSegmenter.inference_batch_size (None: kwtl's default)",
    )
    p.add_argument(
        "--kwtl-chunk",
        type=int,
        default=None,
        help="selector batch_size, patches per scoring chunk (None: inference_batch_size)",
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16"),
        help="kwtl's precision (the reference is always fp32)",
    )
    p.add_argument(
        "--selectors",
        nargs="+",
        default=["consistency", "mc_dropout"],
        choices=("consistency", "mc_dropout", "entropy"),
    )
    p.add_argument("--magnitude", type=float, default=1.3, help="consistency magnitude")
    p.add_argument("--mc-passes", type=int, default=10)
    p.add_argument("--mc-p", type=float, default=0.5, help="MC dropout probability")
    p.add_argument(
        "--no-mc-noise-floor",
        action="store_true",
        help="skip the second kwtl MC-dropout run with other masks (noise floor)",
    )
    p.add_argument(
        "--ref-augment",
        default="kwtl",
        choices=("kwtl", "pil"),
        help="reference augmentations: kwtl's vectorised (bit-identical) functions, "
        "or Pillow patch by patch as the authors did",
    )
    p.add_argument("--repeats", type=int, default=1, help="timed repeats (median reported)")
    p.add_argument(
        "--train-steps",
        type=int,
        default=20,
        help="kwtl training steps on EM test images before scoring (0: untrained)",
    )
    p.add_argument("--train-batch-size", type=int, default=8)
    p.add_argument("--train-lr", type=float, default=1e-3)
    p.add_argument("--train-images", type=int, default=4)
    p.add_argument(
        "--calib-patches",
        type=int,
        default=32,
        help="patches of the train-mode pass that sets the BN running statistics",
    )
    p.add_argument(
        "--weights",
        default=None,
        help="state dict (.pt) to start from (e.g. a PLFT checkpoint) instead of the "
        "seeded paper initialisation",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="folder with EM/images and EM/masks (else synthetic data)",
    )
    p.add_argument(
        "--splits",
        type=Path,
        default=DEFAULT_SPLITS,
        help="the authors' splits.json (EM pool = unlabelled[0])",
    )
    p.add_argument("--synthetic", action="store_true", help="use synthetic data even if EM exists")
    add_process_args(p)
    p.add_argument(
        "--cross-malloc",
        action="store_true",
        help="run the comparison with the default and the tuned allocator, each in "
        "a fresh process, and report all four rates and the ratios",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--pool-scaling",
        action="store_true",
        help="score pools of --pool-sizes patches with kwtl, one subprocess each",
    )
    p.add_argument("--pool-sizes", type=int, nargs="+", default=[1000, 4000, 16000, 64000])
    p.add_argument(
        "--pool-selector",
        default="consistency",
        choices=("consistency", "mc_dropout", "entropy"),
        help="selector of --pool-scaling and --em-pool",
    )
    p.add_argument(
        "--em-pool",
        action="store_true",
        help="score all patches of the EM pool images in a subprocess",
    )
    p.add_argument("--em-images", type=int, default=132, help="images of --em-pool")
    p.add_argument(
        "--max-patches", type=int, default=None, help="cap the --em-pool pool (smoke runs)"
    )
    p.add_argument(
        "--compare",
        action="store_true",
        help="also run the side-by-side comparison with --pool-scaling/--em-pool",
    )
    p.add_argument("--json", type=Path, default=None, help="write all results to this file")
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    return p


def _strip_options(argv, flags, valued):
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in flags:
            continue
        if a in valued:
            skip = True
            continue
        if any(a.startswith(v + "=") for v in valued):
            continue
        out.append(a)
    return out


def run_cross_malloc(args, argv):
    """The side-by-side comparison twice, each in a fresh process: with glibc's default
    allocator and with ``kwtl.utils._allocator.tune_malloc``. Both ratios of the same environment are
    reported, and the ratio of kwtl as ``kwtl run`` runs it (tuned) to the reference loop as the
    authors' code runs (default allocator)."""
    base = _strip_options(argv, {"--cross-malloc"}, {"--malloc", "--json"})
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("default", "tuned"):
            path = Path(tmp) / f"{mode}.json"
            print(
                f"[cross-malloc] comparison with malloc={mode} in a fresh process ...", flush=True
            )
            cmd = (
                [sys.executable, os.path.abspath(__file__)]
                + base
                + ["--malloc", mode, "--json", str(path)]
            )
            proc = subprocess.run(cmd, stdout=subprocess.DEVNULL)
            if proc.returncode:
                raise RuntimeError(f"the malloc={mode} run failed with exit code {proc.returncode}")
            runs[mode] = json.loads(path.read_text())
    rows = []
    for name in args.selectors:
        d = {mode: runs[mode]["compare"]["details"][name] for mode in runs}
        n = d["default"]["n_patches"]
        rate = {
            (mode, path): n / float(np.median(d[mode][f"{path}_seconds"]))
            for mode in d
            for path in ("reference", "kwtl")
        }
        rows.append(
            {
                "selector": name,
                "ref_default": rate["default", "reference"],
                "ref_tuned": rate["tuned", "reference"],
                "kwtl_default": rate["default", "kwtl"],
                "kwtl_tuned": rate["tuned", "kwtl"],
                "ratio_default": rate["default", "kwtl"] / rate["default", "reference"],
                "ratio_tuned": rate["tuned", "kwtl"] / rate["tuned", "reference"],
                "ratio_deployed": rate["tuned", "kwtl"] / rate["default", "reference"],
                "top10": d["tuned"]["agreement"]["top10_overlap"],
                "spearman": d["tuned"]["agreement"]["spearman"],
            }
        )
    return {"rows": rows, "runs": runs}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args._worker:
        worker_main(args._worker)
        return 0
    if args.cross_malloc:
        out = {"command": " ".join([Path(sys.argv[0]).as_posix()] + argv)}
        out.update(run_cross_malloc(args, argv))
        print(
            "\n== scoring patches/s: glibc default allocator vs kwtl.utils._allocator.tune_malloc, "
            "each in a fresh process =="
        )
        print_table(
            out["rows"],
            [
                ("selector", "selector", None),
                ("ref default", "ref_default", ".2f"),
                ("ref tuned", "ref_tuned", ".2f"),
                ("kwtl default", "kwtl_default", ".2f"),
                ("kwtl tuned", "kwtl_tuned", ".2f"),
                ("x same env default", "ratio_default", ".2f"),
                ("x same env tuned", "ratio_tuned", ".2f"),
                ("x kwtl run vs authors", "ratio_deployed", ".2f"),
                ("top10%", "top10", ".3f"),
                ("spearman", "spearman", ".4f"),
            ],
        )
        for r in out["rows"]:
            print(
                f"{r['selector']}: kwtl as `kwtl run` runs it (tuned malloc) is "
                f"{r['ratio_deployed']:.2f}x the fp32 loop as the authors run it (default "
                f"malloc) (target >= 5x: {'PASS' if r['ratio_deployed'] >= 5 else 'FAIL'}); "
                f"in the same environment {r['ratio_default']:.2f}x (default) and "
                f"{r['ratio_tuned']:.2f}x (tuned)"
            )
        write_json(args.json, out)
        return 0
    setup_process(args)
    torch.manual_seed(args.seed)
    env = environment(args)
    print_env(env)
    out = {
        "env": env,
        "args": {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "_worker"
        },
        "command": " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
    }
    t0 = time.perf_counter()
    do_compare = args.compare or not (args.pool_scaling or args.em_pool)
    if do_compare:
        rows, details = run_compare(args)
        out["compare"] = {"rows": rows, "details": details}
    if args.pool_scaling or args.em_pool:
        with tempfile.TemporaryDirectory() as tmp:
            state = _scoring_state(args, tmp)
            if args.pool_scaling:
                out["pool_scaling"] = run_pool_scaling(args, state)
            if args.em_pool:
                out["em_pool"] = run_em_pool(args, state)
    out["process_peak_rss_mib"] = process_peak_rss_mib()
    out["wall_seconds"] = time.perf_counter() - t0

    # ---------------------------------------------------------------------------- report
    print()
    if do_compare:
        print(
            f"== scoring, side by side ({args.n_patches} patches {args.patch_size}², width "
            f"{args.width}, {env['threads']} threads, device {args.device}) =="
        )
        print_table(
            out["compare"]["rows"],
            [
                ("selector", "selector", None),
                ("path", "path", None),
                ("batch", "batch", None),
                ("passes", "passes", None),
                ("time[s]", "seconds", ".2f"),
                ("patches/s", "patches_s", ".2f"),
                ("x fp32", "speedup", ".2f"),
                ("top10%", "top10", ".3f"),
                ("spearman", "spearman", ".4f"),
                ("peakRSS[MiB]", "peak_rss", ".0f"),
                ("+RSS[MiB]", "rss_growth", ".0f"),
            ],
        )
        print(
            "(peakRSS: process peak during the phase, incl. interpreter, torch and the loaded "
            "images; +RSS: its growth during the phase)"
        )
        for name, d in out["compare"]["details"].items():
            ratio = float(np.median(d["reference_seconds"]) / np.median(d["kwtl_seconds"]))
            print(
                f"{name}: kwtl {ratio:.2f}x the fp32 loop (target >= 5x: "
                f"{'PASS' if ratio >= 5 else 'FAIL'}), top-10% overlap "
                f"{d['agreement']['top10_overlap']:.3f} (target >= 0.95: "
                f"{'PASS' if d['agreement']['top10_overlap'] >= 0.95 else 'FAIL'}), "
                f"Spearman {d['agreement']['spearman']:.4f}"
            )
    if args.pool_scaling:
        print(f"\n== pool scaling ({args.pool_selector}, kwtl only, one process per pool) ==")
        print_table(
            out["pool_scaling"],
            [
                ("patches", "n_patches", None),
                ("images", "n_images", None),
                ("images[MiB]", "image_mib", ".0f"),
                ("time[s]", "seconds", ".1f"),
                ("patches/s", "patches_s", ".2f"),
                ("RSS model[MiB]", "rss_after_model_mib", ".0f"),
                ("RSS +data[MiB]", "rss_after_data_mib", ".0f"),
                ("peakRSS[MiB]", "peak_rss_mib", ".0f"),
            ],
        )
    if args.em_pool:
        r = out["em_pool"]
        print(f"\n== EM pool ({r['source']}) ==")
        print_table(
            [r],
            [
                ("patches", "n_patches", None),
                ("full pool", "n_patches_full_pool", None),
                ("images", "n_images", None),
                ("time[s]", "seconds", ".1f"),
                ("patches/s", "patches_s", ".2f"),
                ("peakRSS[MiB]", "peak_rss_mib", ".0f"),
            ],
        )
        ok = r["peak_rss_mib"] < 2048
        print(
            f"EM pool peak RSS {r['peak_rss_mib']:.0f} MiB (target < 2048 MiB: "
            f"{'PASS' if ok else 'FAIL'}); scores finite: {r['scores_finite']}"
        )
    print(
        f"\nprocess peak RSS {out['process_peak_rss_mib']:.0f} MiB, wall {out['wall_seconds']:.1f} s"
    )
    write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
