"""The subprocess modes of ``bench_scoring.py``: ``--pool-scaling`` and ``--em-pool`` (one
fresh process per pool) and ``--cross-malloc`` (the comparison once per allocator). Not part of
kwtl."""

import argparse
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

from kwtl.datasets import PatchSet, patch_coordinates, read_image

from _perf_common import (
    current_rss_mib,
    image_files,
    load_images,
    repeat_to,
    ru_maxrss_mib,
    setup_process,
    split_files,
    sync,
    synthetic_images,
)

from _scoring_models import (
    _MIB,
    _load_state,
    _make_selector,
    calibrate_bn,
    make_segmenter,
    segmenter_with_state,
)


# the script the subprocesses run
SCRIPT = Path(__file__).resolve().with_name("bench_scoring.py")


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
        proc = subprocess.Popen([sys.executable, str(SCRIPT), "--_worker", str(spec_path)])
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
            cmd = [sys.executable, str(SCRIPT)] + base + ["--malloc", mode, "--json", str(path)]
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
