"""Label-free selection vs random and the paper's consistency, from the authors' PLFT weights.

Starts from the authors' released PLFT models (``kwtl.models.load_pretrained``), so Reptile and
PLFT are skipped; runs selection, support fine-tuning and evaluation on the authors' splits
0-4 (never 5-9) of ssTEM and EM. Every finished run is one JSON file written atomically
(``os.replace``) under ``<out>/runs/``; a rerun skips finished runs, so a killed run resumes.
Per-candidate statistics (the paper's consistency score, predicted foreground, entropy,
encoder features, and the ground-truth foreground count used only by the label-reading
arms) are computed once per target image with the PLFT model (which is the same for every
split) and cached under ``<out>/cache/``.

Usage::

    PYTHONPATH=$PWD python benchmarks/label_free.py --profile cheap \
        --out benchmarks/results/label_free --threads 2
    PYTHONPATH=$PWD python benchmarks/label_free.py --table --default random

Profiles (``PROFILES`` in ``_label_free_data.py``): ``cheap`` — 128² candidates on a stride-128 grid, 8 patches
per shot, 20 epochs at batch 4, EM pool cut to 8 images and EM test set to 6 images,
test images centre-cropped to half their side; ``mid`` — 256² on a stride-128 grid, 16 patches
per shot, EM pool cut to 24 images, full-size test images; ``paper`` — 256² at stride 30, P_t
500/400, 20 epochs, batch 64, all pool and test images at full size, statistics scored densely
(whole-image passes; ``--device cuda`` for a GPU).
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _label_free_data import (
    ARMS,
    PROFILES,
    ROOT,
    SEEDS,
    Target,
    atomic_write_json,
    arm_scores,
    centre_crop,
    per_target,
    plft_model,
    pool_table,
)
from _label_free_report import compare_dense, describe, table


def fine_tune_and_evaluate(
    plft, target, pool, test, chosen, table, seed, profile, n_support, epochs=None
):
    from kwtl.datasets import PatchSet
    from kwtl.few_shot import Oracle, fine_tune
    from kwtl.metrics import iou_score

    images = [target.images[i] for i in pool]
    position = {idx: k for k, idx in enumerate(pool)}
    coords = np.column_stack(
        [[position[i] for i in table["image"][chosen]], table["coords"][chosen]]
    )
    support = PatchSet(images, coords, (profile["patch_size"],) * 2)
    oracle = Oracle([target.masks[i] for i in pool], shapes=[im.shape for im in images])
    masks = oracle.reveal_patches(support)
    epochs = profile["epochs"] if epochs is None else epochs
    model = fine_tune(
        plft, support, masks, epochs=epochs, batch_size=profile["batch_size"], random_state=seed
    )
    crops = [centre_crop(target.images[i], profile["test_crop"]) for i in test]
    gts = [centre_crop(target.masks[i], profile["test_crop"]) for i in test]
    preds = model.predict(crops)
    per_image = [iou_score(g, p) for g, p in zip(gts, preds)]
    return 100 * float(np.mean(per_image)), per_image


def jobs(targets, splits, shots, arms, draws=len(SEEDS)):
    """Jobs in priority order: for each split (then each target), every arm's first draw and
    draws 2-5 of the random baselines; afterwards draws 2-5 of the stochastic label-free
    arms. So an interrupted run has complete baselines on as many splits as possible."""
    baselines = ("random", "gate_random", "gt_random")
    first, later = [], []
    for n_shots in shots:
        for split in splits:
            for target in targets:
                for seed in SEEDS[:draws]:
                    for arm in arms:
                        if not ARMS[arm][1]:
                            if seed == 0:
                                first.append((target, arm, n_shots, split, 0))
                        elif seed == 0 or arm in baselines:
                            first.append((target, arm, n_shots, split, seed))
                        else:
                            later.append((target, arm, n_shots, split, seed))
    return first + later


def run(args):
    import torch

    torch.set_num_threads(args.threads)
    profile = PROFILES[args.profile]
    out = Path(args.out)
    targets = {}
    plft = {}
    todo = jobs(args.targets, args.splits, args.shots, args.arms, args.draws)
    print(f"{len(todo)} jobs", flush=True)
    for target_name, arm, n_shots, split, seed in todo:
        path = (
            out
            / "runs"
            / args.profile
            / f"{target_name}__{arm}__{n_shots}shot__split{split}__seed{seed}.json"
        )
        if path.exists() or not _claim(path):
            continue
        try:
            _run_job(
                args, profile, out, targets, plft, path, target_name, arm, n_shots, split, seed
            )
        finally:
            _release(path)


def _claim(path):
    """Claim a job for this process (several processes may share one ``runs/`` folder):
    ``False`` when another live process holds it. A claim left by a killed process is taken
    over, so a killed run still resumes."""
    claim = path.with_name(path.name + ".claim")
    claim.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = int(claim.read_text() or 0)
                os.kill(holder, 0)
                return False  # a live process runs it
            except (ValueError, ProcessLookupError, FileNotFoundError):
                claim.unlink(missing_ok=True)  # stale: its process is gone
                continue
            except PermissionError:
                return False
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        if path.exists():  # finished by another process meanwhile
            _release(path)
            return False
        return True
    return False


def _release(path):
    path.with_name(path.name + ".claim").unlink(missing_ok=True)


def _run_job(args, profile, out, targets, plft, path, target_name, arm, n_shots, split, seed):
    if target_name not in targets:
        targets[target_name] = Target(target_name)
        plft[target_name] = plft_model(target_name, profile, args.device)
    target, seg = targets[target_name], plft[target_name]
    start = time.perf_counter()
    pool, test = target.split(split, profile)
    table = pool_table(out, target, pool, seg, profile)
    scored = time.perf_counter()
    n_support = n_shots * per_target(profile["patches_per_shot"], target_name)
    scores = (
        np.zeros(len(table["consistency"]))
        if arm == "plft"
        else arm_scores(arm, table, seed, profile)
    )
    chosen = np.argsort(-np.where(np.isnan(scores), -np.inf, scores), kind="stable")[:n_support]
    miou, per_image = fine_tune_and_evaluate(
        seg,
        target,
        pool,
        test,
        chosen,
        table,
        seed,
        profile,
        n_support,
        epochs=0 if arm == "plft" else None,
    )
    gt_fg = table["gt_foreground"][chosen]
    record = {
        "target": target_name,
        "selector": arm,
        "n_shots": n_shots,
        "split": split,
        "seed": seed,
        "miou": miou,
        "reads_labels": ARMS[arm][0],
        "per_image_iou": per_image,
        "profile": args.profile,
        "support_images": int(len(set(table["image"][chosen].tolist()))),
        "support_gt_fg_mean": float(gt_fg.mean() / profile["patch_size"] ** 2),
        "support_gt_nonempty": float(np.mean(gt_fg >= profile["min_foreground"])),
        "pool_images": [target.names[i] for i in pool],
        "test_images": [target.names[i] for i in test],
        "n_candidates": int(len(scores)),
        "n_support": int(n_support),
        "support": [
            [
                target.names[int(table["image"][c])],
                int(table["coords"][c][0]),
                int(table["coords"][c][1]),
            ]
            for c in chosen
        ],
        "seconds_scoring": scored - start,
        "seconds_total": time.perf_counter() - start,
        "torch_threads": args.threads,
        "load_avg": os.getloadavg()[0],
    }
    atomic_write_json(path, record)
    print(
        f"{target_name} {arm} {n_shots}shot split{split} seed{seed}: {miou:.1f} "
        f"({record['seconds_total']:.0f} s, load {record['load_avg']:.1f})",
        flush=True,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="cheap", choices=sorted(PROFILES))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "label_free"))
    parser.add_argument("--targets", nargs="+", default=["ssTEM", "EM"])
    parser.add_argument("--splits", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--shots", nargs="+", type=int, default=[1])
    parser.add_argument(
        "--arms",
        nargs="+",
        choices=list(ARMS),
        default=[a for a in ARMS if a != "gate_stratified_random"],
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    parser.add_argument(
        "--compare-dense",
        type=int,
        default=0,
        metavar="K",
        help="compare the cached exact statistics of the first K pool images "
        "of each split with the dense ones; run nothing else",
    )
    parser.add_argument(
        "--draws",
        type=int,
        default=len(SEEDS),
        choices=range(1, len(SEEDS) + 1),
        help="seeded draws per stochastic arm (the first N of 5); a later run "
        "with more draws adds the missing ones",
    )
    parser.add_argument(
        "--table",
        action="store_true",
        help="write results.csv and print the summary table; run nothing",
    )
    parser.add_argument("--default", default=None, help="arm flagged is_default in results.csv")
    parser.add_argument(
        "--describe",
        action="store_true",
        help="print what each arm picks (no fine-tuning); run nothing",
    )
    args = parser.parse_args(argv)
    if args.describe:
        describe(args)
        return 0
    if args.compare_dense:
        compare_dense(args)
        return 0
    if args.table:
        table(args.out, args.default)
        return 0
    if any(s not in range(5) for s in args.splits):
        parser.error("only the authors' splits 0-4 may be run (5-9 are held out)")
    run(args)


if __name__ == "__main__":
    sys.exit(main())
