"""The tables and the inspections (``--table``, ``--compare-dense``, ``--describe``) of
``label_free.py``. Not part of kwtl."""

import json
import os
import time
from pathlib import Path

import numpy as np

from _label_free_data import (
    ARMS,
    PROFILES,
    SEEDS,
    Target,
    image_statistics,
    load_stats,
    per_target,
    plft_model,
    pool_table,
    arm_scores,
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

    profile = PROFILES[args.profile]
    dense_profile = dict(profile, dense=True, features=False)
    out = Path(args.out)
    for target_name in args.targets:
        target = Target(target_name)
        seg = plft_model(target_name, profile, args.device)
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

    profile = PROFILES[args.profile]
    out = Path(args.out)
    for target_name in args.targets:
        target = Target(target_name)
        seg = plft_model(target_name, profile, args.device)
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
