"""The ``--quality`` mode of ``bench_training.py``: the same fine-tuning run through the
fp32 reference loop and kwtl's fast configurations, compared by mIoU. Not part of kwtl."""

import time

import numpy as np

from kwtl.datasets import PatchSet

from _perf_common import sync
from _training_models import (
    training_data,
    make_segmenter,
    initial_state,
    kwtl_segmenter,
    reference_module,
    ReferenceTrainer,
    KwtlTrainer,
)


# ============================================================================================
# quality mode
# ============================================================================================
def _schedule(n, batch_size, epochs, seed):
    """Index batches of every epoch (a fresh permutation each epoch, last batch partial)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(epochs):
        perm = rng.permutation(n)
        out += [np.sort(perm[s : s + batch_size]) for s in range(0, n, batch_size)]
    return out


def _train(trainer, xs, ys, schedule, device):
    sync(device)
    t0 = time.perf_counter()
    losses = [trainer.step(xs[idx], ys[idx].astype(np.uint8)) for idx in schedule]
    sync(device)
    return time.perf_counter() - t0, losses


def _miou(args, state, images, masks, precision):
    """mIoU on full images with FCRNSegmenter.score (bn_mode="batch", kwtl's prediction)."""
    seg = make_segmenter(args, 8, precision=precision)
    seg.to_affine()
    seg.module_.load_state_dict(state)
    return float(seg.score(images, masks))


def run_quality(args):
    train_images, train_masks, train_source = training_data(
        args, args.quality_dataset, args.quality_train_images, "pool"
    )
    test_images, test_masks, test_source = training_data(
        args, args.quality_dataset, args.quality_test_images, "test"
    )
    grid = PatchSet.from_images(train_images, args.patch_size, args.stride)
    rng = np.random.default_rng(args.seed)
    n = min(args.quality_patches, len(grid))
    pick = np.sort(rng.choice(len(grid), size=n, replace=False))
    xs, ys = grid.subset(pick), grid.with_arrays(train_masks).subset(pick)
    B = args.quality_batch_size
    print(
        f"quality: fine-tune on {n} patches {args.patch_size}² of {train_source}, "
        f"{args.quality_epochs} epochs, batch {B}, lr {args.quality_lr}, init "
        f"{'--weights' if args.weights else args.quality_init}; test on {test_source}"
    )
    rows = []
    for seed in args.quality_seeds:
        state = initial_state(args, init=args.quality_init, seed=seed)
        schedule = _schedule(n, B, args.quality_epochs, seed)
        print(f"[seed {seed}] fp32 NCHW reference: {len(schedule)} steps ...", flush=True)
        ref = ReferenceTrainer(
            reference_module(args, state), args.quality_lr, args.weight_decay, args.device
        )
        seconds, losses = _train(ref, xs, ys, schedule, args.device)
        ref_state = {k: v.detach().clone() for k, v in ref.module.state_dict().items()}
        ref_miou = _miou(args, ref_state, test_images, test_masks, "fp32")
        rows.append(
            {
                "seed": seed,
                "path": "fp32 NCHW loop",
                "config": "fp32, whole batch",
                "seconds": seconds,
                "patches_s": n * args.quality_epochs / seconds,
                "loss_last": losses[-1],
                "miou": ref_miou,
                "miou_fp32_pred": ref_miou,
                "diff_points": 0.0,
            }
        )
        del ref
        for precision, micro in args.quality_configs:
            print(
                f"[seed {seed}] kwtl precision={precision}, micro={micro or 'none'} ...", flush=True
            )
            seg = kwtl_segmenter(args, state, B, precision, micro, lr=args.quality_lr)
            resolved = "fp32" if seg._amp_dtype is None else "bf16"
            seconds, losses = _train(KwtlTrainer(seg), xs, ys, schedule, args.device)
            kwtl_state = {k: v.detach().clone() for k, v in seg.module_.state_dict().items()}
            miou = float(seg.score(test_images, test_masks))  # kwtl's own precision
            miou_fp32 = _miou(args, kwtl_state, test_images, test_masks, "fp32")
            rows.append(
                {
                    "seed": seed,
                    "path": "kwtl train_step",
                    "config": f"{precision}->{resolved}, micro {micro or 'none'}",
                    "seconds": seconds,
                    "patches_s": n * args.quality_epochs / seconds,
                    "loss_last": losses[-1],
                    "miou": miou,
                    "miou_fp32_pred": miou_fp32,
                    "diff_points": 100.0 * (miou - ref_miou),
                }
            )
            del seg
    return rows
