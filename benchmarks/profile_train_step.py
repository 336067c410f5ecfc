#!/usr/bin/env python
"""Where the time of ``FCRNSegmenter.train_step`` goes (issue 12, item 3): torch.profiler
operator table of a few training steps on 256² patches, after a warm-up step.

    python benchmarks/profile_train_step.py --batch 8 --steps 2 --threads 1

Shares (not absolute times) are the useful output on a shared machine: the operator mix of
one step does not depend on the batch size beyond the per-step optimizer cost.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from kwtl.models import FCRNSegmenter


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--precision", default="auto")
    p.add_argument(
        "--out",
        default=str(
            Path(__file__).resolve().parent / "results" / "dense" / "profile_train_step.json"
        ),
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, (args.batch, 1, 256, 256), dtype=np.uint8))
    y = torch.from_numpy((rng.random((args.batch, 1, 256, 256)) > 0.7).astype(np.float32))
    seg = FCRNSegmenter(
        module__width=32, module__affine=True, precision=args.precision, random_state=0
    ).initialize()
    seg.train_step((x, y))  # warm-up
    t = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            seg.train_step((x, y))
    seconds = (time.perf_counter() - t) / args.steps
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    rows = sorted(((e.key, e.self_cpu_time_total / total) for e in events), key=lambda r: -r[1])
    print(f"{seconds:.2f} s/step at batch {args.batch} (profiled)")
    for name, share in rows[:20]:
        print(f"{share * 100:6.1f} %  {name}")
    report = {
        "batch": args.batch,
        "steps": args.steps,
        "threads": torch.get_num_threads(),
        "precision": args.precision,
        "seconds_per_step_profiled": seconds,
        "self_cpu_share": dict(rows[:30]),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
