#!/usr/bin/env python
"""Benchmark full-resolution prediction of 1024² images in batch-statistics BatchNorm mode.

Issue 5 (performance): "Full-resolution prediction of 1024² images in batch-statistics BN
mode in bounded memory." The paper's test-time BatchNorm normalises with the statistics of
*all* test images (the authors fed the whole test set as one batch). kwtl's
``FCRNSegmenter.predict_proba`` (``bn_mode="batch"``) forwards at most ``max_pixels`` pixels at
a time and pools the statistics layer by layer, so memory is bounded by ``max_pixels``, not by
the number of images.

Each ``--max-pixels`` value runs ``predict_proba`` on the same ``--n-images`` images in a fresh
process (time, peak RSS of that process). ``--reference`` also runs the authors' way in a
fresh process: every image in one fp32 NCHW batch, BatchNorm in train mode (batch
statistics). The probability maps are compared with the reference (max |dp|, agreement of the
thresholded masks, mIoU against the ground truth).

Run ``python benchmarks/bench_predict.py --help``; see benchmarks/README.md.
"""

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from kwtl.datasets import PatchSet, make_cells
from kwtl.metrics import mean_iou
from kwtl.models import FCRNSegmenter

try:  # run as a script (benchmarks/ is on sys.path)
    from _perf_common import (
        DEFAULT_DATA,
        DEFAULT_SPLITS,
        add_process_args,
        current_rss_mib,
        environment,
        load_images,
        print_env,
        setup_process,
        print_table,
        ru_maxrss_mib,
        split_files,
        sync,
        write_json,
    )
except ImportError:  # imported as a module of the benchmarks folder
    from benchmarks._perf_common import (
        DEFAULT_DATA,
        DEFAULT_SPLITS,
        add_process_args,
        current_rss_mib,
        environment,
        load_images,
        print_env,
        setup_process,
        print_table,
        ru_maxrss_mib,
        split_files,
        sync,
        write_json,
    )

_DOMAINS = {"EM": "em", "ssTEM": "sstem"}


def _images(args):
    """``--n-images`` images (and masks) of ``--dataset`` in file order, else synthetic."""
    pool, test = split_files(args.data, args.splits, args.dataset)
    files = sorted(pool + test)
    if files and not args.synthetic:
        images, masks = load_images(files[: args.n_images], masks=True)
        return images, masks, f"{args.dataset} images from {args.data}"
    domain = _DOMAINS.get(args.dataset, "sstem")
    images, masks = make_cells(
        n_images=args.n_images, image_size=args.image_size, domain=domain, random_state=args.seed
    )
    return list(images), list(masks), f"synthetic {_DOMAINS.get(args.dataset, 'sstem')} images"


def _segmenter(args, precision=None, max_pixels=None):
    seg = FCRNSegmenter(
        module__width=args.width,
        patch_size=args.patch_size,
        stride=args.stride,
        precision=precision or args.precision,
        batch_size=8,
        lr=1e-3,
        max_pixels=max_pixels or 2**23,
        random_state=args.seed,
        device=args.device,
    )
    return seg.initialize().to_affine()


def _state(args, images, masks, tmp):
    """``--weights`` or a seeded FCRN after ``--train-steps`` kwtl steps (not random, so that the
    comparison of maps is meaningful); saved for the worker processes."""
    seg = _segmenter(args)
    if args.weights:
        state = torch.load(args.weights, map_location="cpu", weights_only=True)
        seg.module_.load_state_dict(state)
    rng = np.random.default_rng(args.seed)
    xs = PatchSet.from_images(images, args.patch_size, args.stride)
    ys = xs.with_arrays(masks)
    for _ in range(args.train_steps):
        idx = np.sort(rng.choice(len(xs), size=8, replace=False))
        seg.train_step(
            (
                torch.from_numpy(xs[idx])[:, None],
                torch.from_numpy(ys[idx].astype(np.float32))[:, None],
            )
        )
    path = Path(tmp) / "state.pt"
    torch.save(
        {k: v.detach().cpu().contiguous() for k, v in seg.module_.state_dict().items()}, path
    )
    return path


# ============================================================================================
# worker (one prediction per process)
# ============================================================================================
def worker_main(spec_path):
    spec = json.loads(Path(spec_path).read_text())
    args = argparse.Namespace(**spec["args"])
    setup_process(args)
    images, masks, _ = _images(args)
    state = torch.load(spec["state"], map_location="cpu", weights_only=True)
    rss_data = current_rss_mib()
    if spec["kind"] == "reference":
        seg = _segmenter(args, precision="fp32")
        seg.module_.load_state_dict(state)
        net = copy.deepcopy(seg.module_).to(memory_format=torch.contiguous_format).float()
        net.train()  # batch statistics of the whole stack, as the authors' PyTorch 1.3 code
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.momentum = None
        x = torch.from_numpy(np.stack(images)).to(args.device)
        rss_data = current_rss_mib()
        sync(args.device)
        t0 = time.perf_counter()
        with torch.no_grad():
            x = x.to(torch.float32).div_(127.5).sub_(1.0).unsqueeze(1)
            proba = torch.sigmoid(net(x)[:, 0]).cpu().numpy()
        sync(args.device)
        seconds = time.perf_counter() - t0
        proba = list(proba)
    else:
        seg = _segmenter(args, max_pixels=int(spec["max_pixels"]))
        seg.module_.load_state_dict(state)
        rss_data = current_rss_mib()
        sync(args.device)
        t0 = time.perf_counter()
        proba = seg.predict_proba(images)
        sync(args.device)
        seconds = time.perf_counter() - t0
    np.savez_compressed(spec["maps"], *[p.astype(np.float32) for p in proba])
    result = {
        "kind": spec["kind"],
        "max_pixels": spec.get("max_pixels"),
        "n_images": len(images),
        "shape": list(images[0].shape),
        "seconds": seconds,
        "images_s": len(images) / seconds,
        "rss_before_mib": rss_data,
        "peak_rss_mib": ru_maxrss_mib(),
        "miou": float(mean_iou(masks, [p >= 0.5 for p in proba])),
    }
    if torch.device(args.device).type == "cuda":
        result["cuda_max_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    Path(spec["out"]).write_text(json.dumps(result))


def _run_worker(spec, args, tmp):
    name = f"{spec['kind']}-{spec.get('max_pixels')}"
    spec = dict(
        spec,
        out=str(Path(tmp) / f"{name}.json"),
        maps=str(Path(tmp) / f"{name}.npz"),
        args={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    )
    spec_path = Path(tmp) / f"{name}.spec.json"
    spec_path.write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--_worker", str(spec_path)])
    if proc.returncode != 0:
        raise RuntimeError(f"worker {name} failed with exit code {proc.returncode}")
    result = json.loads(Path(spec["out"]).read_text())
    with np.load(spec["maps"]) as z:
        maps = [z[k] for k in sorted(z.files, key=lambda s: int(s.split("_")[1]))]
    return result, maps


def build_parser():
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--dataset", default="ssTEM", help="folder under --data (ssTEM: 20 x 1024²)")
    p.add_argument("--n-images", type=int, default=20)
    p.add_argument("--image-size", type=int, default=1024, help="synthetic image size")
    p.add_argument(
        "--max-pixels",
        type=int,
        nargs="+",
        default=[2**20, 2**22, 2**23],
        help="FCRNSegmenter.max_pixels values (pixels per forward pass)",
    )
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    p.add_argument(
        "--reference",
        action="store_true",
        help="also run the authors' way: all images in one fp32 batch",
    )
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--patch-size", type=int, default=256, help="patches of --train-steps")
    p.add_argument("--stride", type=int, default=30)
    p.add_argument("--train-steps", type=int, default=20)
    p.add_argument("--weights", default=None, help="affine state dict (.pt) to start from")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--splits", type=Path, default=DEFAULT_SPLITS)
    p.add_argument("--synthetic", action="store_true")
    add_process_args(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--_worker", default=None, help=argparse.SUPPRESS)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args._worker:
        worker_main(args._worker)
        return 0
    setup_process(args)
    env = environment(args)
    print_env(env)
    images, masks, source = _images(args)
    print(
        f"{len(images)} images {images[0].shape} of {source}; FCRN width {args.width}, "
        f"{args.train_steps} training steps; bn_mode='batch'"
    )
    out = {
        "env": env,
        "command": " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]),
        "rows": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        args.__dict__.pop("_worker")
        state = _state(args, images, masks, tmp)
        del images
        ref_maps = None
        if args.reference:
            print("[reference] all images in one fp32 batch, fresh process ...", flush=True)
            row, ref_maps = _run_worker({"kind": "reference", "state": str(state)}, args, tmp)
            row.update(label="fp32 one batch (authors)", speedup=1.0)
            out["rows"].append(row)
        for max_pixels in args.max_pixels:
            print(f"[kwtl] predict_proba, max_pixels={max_pixels}, fresh process ...", flush=True)
            row, maps = _run_worker(
                {"kind": "kwtl", "max_pixels": max_pixels, "state": str(state)}, args, tmp
            )
            row.update(label=f"kwtl max_pixels=2^{int(np.log2(max_pixels))}")
            if ref_maps is not None:
                diff = max(float(np.max(np.abs(a - b))) for a, b in zip(maps, ref_maps))
                same = np.mean([np.mean((a >= 0.5) == (b >= 0.5)) for a, b in zip(maps, ref_maps)])
                row.update(
                    max_abs_dp=diff,
                    mask_agreement=float(same),
                    speedup=out["rows"][0]["seconds"] / row["seconds"],
                )
            out["rows"].append(row)
    shape = "x".join(map(str, out["rows"][0]["shape"])) if out["rows"] else "?"
    print(
        f"\n== full-resolution prediction, bn_mode='batch' ({out['rows'][0]['n_images']} images "
        f"{shape}, width {args.width}, {env['threads']} threads, device {args.device}) =="
    )
    print_table(
        out["rows"],
        [
            ("path", "label", None),
            ("time[s]", "seconds", ".2f"),
            ("images/s", "images_s", ".2f"),
            ("x fp32", "speedup", ".2f"),
            ("RSS before[MiB]", "rss_before_mib", ".0f"),
            ("peakRSS[MiB]", "peak_rss_mib", ".0f"),
            ("mIoU", "miou", ".4f"),
            ("max|dp|", "max_abs_dp", ".4f"),
            ("mask agree", "mask_agreement", ".5f"),
        ],
    )
    write_json(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
