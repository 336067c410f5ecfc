#!/usr/bin/env python
"""``FCRNSegmenter.train_step`` before and after issue 12's CPU training changes, side by side.

"Before" is the training step as kwtl ran it on a CPU without native bf16 until issue 12:
``precision="auto"`` resolved to fp32, NCHW memory format, PyTorch's own convolution layers.
"After" is today's ``FCRNSegmenter``: channels-last fp32 and the layers of
``kwtl.models._fold.use_training_layers`` (matrix-product backward passes for the 2×2
transposed convolutions and the one-output logit convolution). Both are FCRNSegmenters with
the same weights, the same batch (real EM patches of the authors' split 0 pool, or random
pixels with ``--synthetic``), whole-batch BatchNorm, Adam; the steps alternate (before, after,
before, ...) in one process so that both see the same machine load. Reported: seconds per
step (median and minimum of the timed steps), the ratio, the loss of each step (the two runs
must follow the same trajectory), and the load average.

    PYTHONPATH=$PWD python benchmarks/bench_train_step.py --batch 64 --steps 3 \
        --out benchmarks/results/dense/train_step_b64.json
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from kwtl.models import FCRN, FCRNSegmenter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _perf_common import DEFAULT_DATA, DEFAULT_SPLITS, image_files  # noqa: E402


class BeforeSegmenter(FCRNSegmenter):
    """The pre-issue-12 CPU training step: NCHW (unless bf16) and PyTorch's layers."""

    @property
    def _channels_last(self):
        return self._amp_dtype is not None

    def initialize_module(self):
        super().initialize_module()
        plain = FCRN(**self.get_params_for("module"))
        plain.load_state_dict(self.module_.state_dict())
        self.module_ = plain.to(self.device)
        return self


def batch_of_patches(batch, synthetic, seed=0):
    rng = np.random.default_rng(seed)
    if synthetic:
        x = rng.integers(0, 256, (batch, 1, 256, 256), dtype=np.uint8)
        y = (rng.random((batch, 1, 256, 256)) > 0.7).astype(np.float32)
        return torch.from_numpy(x), torch.from_numpy(y)
    from kwtl.datasets import PatchSet, read_image, read_mask

    table = json.loads(Path(DEFAULT_SPLITS).read_text())["EM"]
    files = image_files(Path(DEFAULT_DATA) / "EM" / "images")
    masks = image_files(Path(DEFAULT_DATA) / "EM" / "masks")
    idx = [int(i) for i in table["unlabelled"]["0"]][:4]
    pool = PatchSet.from_images([read_image(files[i]) for i in idx], 256, 30)
    mpool = pool.with_arrays([read_mask(masks[i]) for i in idx])
    pick = np.sort(rng.choice(len(pool), batch, replace=False))
    x = np.stack([pool[int(i)] for i in pick])[:, None]
    y = (np.stack([mpool[int(i)] for i in pick])[:, None] > 0).astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=3, help="timed steps of each (after 1 warm-up)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--synthetic", action="store_true")
    p.add_argument(
        "--out",
        default=str(Path(__file__).resolve().parent / "results" / "dense" / "train_step.json"),
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    x, y = batch_of_patches(args.batch, args.synthetic)
    common = dict(
        module__width=32,
        module__affine=True,
        module__init="default",
        precision="auto",
        random_state=0,
    )
    runs = {
        "before": BeforeSegmenter(**common).initialize(),
        "after": FCRNSegmenter(**common).initialize(),
    }
    runs["before"].module_.load_state_dict(runs["after"].module_.state_dict())
    seconds = {k: [] for k in runs}
    losses = {k: [] for k in runs}
    loads = [os.getloadavg()[0]]
    for step in range(args.steps + 1):
        for name, seg in runs.items():
            t = time.perf_counter()
            loss = float(seg.train_step((x, y))["loss"])
            if step:  # the first step of each is a warm-up
                seconds[name].append(time.perf_counter() - t)
            losses[name].append(loss)
            loads.append(os.getloadavg()[0])
            print(
                f"step {step} {name}: {time.perf_counter() - t:.2f} s, loss {loss:.6f}, "
                f"load {loads[-1]:.1f}",
                flush=True,
            )
    med = {k: statistics.median(v) for k, v in seconds.items()}
    report = {
        "args": vars(args),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "native_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "seconds": seconds,
        "median_seconds": med,
        "min_seconds": {k: min(v) for k, v in seconds.items()},
        "speedup_median": med["before"] / med["after"],
        "speedup_min": min(seconds["before"]) / min(seconds["after"]),
        "losses": losses,
        "load_average": loads,
    }
    print(
        json.dumps(
            {k: report[k] for k in ("median_seconds", "speedup_median", "speedup_min")}, indent=1
        )
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.out).with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(args.out)


if __name__ == "__main__":
    main()
