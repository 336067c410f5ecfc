"""results.csv, the tables and the figures of the drawn-area benchmark (``effort.py table``).

Every comparison is paired: an arm's draw k against random's draw k (same split, same
fine-tuning seed k), averaged per split, then over splits.
"""

import csv
import os
from collections import namedtuple

import numpy as np

from _effort_plan import (
    ARMS,
    BUDGETS,
    RECIPES,
    SEEDS,
    SPLITS,
    TARGETS,
    paired_by_draw,
    b1_gate,
    best_label_free_arms,
    cpu_eligible,
    default_recipe,
    next_arms,
    recipe_cost,
    mean_of_split_means,
    runs_of,
    CPU_SECONDS_PER_PASS,
)
from _effort_figures import curve_band, curve_figure
from _effort_sched import load_records

# state: "pass", "fail" (measured or settled) or "open" (more runs could still change it)
Verdict = namedtuple("Verdict", "passed area notes state")

COLUMNS = [
    "target",
    "selector",
    "budget_images",
    "n_patches",
    "annotated_px",
    "annotated_fg_px",
    "annotated_objects",
    "images_touched",
    "split",
    "seed",
    "round",
    "recipe",
    "default_recipe",
    "miou",
    "reads_labels",
    "is_default",
    "phase",
    "seconds_finetune",
    "device",
    "tf32",
]


def write_csv(out, records, recipe, default_selector):
    order = ("target", "recipe", "arm", "budget", "round", "split", "seed")
    rows = sorted(records, key=lambda r: tuple(r[k] for k in order))
    tmp = out / "results.csv.tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            w.writerow(
                [
                    r["target"],
                    r["arm"],
                    r["budget"],
                    r["n_patches"],
                    r["annotated_px"],
                    r["annotated_fg_px"],
                    r["annotated_objects"],
                    r["images_touched"],
                    r["split"],
                    r["seed"],
                    r["round"],
                    r["recipe"],
                    str(r["recipe"] == recipe).lower(),
                    f"{r['miou']:.2f}",
                    str(bool(r["reads_labels"])).lower(),
                    str(r["arm"] == default_selector and r["round"] == 1).lower(),
                    r["phase"],
                    r["seconds_finetune"],
                    r["device"],
                    str(bool(r.get("tf32"))).lower(),
                ]
            )
    os.replace(tmp, out / "results.csv")


def paired(records, arm, budget, recipe, target, base_arm="random", round_=1):
    """{split: [arm - random per seed]} for seeds both have."""
    base = {
        (r["split"], r["seed"]): r["miou"]
        for r in runs_of(
            records, arm=base_arm, budget=budget, recipe=recipe, target=target, round=1
        )
    }
    out = {}
    for r in runs_of(records, arm=arm, budget=budget, recipe=recipe, target=target, round=round_):
        if (r["split"], r["seed"]) in base:
            out.setdefault(r["split"], []).append(r["miou"] - base[(r["split"], r["seed"])])
    return out


def _partial_delta(values_by_split):
    """A paired Δ cell: the mean of split means, with the number of splits in brackets
    when some are missing (so a partial budget is never read as a finished one)."""
    if not values_by_split:
        return "—"
    cell = f"{mean_of_split_means(values_by_split):+.1f}"
    return cell if len(values_by_split) == len(SPLITS) else f"{cell} ({len(values_by_split)})"


def recipe_table(records):
    lines = [
        "| recipe | steps × batch | CPU s (est.) | ≤ 6 min | ssTEM | EM | mean | "
        "Δ vs paper20 (paired) | sd of draws |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in RECIPES:
        cells, deltas, sds = [], [], []
        for t in TARGETS:
            by_split = {}
            for r in runs_of(records, arm="random", budget=1, recipe=name, target=t, round=1):
                if r["seed"] < 3:
                    by_split.setdefault(r["split"], []).append(r["miou"])
            cells.append(
                f"{mean_of_split_means(by_split):.1f} ({len(by_split)})" if by_split else "—"
            )
            base = {
                (r["split"], r["seed"]): r["miou"]
                for r in runs_of(
                    records, arm="random", budget=1, recipe="paper20", target=t, round=1
                )
            }
            for r in runs_of(records, arm="random", budget=1, recipe=name, target=t, round=1):
                if (r["split"], r["seed"]) in base and r["seed"] < 3:
                    deltas.append(r["miou"] - base[(r["split"], r["seed"])])
            sds += [np.std(v, ddof=1) for v in by_split.values() if len(v) > 1]
        means = [float(c.split()[0]) for c in cells if c != "—"]
        r = RECIPES[name]
        steps = r.get("steps") or f"{r['epochs']} ep"
        lines.append(
            f"| {name} | {steps} × {r.get('batch_size', 8)} | "
            f"{recipe_cost(name) * CPU_SECONDS_PER_PASS:.0f} | "
            f"{'yes' if cpu_eligible(name) else 'no'} | {cells[0]} | {cells[1]} | "
            f"{np.mean(means) if len(means) == 2 else float('nan'):.1f} | "
            f"{np.mean(deltas) if deltas else float('nan'):+.1f} | "
            f"{np.mean(sds) if sds else float('nan'):.1f} |"
        )
    return lines


def arms_table(records, recipe, budget=1):
    lines = [
        "| arm | reads labels | target | mean mIoU | Δ vs random (paired) | wins / splits |"
        " worst split Δ | drawn fg % | objects | images |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in ARMS:  # random_fixed (one selection, seeds 1-4) is the seed-spread table's
        for t in TARGETS:
            rs = runs_of(records, arm=arm, budget=budget, recipe=recipe, target=t, round=1)
            if not rs:
                continue
            by_split = {}
            for r in rs:
                by_split.setdefault(r["split"], []).append(r["miou"])
            d = paired(records, arm, budget, recipe, t) if arm != "random" else {}
            split_d = [np.mean(v) for v in d.values()]
            lines.append(
                f"| {arm} | {'yes' if ARMS[arm][0] else 'no'} "
                f"| {t} | {mean_of_split_means(by_split):.1f} ({len(rs)}) | "
                + (
                    f"{np.mean(split_d):+.1f} | {sum(x > 0 for x in split_d)} / {len(split_d)} | "
                    f"{min(split_d):+.1f}"
                    if split_d
                    else "— | — | —"
                )
                + f" | {100 * np.mean([r['annotated_fg_px'] / r['annotated_px'] for r in rs]):.1f}"
                f" | {np.mean([r['annotated_objects'] for r in rs]):.0f}"
                f" | {np.mean([r['images_touched'] for r in rs]):.1f} |"
            )
    return lines


def first_look_table(records, recipe, cpu_records, budget=1):
    """Every arm's draw 0 at ``budget`` against random's draw 0, split by split: against the
    grid's random (on the GPU) and random's own CPU run (``cpu_check/``) where there is one;
    and against the mean of random's draws 0-2 of the split. One draw is not the rule's
    five: the fine-tuning seed alone moves a run by sd 2-3."""
    lines = [
        "| arm | target | draw 0 per split (0-4) | mean | Δ vs random draw 0 (GPU grid) "
        "| wins | Δ vs random draw 0 (CPU) | wins | Δ vs random's mean of draws 0-2 (GPU) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def draw0(rs, arm, t):
        return {
            r["split"]: r["miou"]
            for r in runs_of(rs, arm=arm, budget=budget, recipe=recipe, target=t, round=1, seed=0)
        }

    for arm in ARMS:
        for t in TARGETS:
            mine = draw0(records, arm, t)
            if not mine or arm == "random":
                continue
            cells = [", ".join(f"{mine[s]:.1f}" if s in mine else "—" for s in SPLITS)]
            cells.append(f"{np.mean(list(mine.values())):.1f} ({len(mine)})")
            for base in (draw0(records, "random", t), draw0(cpu_records, "random", t)):
                d = [mine[s] - base[s] for s in mine if s in base]
                cells += (
                    [f"{np.mean(d):+.1f} ({len(d)})", f"{sum(x > 0 for x in d)} / {len(d)}"]
                    if d
                    else ["—", "—"]
                )
            draws = {}  # unpaired in selection, but three seeds on the baseline's side
            for r in runs_of(
                records, arm="random", budget=budget, recipe=recipe, target=t, round=1
            ):
                if r["seed"] < 3:
                    draws.setdefault(r["split"], []).append(r["miou"])
            d = [mine[s] - np.mean(draws[s]) for s in mine if s in draws]
            cells.append(f"{np.mean(d):+.1f}" if d else "—")
            lines.append(f"| {arm} | {t} | " + " | ".join(cells) + " |")
    return lines


def draws_table(records, recipe):
    """Every arm against random at B = 1, draw by draw: the mean over splits of draw k's
    paired difference (a draw missing splits: their count in brackets); over the complete
    draws, their mean and sd, and per split the mean over draws: wins and the worst."""
    lines = [
        "| arm | target | Δ draw 0 | 1 | 2 | 3 | 4 | mean (complete draws) | sd of draws "
        "| wins / splits | worst split |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for arm in (a for a in ARMS if a != "random"):
        for t in TARGETS:
            by_seed = paired_by_draw(records, arm, recipe, t)
            if not by_seed:
                continue
            cells = [_partial_delta(by_seed.get(k, {})) for k in SEEDS]
            done = [k for k in SEEDS if len(by_seed.get(k, ())) == len(SPLITS)]
            means = [np.mean(list(by_seed[k].values())) for k in done]
            split_means = [np.mean([by_seed[k][s] for k in done]) for s in SPLITS] if done else []
            cells += [
                f"{np.mean(means):+.1f} ({len(done)})" if done else "—",
                f"{np.std(means, ddof=1):.1f}" if len(done) > 1 else "—",
                f"{sum(x > 0 for x in split_means)} / {len(SPLITS)}" if done else "—",
                f"{min(split_means):+.1f}" if done else "—",
            ]
            lines.append(f"| {arm} | {t} | " + " | ".join(cells) + " |")
    return lines


def seed_spread(records, recipe):
    """sd over fine-tuning seeds with the selection fixed, beside sd over random draws."""
    lines = [
        "| target | sd, fine-tuning seed only (random draw 0, seeds 0-4) | "
        "sd, random draws (selection and seed) |",
        "|---|---|---|",
    ]
    for t in TARGETS:
        fixed, draws = {}, {}
        for r in runs_of(records, budget=1, recipe=recipe, target=t, round=1):
            if r["arm"] == "random_fixed" or (r["arm"] == "random" and r["seed"] == 0):
                fixed.setdefault(r["split"], []).append(r["miou"])
            if r["arm"] == "random":
                draws.setdefault(r["split"], []).append(r["miou"])
        sd = [np.std(v, ddof=1) for v in fixed.values() if len(v) > 1]
        sd2 = [np.std(v, ddof=1) for v in draws.values() if len(v) > 1]
        lines.append(
            f"| {t} | {np.mean(sd) if sd else float('nan'):.1f} ({len(sd)} splits) | "
            f"{np.mean(sd2) if sd2 else float('nan'):.1f} ({len(sd2)} splits) |"
        )
    return lines


def curve_stats(records, arm, recipe, target):
    """Mean mIoU per budget (mean of split means) and the area under the curve over
    log2(budget), normalised by its span (the curve's mean height)."""
    means = {b: mean for b, mean, *_ in curve_band(records, arm, recipe, target)}
    if len(means) < len(BUDGETS):
        return means, float("nan")
    x = np.log2(BUDGETS)
    y = [means[b] for b in BUDGETS]
    return means, float(np.trapezoid(y, x) / (x[-1] - x[0]))


def curves_table(records, recipe, arms):
    lines = [
        "| arm | target | "
        + " | ".join(f"B = {b}" for b in BUDGETS)
        + " | area (mean height) | Δ vs random per budget |",
        "|---|---|" + "---|" * len(BUDGETS) + "---|---|",
    ]
    for arm in arms:
        for t in TARGETS:
            means, auc = curve_stats(records, arm, recipe, t)
            if not means:
                continue
            lines.append(
                f"| {arm} | {t} | "
                + " | ".join(f"{means[b]:.1f}" if b in means else "—" for b in BUDGETS)
                + (f" | {auc:.1f} | " if np.isfinite(auc) else " | — | ")
                + (
                    ", ".join(_partial_delta(paired(records, arm, b, recipe, t)) for b in BUDGETS)
                    if arm != "random"
                    else "—"
                )
                + " |"
            )
    return lines


def random_curve_table(records, recipe):
    """Random selection at every budget: what a lab gets for the area it draws. Beside the
    mean over all draws, draw 0 alone, which is paired across budgets (a smaller budget's
    patches are the start of a larger one's, and the fine-tuning seed is the same)."""
    lines = [
        "| target | B (image-equivalents) | patches of 256² | drawn fg % | mIoU: mean of split "
        "means (runs) | range of split means | draw 0: mean | draw 0 per split (0-4) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in TARGETS:
        for b in BUDGETS:
            rs = runs_of(records, arm="random", budget=b, recipe=recipe, target=t, round=1)
            if not rs:
                continue
            by_split = {}
            for r in rs:
                by_split.setdefault(r["split"], []).append(r["miou"])
            means = [np.mean(v) for v in by_split.values()]
            draw0 = {r["split"]: r["miou"] for r in rs if r["seed"] == 0}
            fg = 100 * np.mean([r["annotated_fg_px"] / r["annotated_px"] for r in rs])
            lines.append(
                f"| {t} | {b} | {rs[0]['n_patches']} | {fg:.1f} | "
                f"{np.mean(means):.1f} ({len(rs)}; {len(by_split)} splits) | "
                f"{min(means):.1f}–{max(means):.1f} | "
                + (f"{np.mean(list(draw0.values())):.1f}" if len(draw0) == len(SPLITS) else "—")
                + " | "
                + ", ".join(f"{draw0[s]:.1f}" if s in draw0 else "—" for s in SPLITS)
                + " |"
            )
    return lines


def rounds_table(records, recipe):
    lines = [
        "| budget | target | two rounds (mean) | round 1 alone (B/2) | random, one round "
        "| Δ two rounds vs random (paired) | wins / splits |",
        "|---|---|---|---|---|---|---|",
    ]
    for b in (1, 2):
        for t in TARGETS:
            rs = runs_of(records, arm="round2_entropy", budget=b, recipe=recipe, target=t, round=2)
            if not rs:
                continue
            d = paired(records, "round2_entropy", b, recipe, t, round_=2)
            split_d = [np.mean(v) for v in d.values()]
            drawn = {(r["split"], r["seed"]) for r in rs}  # random on the same draws only
            base = [
                r
                for r in runs_of(records, arm="random", budget=b, recipe=recipe, target=t, round=1)
                if (r["split"], r["seed"]) in drawn
            ]
            lines.append(
                f"| {b} | {t} | {np.mean([r['miou'] for r in rs]):.1f} ({len(rs)}) | "
                f"{np.mean([r['round1_miou'] for r in rs]):.1f} | "
                f"{np.mean([r['miou'] for r in base]):.1f} | "
                f"{np.mean(split_d):+.1f} | {sum(x > 0 for x in split_d)} / "
                f"{len(split_d)} |"
            )
    return lines


def selector_rule(records, recipe, arms):
    """Issue 20's rule for the default selector (quoted in the README): per candidate arm,
    on both targets: mean paired Δ over B <= 1 >= 2, >= 4 of 5 splits won at B <= 1, never
    more than 1 point behind random at any budget; the winner is the passing arm with the
    best area under the curve. A target whose budgets B <= 1 hold every draw on every split
    and fail is settled before B = 2 runs: B = 2 cannot raise the mean or the wins there, and
    can only lower the worst budget. Returns (winner, {arm: Verdict})."""
    verdicts = {}
    small = [b for b in BUDGETS if b <= 1]
    for arm in arms:
        notes, aucs, states = [], [], []
        for t in TARGETS:
            per_b = {b: paired(records, arm, b, recipe, t) for b in BUDGETS}
            done = [b for b in BUDGETS if len(per_b[b]) == len(SPLITS)]
            every_draw = {b for b in done if all(len(v) == len(SEEDS) for v in per_b[b].values())}
            delta = {b: mean_of_split_means(per_b[b]) for b in done}
            behind = [f"B = {b:g}: {delta[b]:+.1f}" for b in sorted(every_draw) if delta[b] < -1]
            if not set(small) <= set(done):
                states.append("fail" if behind else "open")
                notes.append(f"{t}: {behind[0]} → fail, settled" if behind else f"{t}: incomplete")
                continue
            mean_small = np.mean([delta[b] for b in small])
            wins = sum(np.mean([np.mean(per_b[b][s]) for b in small]) > 0 for s in SPLITS)
            worst = min(delta.values())
            passed = mean_small >= 2 and wins >= 4 and worst >= -1
            missing = ", ".join(f"{b:g}" for b in BUDGETS if b not in done)
            if missing:
                settled = behind or (set(small) <= every_draw and not passed)
                states.append("fail" if settled else "open")
                end = f"{'fail, settled' if settled else 'open'} (B = {missing} missing)"
            else:
                aucs.append(curve_stats(records, arm, recipe, t)[1])
                states.append("pass" if passed else "fail")
                end = states[-1]
            notes.append(
                f"{t}: Δ(B≤1) {mean_small:+.1f}, wins {wins}/5, worst {worst:+.1f} → {end}"
            )
        state = "fail" if "fail" in states else "open" if "open" in states else "pass"
        area = float(np.mean(aucs)) if len(aucs) == len(TARGETS) else float("nan")
        verdicts[arm] = Verdict(state == "pass", area, "; ".join(notes), state)
    passing = [a for a, v in verdicts.items() if v[0]]
    winner = max(passing, key=lambda a: verdicts[a][1]) if passing else "random"
    return winner, verdicts


def table(out):
    from kwtl.selection import DEFAULT_SELECTOR

    records = list(load_records([out]).values())
    if not records:
        print(f"no runs under {out}")
        return
    recipe, scores = default_recipe(records)
    write_csv(out, records, recipe, DEFAULT_SELECTOR)
    best = best_label_free_arms(records, recipe) if recipe else []
    lines = ["## Recipes (random selection, B = 1, seeds 0-2, splits 0-4)", ""]
    lines += recipe_table(records)
    lines += [
        "",
        f"Default recipe by the rule: **{recipe}**",
        "",
        "## Fine-tuning seed alone",
        "",
    ] + seed_spread(records, recipe)
    lines += ["", "## Every arm at B = 1 (default recipe)", ""] + arms_table(records, recipe)
    cpu_records = list(load_records([out / "cpu_check"]).values())
    lines += ["", "## Every arm against random at B = 1, draw by draw (paired)", ""]
    lines += draws_table(records, recipe)
    lines += ["", "## Every arm at B = 1, draw 0 only (a first look, not the rule's data)", ""]
    lines += first_look_table(records, recipe, cpu_records)
    lines += ["", "## The rule's bound at B = 1", ""]
    lines += [
        "Random's default can change only if the arm is at most 1 point behind random at every "
        "budget; draws counted when complete on all five splits (open: fewer than five).",
        "",
    ]
    head = "| arm | ssTEM: draws, mean Δ | EM: draws, mean Δ | within the bound (rule: below) |"
    lines += [head, "|---|---|---|---|"]
    for arm, (out_, per) in b1_gate(records, recipe).items():
        cells = [f"{per[t][0]}, {per[t][1]:+.1f}" if per[t][0] else "—" for t in TARGETS]
        verdict = "no" if out_ else "yes" if min(n for n, _ in per.values()) >= 5 else "open"
        lines.append(f"| {arm} | " + " | ".join(cells) + f" | {verdict} |")
    step2 = ", ".join(f"`{a}`" for a in next_arms(records, recipe))
    ranked = ", ".join(f"`{a}` ({d:+.1f})" for a, d in best)
    lines += ["", f"Step 2's arms (draws 1-4 at B = 1; README, run order): {step2}", ""]
    lines += [f"Best label-free arms at B = 1 (mean paired Δ): {ranked}", ""]
    lines += ["## Budget curves", ""]
    lines += curves_table(records, recipe, ["random"] + [a for a, _ in best])
    lines += ["", "## How much to annotate: random selection", ""]
    lines += random_curve_table(records, recipe)
    lines += ["", "## Rounds", ""] + rounds_table(records, recipe)
    winner, verdicts = selector_rule(records, recipe, [a for a, _ in best])
    lines += ["", "## The default-selector rule", ""]
    for a, v in verdicts.items():
        word = {"pass": "passes", "fail": "fails", "open": "open"}[v.state]
        area = "—" if np.isnan(v.area) else f"{v.area:.1f}"
        lines.append(f"- {a}: {word} (area {area}; {v.notes})")
    lines += [f"- default by the rule: **{winner}**"]
    text = "\n".join(lines) + "\n"
    (out / "tables.md").write_text(text)
    print(text)
    curve_figure(out, records, recipe, ["random"] + [a for a, _ in best])
