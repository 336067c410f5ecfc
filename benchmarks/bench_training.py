#!/usr/bin/env python
"""Benchmark FCRNSegmenter training steps against a plain fp32, NCHW PyTorch training loop.

Issue 5 (performance). Two modes:

* default (timing): for every batch size of ``--batch-sizes`` (the paper's 64 and 128), the
  same initial weights and the same pre-drawn batches of real EM patches go through

  - the reference: a plain PyTorch loop as in the authors' code -- fp32, NCHW, the whole batch
    in one forward/backward pass, ``Adam(lr=1e-4, weight_decay=5e-4)``,
    ``kwtl.models.weighted_bce_with_logits``;
  - kwtl: ``FCRNSegmenter.train_step`` (the step ``fit``/``partial_fit`` run) for every
    ``--precision`` x ``--micro-batch-sizes`` configuration.

  Only the optimisation steps are timed (the batches are drawn beforehand, the uint8 -> float
  conversion is inside the timing for both). ``--end-to-end`` also times
  ``FCRNSegmenter.partial_fit`` on a ``PatchSet`` (DataLoader, skorch bookkeeping included).
  Prints patches/s, the speed-up over the reference at the same batch size, the loss of the
  first and last step (sanity check), and the peak RSS of each configuration.
* ``--quality``: a small real-data fine-tuning run. From the same initial weights and with the
  same batches in the same order, the fp32 reference loop and kwtl's fast configuration(s)
  (``--quality-configs``) train for ``--quality-epochs`` epochs; the mIoU of each trained
  model on held-out full images (``FCRNSegmenter.score``, batch-statistics BatchNorm) is
  compared: the target is |mIoU(kwtl) - mIoU(fp32)| <= 1 point.

BatchNorm with micro-batches: kwtl normalises each micro-batch with its own statistics ("ghost
batch norm") and updates the running averages once per micro-batch; gradients of the
micro-batches are accumulated into one optimizer step with the same loss average as the
whole batch. The reference normalises the whole batch at once. Test-time prediction in the
paper's ``bn_mode="batch"`` does not use the running averages.

Run ``python benchmarks/bench_training.py --help`` for the options; see benchmarks/README.md.
"""

import argparse
import json
import os
import subprocess
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
    PeakRSS,
    add_process_args,
    environment,
    print_env,
    setup_process,
    print_table,
    process_peak_rss_mib,
    sync,
    write_json,
)
from _training_models import (
    _micro,
    _config,
    training_data,
    initial_state,
    kwtl_segmenter,
    reference_module,
    ReferenceTrainer,
    KwtlTrainer,
    run_steps,
    _cuda_peak,
)
from _training_quality import run_quality


# ============================================================================================
# timing mode
# ============================================================================================
def run_timing_isolated(args, argv):
    """Every configuration in a fresh process (exact per-configuration peak RSS)."""
    rows = []
    base = [a for a in argv if a not in ("--isolate", "--end-to-end", "--quality", "--with-timing")]
    for batch_size in args.batch_sizes:
        jobs = [] if args.skip_reference else [["--only", "reference"]]
        jobs += [
            ["--only", "kwtl", "--precision", p, "--micro-batch-sizes", str(m or "none")]
            + (["--end-to-end"] if args.end_to_end else [])
            for p in args.precision
            for m in args.micro_batch_sizes
        ]
        ref_rate = None
        for job in jobs:
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "rows.json"
                cmd = (
                    [sys.executable, os.path.abspath(__file__)]
                    + base
                    + job
                    + ["--batch-sizes", str(batch_size), "--json", str(out)]
                )
                print(f"[batch {batch_size}] fresh process: {' '.join(job)}", flush=True)
                proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
                _, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = os.waitstatus_to_exitcode(status)
                if proc.returncode != 0:
                    raise RuntimeError(f"child {' '.join(job)} failed ({proc.returncode})")
                child = json.loads(out.read_text())["timing"]
            for row in child:
                row["process_peak_rss"] = usage.ru_maxrss / 1024.0
                if row["path"] == "fp32 NCHW loop":
                    ref_rate = row["patches_s"]
                elif ref_rate:
                    row["speedup"] = row["patches_s"] / ref_rate
            rows += child
    return rows


def run_timing(args):
    images, masks, source = training_data(args, args.dataset, args.train_images)
    grid = PatchSet.from_images(images, args.patch_size, args.stride)
    mask_grid = grid.with_arrays(masks)
    state = initial_state(args)
    print(
        f"data: {len(grid)} patches {args.patch_size}² of {source}; FCRN width {args.width} "
        f"(init {'--weights' if args.weights else args.init}), affine BN; Adam lr {args.lr}, "
        f"weight decay {args.weight_decay}; {args.warmup} warm-up + {args.steps} timed steps"
    )
    rows = []
    for batch_size in args.batch_sizes:
        rng = np.random.default_rng([args.seed, batch_size])  # same batches in any process
        n_steps = args.warmup + args.steps
        batches = []
        for _ in range(n_steps):
            idx = np.sort(rng.choice(len(grid), size=batch_size, replace=len(grid) < batch_size))
            batches.append((grid[idx], mask_grid[idx].astype(np.uint8)))
        ref_rate = None
        if not args.skip_reference and args.only != "kwtl":
            print(f"[batch {batch_size}] fp32 NCHW reference ...", flush=True)
            trainer = ReferenceTrainer(
                reference_module(args, state), args.lr, args.weight_decay, args.device
            )
            seconds, losses, peak, growth = run_steps(trainer, batches, args.warmup, args.device)
            ref_rate = args.steps * batch_size / seconds
            rows.append(
                {
                    "batch": batch_size,
                    "path": "fp32 NCHW loop",
                    "precision": "fp32",
                    "micro": "-",
                    "seconds": seconds,
                    "patches_s": ref_rate,
                    "speedup": 1.0,
                    "loss_first": losses[0],
                    "loss_last": losses[-1],
                    "peak_rss": peak,
                    "rss_growth": growth,
                    "cuda_peak": _cuda_peak(args.device),
                }
            )
            del trainer
        for precision in args.precision if args.only != "reference" else ():
            for micro in args.micro_batch_sizes:
                label = f"precision={precision}, micro={micro or 'none'}"
                print(f"[batch {batch_size}] kwtl {label} ...", flush=True)
                seg = kwtl_segmenter(args, state, batch_size, precision, micro)
                resolved = "fp32" if seg._amp_dtype is None else "bf16"
                seconds, losses, peak, growth = run_steps(
                    KwtlTrainer(seg), batches, args.warmup, args.device
                )
                rate = args.steps * batch_size / seconds
                row = {
                    "batch": batch_size,
                    "path": "kwtl train_step",
                    "precision": f"{precision}->{resolved}",
                    "micro": micro or "none",
                    "seconds": seconds,
                    "patches_s": rate,
                    "speedup": rate / ref_rate if ref_rate else None,
                    "loss_first": losses[0],
                    "loss_last": losses[-1],
                    "peak_rss": peak,
                    "rss_growth": growth,
                    "cuda_peak": _cuda_peak(args.device),
                }
                rows.append(row)
                if args.end_to_end:
                    n = args.steps * batch_size
                    idx = np.sort(rng.choice(len(grid), size=n, replace=len(grid) < n))
                    seg_e2e = kwtl_segmenter(args, state, batch_size, precision, micro)
                    seg_e2e.partial_fit(
                        grid.subset(idx[:batch_size]), mask_grid.subset(idx[:batch_size]), epochs=1
                    )  # warm-up
                    with PeakRSS() as mem:
                        sync(args.device)
                        t0 = time.perf_counter()
                        seg_e2e.partial_fit(grid.subset(idx), mask_grid.subset(idx), epochs=1)
                        sync(args.device)
                        e2e = time.perf_counter() - t0
                    rows.append(
                        {
                            "batch": batch_size,
                            "path": "kwtl partial_fit (+data)",
                            "precision": f"{precision}->{resolved}",
                            "micro": micro or "none",
                            "seconds": e2e,
                            "patches_s": n / e2e,
                            "speedup": n / e2e / ref_rate if ref_rate else None,
                            "peak_rss": mem.peak,
                            "rss_growth": mem.peak - mem.start,
                        }
                    )
                    del seg_e2e
                del seg
    return rows


# ============================================================================================
# main
# ============================================================================================
def build_parser():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 128])
    p.add_argument(
        "--micro-batch-sizes",
        type=_micro,
        nargs="+",
        default=[None, 8, 16],
        help="kwtl micro_batch_size values ('none': whole batch)",
    )
    p.add_argument(
        "--precision",
        nargs="+",
        default=["auto"],
        choices=("auto", "fp32", "bf16"),
        help="kwtl precision(s) (the reference is always fp32)",
    )
    p.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before timing")
    p.add_argument("--patch-size", type=int, default=256)
    p.add_argument("--stride", type=int, default=30)
    p.add_argument("--width", type=int, default=32)
    p.add_argument(
        "--init",
        default="paper",
        choices=("paper", "default"),
        help="FCRN initialisation of the timing runs",
    )
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument(
        "--weights",
        default=None,
        help="initial state dict (.pt; meta or PLFT checkpoint) for both paths",
    )
    p.add_argument("--dataset", default="EM", help="dataset folder of the timing batches")
    p.add_argument(
        "--train-images", type=int, default=8, help="pool images the timing batches are drawn from"
    )
    p.add_argument(
        "--end-to-end",
        action="store_true",
        help="also time FCRNSegmenter.partial_fit on a PatchSet (includes loading)",
    )
    p.add_argument("--skip-reference", action="store_true", help="time kwtl only")
    p.add_argument(
        "--isolate",
        action="store_true",
        help="run every timing configuration in a fresh process (exact peak RSS "
        "per configuration; a few seconds of start-up each)",
    )
    p.add_argument("--only", choices=("reference", "kwtl"), default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--quality",
        action="store_true",
        help="run the small real-data fine-tuning comparison instead of the timing",
    )
    p.add_argument("--with-timing", action="store_true", help="with --quality: also time")
    p.add_argument("--quality-dataset", default="EM", choices=("EM", "ssTEM"))
    p.add_argument("--quality-train-images", type=int, default=4)
    p.add_argument(
        "--quality-test-images",
        type=int,
        default=8,
        help="held-out test images (the authors' test split 0)",
    )
    p.add_argument("--quality-patches", type=int, default=256)
    p.add_argument("--quality-epochs", type=int, default=6)
    p.add_argument("--quality-batch-size", type=int, default=64)
    p.add_argument(
        "--quality-configs",
        type=_config,
        nargs="+",
        default=[("auto", 8)],
        help="kwtl configurations 'precision:micro', e.g. auto:8 bf16:16 fp32:none",
    )
    p.add_argument(
        "--quality-lr",
        type=float,
        default=1e-3,
        help="fine-tuning learning rate (1e-4 is the paper's, from meta-trained "
        "weights; from a fresh init 1e-3 learns in few steps)",
    )
    p.add_argument(
        "--quality-init",
        default="default",
        choices=("paper", "default"),
        help="FCRN initialisation of the quality run (ignored with --weights)",
    )
    p.add_argument("--quality-seeds", type=int, nargs="+", default=[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--splits", type=Path, default=DEFAULT_SPLITS)
    p.add_argument("--synthetic", action="store_true", help="use synthetic data even if found")
    add_process_args(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write all results to this file")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    setup_process(args)
    torch.manual_seed(args.seed)
    env = environment(argparse.Namespace(precision=args.precision[0], device=args.device))
    print_env(env)
    out = {
        "env": env,
        "command": " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    t0 = time.perf_counter()
    if not args.quality or args.with_timing:
        out["timing"] = run_timing_isolated(args, argv) if args.isolate else run_timing(args)
    if args.quality:
        out["quality"] = run_quality(args)
    out["process_peak_rss_mib"] = process_peak_rss_mib()
    out["wall_seconds"] = time.perf_counter() - t0

    print()
    if "timing" in out:
        print(
            f"== training steps ({args.patch_size}², width {args.width}, {env['threads']} "
            f"threads, device {args.device}, {args.steps} timed steps) =="
        )
        print_table(
            out["timing"],
            [
                ("batch", "batch", None),
                ("path", "path", None),
                ("precision", "precision", None),
                ("micro", "micro", None),
                ("time[s]", "seconds", ".2f"),
                ("patches/s", "patches_s", ".2f"),
                ("x fp32", "speedup", ".2f"),
                ("loss first", "loss_first", ".4f"),
                ("loss last", "loss_last", ".4f"),
                ("peakRSS[MiB]", "peak_rss", ".0f"),
                ("+RSS[MiB]", "rss_growth", ".0f"),
            ]
            + ([("proc peak[MiB]", "process_peak_rss", ".0f")] if args.isolate else [])
            + (
                [("cuda peak[MiB]", "cuda_peak", ".0f")]
                if torch.device(args.device).type == "cuda"
                else []
            ),
        )
        for batch_size in args.batch_sizes:
            kw = [
                r
                for r in out["timing"]
                if r["batch"] == batch_size and r["path"] == "kwtl train_step" and r.get("speedup")
            ]
            if kw:
                best = max(kw, key=lambda r: r["speedup"])
                print(
                    f"batch {batch_size}: best kwtl {best['speedup']:.2f}x the fp32 loop "
                    f"({best['precision']}, micro {best['micro']}; target >= 2.5x: "
                    f"{'PASS' if best['speedup'] >= 2.5 else 'FAIL'})"
                )
    if "quality" in out:
        print(
            f"\n== fine-tuning quality ({args.quality_dataset}, mIoU on held-out full images, "
            "bn_mode='batch') =="
        )
        print_table(
            out["quality"],
            [
                ("seed", "seed", None),
                ("path", "path", None),
                ("config", "config", None),
                ("train[s]", "seconds", ".1f"),
                ("patches/s", "patches_s", ".2f"),
                ("loss last", "loss_last", ".4f"),
                ("mIoU", "miou", ".4f"),
                ("mIoU fp32-pred", "miou_fp32_pred", ".4f"),
                ("diff[pt]", "diff_points", "+.2f"),
            ],
        )
        configs = sorted({r["config"] for r in out["quality"] if r["path"] != "fp32 NCHW loop"})
        for config in configs:
            diffs = [r["diff_points"] for r in out["quality"] if r["config"] == config]
            mean = float(np.mean(diffs))
            print(
                f"{config}: mean mIoU difference {mean:+.2f} points over {len(diffs)} seed(s) "
                f"(target |diff| <= 1: {'PASS' if abs(mean) <= 1 else 'FAIL'})"
            )
        ref = [r["miou"] for r in out["quality"] if r["path"] == "fp32 NCHW loop"]
        if len(ref) > 1:
            print(
                f"fp32 reference across seeds: mIoU {np.mean(ref):.4f} +- {np.std(ref):.4f} "
                "(seed-to-seed spread, for scale)"
            )
    print(
        f"\nprocess peak RSS {out['process_peak_rss_mib']:.0f} MiB, wall {out['wall_seconds']:.1f} s"
    )
    write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
