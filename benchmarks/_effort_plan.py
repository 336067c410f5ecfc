"""What the drawn-area benchmark runs: budgets, recipes, arms, selections, jobs and rules.

Cost is annotated area: a budget of ``B`` image-equivalents is ``B * PER_IMAGE[target]``
non-overlapping 256² patches (ssTEM: 16 = one 1024² image; EM: 12 = one 768x1024 image),
chosen from the stride-30 candidate grid exactly as ``kwtl select`` chooses (a selector's
order, then the greedy non-overlapping choice). Budgets are nested: the choice for a smaller
budget is the start of the choice for a larger one (same order, same greedy pass).
"""

import json
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
if not SHARED.exists():
    SHARED = Path("/work/shared")

PATCH, STRIDE = 256, 30
PER_IMAGE = {"ssTEM": 16, "EM": 12}
TARGETS = ("ssTEM", "EM")
SPLITS = (0, 1, 2, 3, 4)  # the authors' splits 5-9 are held out: never run here
SEEDS = (0, 1, 2, 3, 4)  # draw k of every arm uses fine-tuning seed k
BUDGETS = (0.25, 0.5, 1, 2)  # image-equivalents of drawn area
ROUND_BUDGETS = (1, 2)  # two rounds of B/2 each
MIN_FOREGROUND = 360  # the authors' ground-truth filter (label-reading arms)


def budget_key(budget):
    """The budget as the plan's records key it: "1", not "1.0"."""
    return str(int(budget)) if float(budget).is_integer() else str(float(budget))


def n_patches(target, budget):
    return int(round(budget * PER_IMAGE[target]))


# ---------------------------------------------------------------- recipes
# name -> FineTuneRecipe parameters; "augment" names an AUGMENTS entry. Every recipe starts
# from the authors' PLFT model with a fresh Adam optimizer and the paper's weighted BCE.
AUGMENTS = {
    "none": None,
    "flips": {"flips": True},
    "fi": {"flips": True, "intensity": 0.2, "gamma": 0.2},
    "fis": {"flips": True, "intensity": 0.2, "gamma": 0.2, "scale": 0.25},
}
RECIPES = {
    # the `mid` profile's schedule (20 epochs at batch 8): the session-6 numbers
    "paper20": {"steps": None, "epochs": 20, "batch_size": 8, "lr": 1e-4, "augment": "none"},
    "s250_lr1e-4": {"steps": 250, "lr": 1e-4, "augment": "none"},
    "s250_lr1e-4_flips": {"steps": 250, "lr": 1e-4, "augment": "flips"},
    "s250_lr1e-4_fi": {"steps": 250, "lr": 1e-4, "augment": "fi"},
    "s250_lr3e-4_fi": {"steps": 250, "lr": 3e-4, "augment": "fi"},
    "s250_lr1e-3_fi": {"steps": 250, "lr": 1e-3, "augment": "fi"},
    "s250_lr3e-4_fis": {"steps": 250, "lr": 3e-4, "augment": "fis"},
    "s250_lr1e-3_fi_cos": {
        "steps": 250,
        "lr": 1e-3,
        "augment": "fi",
        "schedule": "cosine",
        "warmup": 20,
    },
    "s250_lr1e-3_fi_frozen": {"steps": 250, "lr": 1e-3, "augment": "fi", "train_encoder": False},
    "s450_lr1e-3_fi_frozen": {"steps": 450, "lr": 1e-3, "augment": "fi", "train_encoder": False},
    "s150_lr3e-4_fi": {"steps": 150, "lr": 3e-4, "augment": "fi"},
    "s500_lr3e-4_fi": {"steps": 500, "lr": 3e-4, "augment": "fi"},
}

if os.environ.get("KWTL_EFFORT_SMOKE"):  # effort.py run --smoke: the code path in minutes
    RECIPES["smoke"] = {"steps": 2, "batch_size": 2, "lr": 1e-4, "augment": "fis"}
    SEEDS = (0, 1)


def make_recipe(name):
    from kwtl.datasets import PatchAugmenter
    from kwtl.models import FineTuneRecipe

    params = {"batch_size": 8, **RECIPES[name]}
    aug = AUGMENTS[params.pop("augment")]
    return FineTuneRecipe(augment=None if aug is None else PatchAugmenter(**aug), **params)


def recipe_cost(name, n_support=16):
    """Patch-passes of one fine-tune (steps x batch), the unit of CPU cost; a frozen encoder
    is counted at the measured ratio of its step time (``CPU_STEP_SECONDS``)."""
    r = make_recipe(name)
    passes = r.n_steps(n_support) * r.batch_size
    return passes * (FROZEN_RATIO if not r.train_encoder else 1.0)


#: Measured CPU seconds per patch-pass: 1.21 s per step at batch 8, 256², fp32, 2 threads on
#: the idle machine (18:00 UTC, before the helpers started), and the frozen-encoder step time
#: relative to a full step (0.53, both measured at the same load by `effort.py cost`); see
#: results/effort/README.md.
CPU_SECONDS_PER_PASS = 1.21 / 8
FROZEN_RATIO = 0.53
CPU_LIMIT_SECONDS = 360


def cpu_eligible(name, n_support=16):
    return recipe_cost(name, n_support) * CPU_SECONDS_PER_PASS <= CPU_LIMIT_SECONDS


# ---------------------------------------------------------------- arms
# name -> (reads_labels, stochastic, registry name or how the order is made)
ARMS = {
    "random": (False, True, "random"),
    "spread_random": (False, True, "spread_random"),
    "consistency": (False, False, "consistency"),
    "stratified_consistency": (False, True, "stratified_consistency"),
    "object_richness": (False, False, "object_richness"),
    "typicality": (False, False, "typicality"),
    "fg_random": (
        True,
        True,
        "nnActive's foreground-aware random: window centres from the "
        "whole image, a foreground or a boundary pixel, 1/3 each",
    ),
    "gt_consistency": (
        True,
        False,
        "the paper's protocol: consistency after the 360-px ground-truth filter",
    ),
}
LABEL_FREE_ARMS = tuple(a for a, (reads, _, _) in ARMS.items() if not reads and a != "random")


def load_plan(path):
    return json.loads(Path(path).read_text())


# ---------------------------------------------------------------- the rules (written first)
def runs_of(records, **where):
    """The records whose fields equal ``where``."""
    return [r for r in records if all(r.get(k) == v for k, v in where.items())]


def mean_of_split_means(values_by_split):
    """Mean over splits of each split's mean (NaN when empty): every split weighs the same,
    however many draws it has."""
    return (
        float(np.mean([np.mean(v) for v in values_by_split.values()]))
        if values_by_split
        else float("nan")
    )


def split_means(records, **where):
    """{(target, split): mean miou over seeds} of the records matching ``where``."""
    out = {}
    for r in runs_of(records, **where):
        out.setdefault((r["target"], r["split"]), []).append(r["miou"])
    return {k: float(np.mean(v)) for k, v in out.items()}


def default_recipe(records, targets=TARGETS, splits=SPLITS, recipes=None):
    """The recipe rule, written before any recipe result (results README, 18:15 UTC): among
    the recipes whose CPU cost is within 6 minutes, the highest mean over both targets of
    (mean over splits 0-4 of the split mean over seeds) at B = 1 with random selection; a
    cheaper eligible recipe within 0.5 points of the best wins. Only recipes measured on
    every (target, split) compete."""
    scores = {}
    for name in RECIPES if recipes is None else recipes:
        means = split_means(
            [r for r in records if r["seed"] < 3], arm="random", budget=1, recipe=name, round=1
        )
        complete = all((t, s) in means for t in targets for s in splits)
        if complete and cpu_eligible(name):
            scores[name] = float(
                np.mean([np.mean([means[(t, s)] for s in splits]) for t in targets])
            )
    if not scores:
        return None, scores
    best = max(scores.values())
    near = [n for n, v in scores.items() if v >= best - 0.5]
    return min(near, key=lambda n: (recipe_cost(n), -scores[n])), scores


def best_label_free_arms(records, recipe, k=2):
    """The ``k`` label-free arms with the best mean paired difference to random at B = 1
    (draw by draw, over both targets and splits 0-4), with that difference."""
    base = {
        (r["target"], r["split"], r["seed"]): r["miou"]
        for r in records
        if r["arm"] == "random" and r["budget"] == 1 and r["recipe"] == recipe and r["round"] == 1
    }
    deltas = {}
    for r in records:
        key = (r["target"], r["split"], r["seed"])
        if (
            r["arm"] in LABEL_FREE_ARMS
            and r["budget"] == 1
            and r["recipe"] == recipe
            and r["round"] == 1
            and key in base
        ):
            deltas.setdefault(r["arm"], []).append(r["miou"] - base[key])
    ranked = sorted(deltas, key=lambda a: -np.mean(deltas[a]))
    return [(a, float(np.mean(deltas[a]))) for a in ranked[:k]]


def paired_by_draw(records, arm, recipe, target):
    """{seed: {split: arm - random}} at B = 1, round 1, for the (split, seed) both have."""
    where = dict(budget=1, recipe=recipe, target=target, round=1)
    base = {(r["split"], r["seed"]): r["miou"] for r in runs_of(records, arm="random", **where)}
    out = {}
    for r in runs_of(records, arm=arm, **where):
        key = (r["split"], r["seed"])
        if key in base:
            out.setdefault(r["seed"], {})[r["split"]] = r["miou"] - base[key]
    return out


def b1_gate(records, recipe, arms=LABEL_FREE_ARMS, draws=len(SEEDS), bound=-1.0):
    """The rule's bound at B = 1, applied alone (results README, "Order of the remaining
    runs", 2026-12-05 03:05 UTC): an arm whose paired difference to random at B = 1, over
    ``draws`` complete draws (all five splits paired), averages below ``bound`` on either
    target cannot become the default, whatever its curve.

    Returns {arm: (out, {target: (complete draws, mean difference over them)})}; the mean is
    over draws of the mean over splits.
    """
    verdicts = {}
    for arm in arms:
        per_target, out = {}, False
        for t in TARGETS:
            by_seed = paired_by_draw(records, arm, recipe, t)
            complete = [s for s in sorted(by_seed) if len(by_seed[s]) == len(SPLITS)]
            mean = (
                float(np.mean([np.mean(list(by_seed[s].values())) for s in complete]))
                if complete
                else float("nan")
            )
            per_target[t] = (len(complete), mean)
            out |= len(complete) >= draws and mean < bound
        verdicts[arm] = (out, per_target)
    return verdicts


def next_arms(records, recipe, arms=LABEL_FREE_ARMS, threshold=-8.0):
    """Step 2 of the run order (same README section): the arms whose draw 0 at B = 1,
    against the mean of random's draws 0-2 split by split, is above ``threshold`` (mean over
    the five splits) on both targets. An arm at or below it on one target is out whatever the
    other; None while some arm is undecided (its draw 0 incomplete where it matters)."""
    where = dict(budget=1, recipe=recipe, round=1)
    chosen, undecided = [], False
    for arm in arms:
        above = []
        for t in TARGETS:
            base, mine = {}, {}
            for r in records:
                if r["target"] != t or any(r.get(k) != v for k, v in where.items()):
                    continue
                if r["arm"] == "random" and r["seed"] < 3:
                    base.setdefault(r["split"], []).append(r["miou"])
                elif r["arm"] == arm and r["seed"] == 0:
                    mine[r["split"]] = r["miou"]
            if len(mine) < len(SPLITS) or any(s not in base for s in SPLITS):
                above.append(None)
            else:
                above.append(np.mean([mine[s] - np.mean(base[s]) for s in SPLITS]) > threshold)
        if False in above:
            continue
        if None in above:
            undecided = True
        else:
            chosen.append(arm)
    return None if undecided else chosen
