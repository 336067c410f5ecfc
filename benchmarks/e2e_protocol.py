#!/usr/bin/env python
"""The paper's protocol for one target, from the authors' PLFT weights: score the pool,
select a support set, fine-tune on it, evaluate on the split's test images (issue 12).

Two modes, each comparing two arms on the same splits, weights and budget:

* ``downstream`` (item 2): exact per-patch consistency scoring (``dense=False``) against dense
  scoring (``dense=True``); **the same fine-tuning code** (today's ``FCRNSegmenter``) for both.
  Reports the mIoU of each arm per split and the mean difference.
* ``e2e`` (item 4): "before" = exact scoring and the pre-issue-12 CPU training step
  (``bench_train_step.BeforeSegmenter``: NCHW, PyTorch's layers) against "after" = dense
  scoring and today's training; wall time of each phase.

Per split: the split's pool images (``unlabelled`` of ``../shared/reference/splits.json``,
optionally only the first ``--pool-images``) cut into 256² candidates at ``--stride``;
``ConsistencySelector`` keeps ``--budget`` candidates (``select_support`` with one shot of
``--budget`` patches); their true masks are revealed; a copy of the PLFT model gets a fresh
optimizer and ``partial_fit`` for ``--epochs`` epochs at ``--batch`` (as
``FewShotSegmentation._fine_tune`` does); the mIoU is ``FCRNSegmenter.score`` on the split's
test images (batch-statistics BatchNorm, the paper's test mode). The paper's protocol is
``--stride 30 --budget 500 --epochs 20 --batch 64`` over the whole pool; reduced settings
must be disclosed with the figures. Splits 5-9 are reserved and refused.

    PYTHONPATH=$PWD python benchmarks/e2e_protocol.py e2e --dataset ssTEM --splits 0
    PYTHONPATH=$PWD python benchmarks/e2e_protocol.py downstream --dataset ssTEM \
        --splits 0 1 2 --pool-images 2 --stride 60 --budget 32 --epochs 4 --batch 16
"""

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from kwtl.datasets import PatchSet, read_image, read_mask
from kwtl.models import load_pretrained
from kwtl.selection import ConsistencySelector

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _perf_common import DEFAULT_DATA, DEFAULT_SPLITS, PeakRSS, image_files  # noqa: E402
from bench_train_step import BeforeSegmenter  # noqa: E402

WEIGHTS = Path(__file__).resolve().parent.parent.parent / "shared" / "weights"


def split_data(dataset, split, pool_images=None):
    if not 0 <= int(split) <= 4:
        raise SystemExit("splits 5-9 are reserved: use 0-4")
    table = json.loads(Path(DEFAULT_SPLITS).read_text())[dataset]
    images = image_files(Path(DEFAULT_DATA) / dataset / "images")
    masks = image_files(Path(DEFAULT_DATA) / dataset / "masks")
    pool = [int(i) for i in table["unlabelled"][str(split)]][:pool_images]
    test = [int(i) for i in table["test"][str(split)]]

    def load(idx):
        return [read_image(images[i]) for i in idx], [read_mask(masks[i]) for i in idx]

    return load(pool), load(test), [images[i].name for i in pool]


def run_arm(plft, pool_images, pool_masks, test_images, test_masks, *, dense, before, args):
    times = {}
    seg = plft
    if before:  # the same weights in the pre-issue-12 training step
        params = {**plft.get_params(), "module__affine": True}  # PLFT BatchNorm is affine
        seg = BeforeSegmenter(**params).initialize()
        seg.module_.load_state_dict(plft.module_.state_dict())
    pool = PatchSet.from_images(pool_images, 256, args.stride)
    t = time.perf_counter()
    support = ConsistencySelector(dense=dense).select_support(pool, seg, 1, args.budget)
    times["selection"] = time.perf_counter() - t
    support_masks = pool.with_arrays(pool_masks).subset(support.indices)
    t = time.perf_counter()
    model = copy.deepcopy(seg)
    model.initialize_optimizer()
    model.partial_fit(support.patches, support_masks, epochs=args.epochs)
    times["fine_tuning"] = time.perf_counter() - t
    t = time.perf_counter()
    miou = float(model.score(test_images, test_masks))
    times["evaluation"] = time.perf_counter() - t
    times["total"] = sum(times.values())
    return {
        "miou": miou,
        "seconds": times,
        "n_candidates": len(pool),
        "support_coords": support.coords.tolist(),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("downstream", "e2e"))
    p.add_argument("--dataset", default="ssTEM", choices=("ssTEM", "EM"))
    p.add_argument("--splits", type=int, nargs="+", default=[0])
    p.add_argument("--pool-images", type=int, default=None, help="first N pool images only")
    p.add_argument("--stride", type=int, default=30, help="candidate grid step")
    p.add_argument("--budget", type=int, default=500, help="patches selected")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument(
        "--arms",
        nargs="+",
        default=None,
        help="subset of the mode's arms (downstream: exact dense; e2e: before after)",
    )
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    arms = {
        "downstream": {
            "exact": dict(dense=False, before=False),
            "dense": dict(dense=True, before=False),
        },
        "e2e": {"before": dict(dense=False, before=True), "after": dict(dense=True, before=False)},
    }[args.mode]
    arms = {k: v for k, v in arms.items() if args.arms is None or k in args.arms}
    out = Path(
        args.out
        or Path(__file__).resolve().parent
        / "results"
        / "dense"
        / f"{args.mode}_{args.dataset}_{args.device}.json"
    )
    report = {
        "args": vars(args),
        "torch_threads": torch.get_num_threads(),
        "load_before": os.getloadavg(),
        "splits": {},
    }

    def save():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=1))
        tmp.replace(out)

    with PeakRSS() as rss:
        for split in args.splits:
            (pool_images, pool_masks), (test_images, test_masks), names = split_data(
                args.dataset, split, args.pool_images
            )
            plft = load_pretrained(
                f"authors:{args.dataset}",
                source=WEIGHTS,
                stride=args.stride,
                batch_size=args.batch,
                device=args.device,
                random_state=0,
            )
            row = {"pool_images": names}
            for name, arm in arms.items():
                row[name] = run_arm(
                    plft, pool_images, pool_masks, test_images, test_masks, args=args, **arm
                )
                row[name]["load_after"] = os.getloadavg()
                print(
                    f"split {split} {name}: mIoU {row[name]['miou']:.4f}, "
                    f"{json.dumps(row[name]['seconds'])}",
                    flush=True,
                )
                report["splits"][str(split)] = row
                save()
    names = list(arms)
    if len(names) == 2:
        a, b = names
        diffs = [r[b]["miou"] - r[a]["miou"] for r in report["splits"].values()]
        report["mean_miou"] = {
            n: float(np.mean([r[n]["miou"] for r in report["splits"].values()])) for n in names
        }
        report[f"mean_miou_{b}_minus_{a}"] = float(np.mean(diffs))
        report["mean_seconds"] = {
            n: {
                k: float(np.mean([r[n]["seconds"][k] for r in report["splits"].values()]))
                for k in ("selection", "fine_tuning", "evaluation", "total")
            }
            for n in names
        }
    report["peak_rss_mib"] = rss.peak
    report["load_after"] = os.getloadavg()
    save()
    print(json.dumps({k: v for k, v in report.items() if k.startswith("mean")}, indent=1))


if __name__ == "__main__":
    main()
