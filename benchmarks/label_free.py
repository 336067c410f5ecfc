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
    PYTHONPATH=$PWD python benchmarks/label_free.py --table benchmarks/results/label_free

Profiles (``PROFILES`` below): ``cheap`` — 128² candidates on a stride-128 grid, 8 patches
per shot, 20 epochs at batch 4, EM pool cut to 8 images and EM test set to 6 images,
test images centre-cropped to half their side; ``mid`` — 256² on a stride-128 grid, 16 patches
per shot, EM pool cut to 24 images, full-size test images; ``paper`` — 256² at stride 30, P_t
500/400, 20 epochs, batch 64, all pool and test images at full size, statistics scored densely
(whole-image passes; ``--device cuda`` for a GPU).
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
if not SHARED.exists():
    SHARED = Path("/work/shared")

PROFILES = {
    "cheap": {
        "patch_size": 128,
        "stride": 128,
        "patches_per_shot": 8,
        "epochs": 20,
        "batch_size": 4,
        "pool_images": {"EM": 8},
        "test_images": {"EM": 6},
        "test_crop": 0.5,
        "min_foreground": 90,  # 360 px scaled to 128² patches
        "n_clusters": 8,
        "max_per_image": 1,
    },
    # the paper's patch size and full-size test images, a coarser candidate grid and a small
    # support set: scoring stays exact per patch and one run takes about a minute
    "mid": {
        "patch_size": 256,
        "stride": 128,
        "patches_per_shot": 16,
        "epochs": 20,
        "batch_size": 8,
        "pool_images": {"EM": 24},
        "test_images": {"EM": 11},
        "test_crop": None,
        "min_foreground": 360,
        "n_clusters": 16,
        "max_per_image": 1,
    },
    # the paper's sizes. At stride 30 exact per-patch scoring would cost ~40x a whole-image
    # pass (676 overlapping 256² patches per ssTEM image), so the statistics are dense: whole
    # images through the library's dense selectors, read off per candidate by box sums.
    # Encoder features per patch are skipped (hours on a CPU): no representative arms here.
    "paper": {
        "patch_size": 256,
        "stride": 30,
        "patches_per_shot": {"ssTEM": 500, "EM": 400},
        "epochs": 20,
        "batch_size": 64,
        "pool_images": {},
        "test_images": {},
        "test_crop": None,
        "min_foreground": 360,
        "n_clusters": None,
        "max_per_image": None,
        "dense": True,
        "features": False,
    },
}
for _name, _profile in PROFILES.items():
    _profile["name"] = _name
SEEDS = (0, 1, 2, 3, 4)


def per_target(value, target):
    return value.get(target) if isinstance(value, dict) else value


def atomic_write_json(path, obj):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def evenly_spaced(items, k):
    """``k`` items at evenly spaced positions (no randomness, no label read)."""
    items = list(items)
    if k is None or k >= len(items):
        return items
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, k).round().astype(int)]


def centre_crop(image, frac):
    if frac is None:
        return image
    h, w = image.shape
    ch, cw = (int(h * frac) // 8) * 8, (int(w * frac) // 8) * 8
    r, c = (h - ch) // 2, (w - cw) // 2
    return image[r : r + ch, c : c + cw]


class Target:
    """Images, masks and the authors' splits of one target dataset."""

    def __init__(self, name):
        from kwtl.datasets import load_benchmark

        bench = load_benchmark(str(SHARED / "data"), names=[name])
        order = np.argsort(bench.names)  # the authors index the sorted file list
        self.name = name
        self.names = [bench.names[i] for i in order]
        self.images = [bench.images[i] for i in order]
        self.masks = [np.asarray(bench.masks[i]) > 0 for i in order]
        self.splits = json.loads((SHARED / "reference" / "splits.json").read_text())[name]

    def split(self, k, profile):
        if not 0 <= k <= 4:
            raise ValueError("only the authors' splits 0-4 may be run here")
        pool = sorted(int(i) for i in self.splits["unlabelled"][str(k)])
        test = sorted(int(i) for i in self.splits["test"][str(k)])
        pool = evenly_spaced(pool, per_target(profile["pool_images"], self.name))
        test = evenly_spaced(test, per_target(profile["test_images"], self.name))
        return pool, test


def image_statistics(segmenter, image, mask, profile, magnitude=1.3):
    """Per-candidate statistics of one image's patch grid, computed by the shipped selectors
    (:meth:`~kwtl.selection.BaseSelector.score`): exactly per patch, or from whole-image
    passes (``dense=True``) when the profile says ``dense`` — a stride-30 grid then costs a
    few passes per image instead of one per patch. Encoder features (those of
    :class:`~kwtl.selection.RepresentativeSelector`) only if the profile asks for them
    (``features``), else an empty column."""
    from kwtl.datasets import PatchSet
    from kwtl.selection import PredictedForegroundSelector, make_selector

    dense = bool(profile.get("dense", False))
    pool = PatchSet.from_images([image], profile["patch_size"], profile["stride"])
    stats = {
        "consistency": make_selector("consistency", magnitude=magnitude, dense=dense),
        "fg_fraction": PredictedForegroundSelector(dense=dense),
        "mean_proba": PredictedForegroundSelector(measure="mean_proba", dense=dense),
        "entropy": make_selector("entropy", dense=dense),
    }
    stats = {
        k: np.asarray(sel.score(pool, segmenter), dtype=np.float64) for k, sel in stats.items()
    }
    if profile.get("features", True):
        stats["features"] = np.concatenate(
            [segmenter.encoder_features(batch) for _, batch in pool.iter_batches(16)]
        ).astype(np.float32)
    else:
        stats["features"] = np.zeros((len(pool), 0), dtype=np.float32)
    return {**stats, **candidate_truth(pool, mask)}


def candidate_truth(pool, mask):
    """Ground-truth foreground pixels of each candidate (read only by the label-reading arms
    and the descriptions) and its (row, col)."""
    ph, pw = pool.patch_size
    coords = pool.coords
    gt = np.array([mask[r : r + ph, c : c + pw].sum() for _, r, c in coords])
    return {"gt_foreground": gt, "coords": coords[:, 1:]}


def load_stats(out, target, idx, segmenter, profile):
    path = out / "cache" / profile["name"] / f"{target.name}_{idx:03d}.npz"
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    stats = image_statistics(segmenter, target.images[idx], target.masks[idx], profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    os.close(fd)
    np.savez(tmp, **stats)
    os.replace(tmp, path)
    return stats


def pool_table(out, target, pool, segmenter, profile):
    parts = [load_stats(out, target, i, segmenter, profile) for i in pool]
    table = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    table["image"] = np.concatenate(
        [np.full(len(p["consistency"]), i) for i, p in zip(pool, parts)]
    )
    return table


# ---------------------------------------------------------------- arms
# name -> (reads_labels, stochastic, description)
ARMS = {
    "plft": (False, False, "no support fine-tuning: the authors' PLFT model alone (reference)"),
    "random": (False, True, "uniform over all candidates"),
    "gate_random": (
        False,
        True,
        "uniform inside the label-free gate (predicted fg >= pool median)",
    ),
    "consistency": (False, False, "the paper's consistency, top-n, no filter"),
    "gate_consistency": (False, False, "consistency top-n inside the label-free gate"),
    "stratified_consistency": (
        False,
        True,
        "3 predicted-fg strata, sampling ∝ consistency^1, <= max_per_image per image first",
    ),
    "gate_stratified_random": (
        False,
        True,
        "retired (not a shipped selector): inside the "
        "gate, 3 fg strata, uniform, <= max_per_image per image first",
    ),
    "representative": (False, False, "k-means on encoder features, nearest each centre"),
    "gate_representative": (False, False, "k-means representatives inside the gate"),
    "gt_consistency": (True, False, "the paper's protocol: consistency after the GT filter"),
    "gt_random": (True, True, "uniform after the GT filter (label-reading reference)"),
}


def arm_scores(arm, table, seed, profile):
    """Scores over the pool's candidates for one arm (higher = annotate first).

    Every label-free arm is the shipped selector of that name
    (:func:`kwtl.selection.make_selector`), fed the cached per-candidate statistics through
    its public methods (``score`` on the pool's candidates for the draws, which read no
    pixel, and ``scores_from`` for the compositions), so what is measured is what
    ``kwtl select`` and ``FewShotSegmentation`` run.
    """
    from kwtl.datasets import PatchSet
    from kwtl.selection import SELECTORS, make_selector
    from kwtl.selection._gate import gate_mask

    n = len(table["consistency"])
    fg = table["fg_fraction"]
    cons = table["consistency"]
    # the candidates' positions; the draws read no pixel, so the images are zero-memory
    # stand-ins of a size that holds every candidate
    size = profile["patch_size"]
    extent = np.broadcast_to(np.uint8(0), tuple(table["coords"].max(axis=0) + size))
    pool = PatchSet(
        [extent] * (int(table["image"].max()) + 1),
        np.column_stack([table["image"], table["coords"]]),
        size,
    )
    if arm in ("gt_consistency", "gt_random"):  # label-reading references, not shipped
        keep = table["gt_foreground"] >= profile["min_foreground"]
        inner = cons if arm == "gt_consistency" else arm_scores("random", table, seed, profile)
        return np.where(keep, inner, -np.inf)
    if arm not in SELECTORS:
        raise ValueError(
            f"arm {arm!r} is not a shipped selector (kwtl.selection.SELECTORS); "
            "it is kept only to read old results"
        )
    if arm in ("representative", "gate_representative") and table["features"].shape[1] == 0:
        raise ValueError(
            f"the {profile['name']!r} profile computes no encoder features; "
            f"the {arm} arm needs them"
        )
    selector = make_selector(
        arm,
        random_state=seed,
        magnitude=1.3,
        n_clusters=profile["n_clusters"],
        max_per_image=profile["max_per_image"],
    )
    if arm == "random":
        return selector.score(pool, None)
    if arm == "consistency":
        return cons
    if arm == "representative":
        return selector.scores_from(table["features"])
    if arm == "stratified_consistency":
        return selector.scores_from(cons, fg, table["image"])
    # a foreground gate around an inner selector: the inner one ranks the gated candidates
    keep = gate_mask(fg, selector.quantile, selector.threshold)
    inner_selector = selector.inner_selector()
    inner = np.full(n, np.nan)
    if arm == "gate_consistency":
        inner[keep] = cons[keep]
    elif arm == "gate_random":
        inner[keep] = inner_selector.score(pool.subset(np.flatnonzero(keep)), None)
    elif arm == "gate_representative":
        inner[keep] = inner_selector.scores_from(table["features"][keep])
    else:
        raise ValueError(f"no statistics for the arm {arm!r}")
    return selector.scores_from(inner, fg)


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
    from kwtl.models import load_pretrained

    if target_name not in targets:
        targets[target_name] = Target(target_name)
        plft[target_name] = load_pretrained(
            f"authors:{target_name}",
            source=SHARED / "weights",
            precision="fp32",
            patch_size=profile["patch_size"],
            stride=profile["stride"],
            device=args.device,
        )
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


def _sd_of_draws(groups):
    sds = [np.std(v, ddof=1) for v in groups if len(v) > 1]
    return f"{np.mean(sds):.1f}" if sds else "—"


def table(out, default=None):
    """results.csv (one row per run) and the per-arm summary, paired against random.

    The summary uses the splits where random has its 5 draws ("complete" splits); runs on
    other splits are in results.csv only.
    """
    import csv

    out = Path(out)
    records = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*/*.json"))]
    rows = sorted(
        records, key=lambda r: (r["target"], r["n_shots"], r["selector"], r["split"], r["seed"])
    )
    with open(out / "results.csv.tmp", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "target",
                "selector",
                "n_shots",
                "split",
                "seed",
                "miou",
                "reads_labels",
                "is_default",
                "profile",
                "support_images",
                "support_gt_nonempty",
                "seconds_total",
            ]
        )
        for r in rows:
            w.writerow(
                [
                    r["target"],
                    r["selector"],
                    r["n_shots"],
                    r["split"],
                    r["seed"],
                    f"{r['miou']:.2f}",
                    str(r["reads_labels"]).lower(),
                    str(r["selector"] == default).lower(),
                    r["profile"],
                    r["support_images"],
                    f"{r['support_gt_nonempty']:.3f}",
                    f"{r['seconds_total']:.0f}",
                ]
            )
    os.replace(out / "results.csv.tmp", out / "results.csv")
    lines = []
    groups = sorted(
        {(r["profile"], r["target"], r["n_shots"]) for r in records},
        key=lambda g: (list(PROFILES).index(g[0]), g[1], g[2]),
    )
    for profile, target, n_shots in groups:
        recs = [
            r
            for r in records
            if (r["profile"], r["target"], r["n_shots"]) == (profile, target, n_shots)
        ]
        per = {}
        for r in recs:
            per.setdefault(r["selector"], {}).setdefault(r["split"], []).append(r["miou"])
        base = per.get("random", {})
        lines.append(f"\n### {target}, {n_shots} shot ({recs[0]['profile']} profile)\n")
        lines.append(
            "| arm | reads labels | splits | runs | mean mIoU | sd of draws "
            "| Δ vs random (paired) | wins / splits | worst Δ "
            "| support: images, non-empty |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for arm in ARMS:
            if arm not in per:
                continue
            complete = sorted(k for k in base if len(base[k]) >= 5)
            splits = sorted(k for k in per[arm] if k in complete) or sorted(per[arm])
            split_means = [float(np.mean(per[arm][k])) for k in splits]
            paired = [k for k in splits if k in complete]
            deltas = [float(np.mean(per[arm][k])) - float(np.mean(base[k])) for k in paired]
            sup = [r for r in recs if r["selector"] == arm and r["split"] in splits]
            mean_delta = f"{np.mean(deltas):+.1f}" if deltas and arm != "random" else "—"
            wins = (
                f"{sum(d > 0 for d in deltas)} / {len(deltas)}"
                if deltas and arm != "random"
                else "—"
            )
            worst = f"{min(deltas):+.1f}" if deltas and arm != "random" else "—"
            lines.append(
                f"| {arm} | {'yes' if ARMS[arm][0] else 'no'} | "
                f"{','.join(map(str, splits))} | {sum(len(per[arm][k]) for k in splits)} | "
                f"{np.mean(split_means):.1f} | "
                f"{_sd_of_draws([per[arm][k] for k in splits])} | "
                f"{mean_delta} | {wins} | {worst} | "
                f"{np.mean([r['support_images'] for r in sup]):.1f}, "
                f"{100 * np.mean([r['support_gt_nonempty'] for r in sup]):.0f} % |"
            )
        lines.extend(_per_split_lines(per))
    text = "\n".join(lines) + "\n"
    print(text)
    return text


def _per_split_lines(per):
    """Per split: random's mean over its draws (and their number) and every other arm's
    split mean minus it, so the paired wins can be checked by eye."""
    base = per.get("random", {})
    splits = sorted(base)
    if not splits:
        return []
    lines = [
        "",
        "Per split: random's mean mIoU (draws), and each arm's split mean minus it "
        "(draws of the arm in brackets when more than one).",
        "",
        "| arm | " + " | ".join(f"split {k}" for k in splits) + " |",
        "|---|" + "---|" * len(splits),
    ]
    lines.append(
        "| random | "
        + " | ".join(f"{np.mean(base[k]):.1f} ({len(base[k])})" for k in splits)
        + " |"
    )
    for arm in ARMS:
        if arm == "random" or arm not in per:
            continue
        cells = []
        for k in splits:
            v = per[arm].get(k)
            cells.append(
                ""
                if not v
                else f"{np.mean(v) - np.mean(base[k]):+.1f}"
                + (f" ({len(v)})" if len(v) > 1 else "")
            )
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return lines


def compare_dense(args):
    """How the dense statistics (whole-image passes, the ``paper`` profile's) agree with the
    exact per-patch ones cached for this profile: Spearman correlation per statistic and
    the overlap of the two top-n sets of consistency, per image."""
    from scipy.stats import spearmanr

    from kwtl.models import load_pretrained

    profile = PROFILES[args.profile]
    dense_profile = dict(profile, dense=True, features=False)
    out = Path(args.out)
    for target_name in args.targets:
        target = Target(target_name)
        seg = load_pretrained(
            f"authors:{target_name}",
            source=SHARED / "weights",
            precision="fp32",
            device=args.device,
            patch_size=profile["patch_size"],
            stride=profile["stride"],
        )
        done = set()
        for split in args.splits:
            pool, _ = target.split(split, profile)
            for idx in [i for i in pool if i not in done][: args.compare_dense]:
                done.add(idx)
                exact = load_stats(out, target, idx, seg, profile)
                start = time.perf_counter()
                dense = image_statistics(seg, target.images[idx], target.masks[idx], dense_profile)
                seconds = time.perf_counter() - start
                n = max(1, len(exact["consistency"]) // 4)
                top = (
                    len(
                        set(np.argsort(-exact["consistency"])[:n])
                        & set(np.argsort(-dense["consistency"])[:n])
                    )
                    / n
                )
                rho = {
                    k: spearmanr(exact[k], dense[k]).correlation
                    for k in ("consistency", "fg_fraction", "entropy")
                }
                print(
                    f"{target_name} {target.names[idx]}: {len(exact['consistency'])} "
                    f"candidates; Spearman exact vs dense "
                    + ", ".join(f"{k} {v:+.3f}" for k, v in rho.items())
                    + f"; top-quarter consistency overlap {100 * top:.0f} %; "
                    f"dense {seconds:.0f} s",
                    flush=True,
                )


def describe(args):
    """What each arm would pick (no fine-tuning): support images and the share of picked
    candidates with ground-truth foreground (read here only to describe the picks), plus
    how the label-free foreground signals rank against the truth on the pool."""
    from scipy.stats import spearmanr

    from kwtl.models import load_pretrained

    profile = PROFILES[args.profile]
    out = Path(args.out)
    for target_name in args.targets:
        target = Target(target_name)
        seg = load_pretrained(
            f"authors:{target_name}",
            source=SHARED / "weights",
            precision="fp32",
            device=args.device,
            patch_size=profile["patch_size"],
            stride=profile["stride"],
        )
        for split in args.splits:
            pool, _ = target.split(split, profile)
            t = pool_table(out, target, pool, seg, profile)
            gt = t["gt_foreground"]
            nonempty = gt >= profile["min_foreground"]
            print(
                f"\n{target_name} split {split}: {len(gt)} candidates, "
                f"{100 * nonempty.mean():.0f} % with >= {profile['min_foreground']} GT px; "
                f"true fg {100 * gt.mean() / profile['patch_size'] ** 2:.1f} %, predicted "
                f"(p >= 0.5) {100 * t['fg_fraction'].mean():.1f} %"
            )
            for key in ("fg_fraction", "mean_proba", "consistency", "entropy"):
                upper = t[key] >= np.quantile(t[key], 0.5)
                print(
                    f"  {key:12s} Spearman vs GT fg {spearmanr(t[key], gt).correlation:+.2f}; "
                    f"non-empty in upper half {100 * nonempty[upper].mean():.0f} %, "
                    f"lower half {100 * nonempty[~upper].mean():.0f} %"
                )
            n = per_target(profile["patches_per_shot"], target_name)
            for arm in args.arms:
                seeds = SEEDS if ARMS[arm][1] else (0,)
                picks = [
                    np.argsort(-arm_scores(arm, t, s, profile), kind="stable")[:n] for s in seeds
                ]
                print(
                    f"  {arm:24s} images {np.mean([len(set(t['image'][c])) for c in picks]):4.1f}"
                    f"  non-empty {100 * np.mean([nonempty[c].mean() for c in picks]):3.0f} %"
                    f"  GT fg {100 * np.mean([gt[c].mean() for c in picks]) / profile['patch_size'] ** 2:4.1f} %"
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
