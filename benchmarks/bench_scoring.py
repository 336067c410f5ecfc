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
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from kwtl.datasets import PatchSet

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _perf_common import (
    DEFAULT_DATA,
    DEFAULT_SPLITS,
    add_process_args,
    environment,
    load_images,
    print_env,
    print_table,
    process_peak_rss_mib,
    setup_process,
    split_files,
    synthetic_images,
    write_json,
)

from _scoring_models import (
    _load_state,
    _make_selector,
    _reference,
    _forward_passes,
    agreement,
    calibrate_bn,
    make_segmenter,
    pretrain,
    segmenter_with_state,
    timed,
)

from _scoring_pool import (
    _scoring_state,
    run_cross_malloc,
    run_em_pool,
    run_pool_scaling,
    worker_main,
)


# ============================================================================================
# compare mode
# ============================================================================================
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
