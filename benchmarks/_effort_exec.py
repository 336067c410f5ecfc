"""Running the drawn-area benchmark's jobs: one fine-tune and evaluation each, in parallel.

A job is a dict (target, split, arm, budget, seed, recipe, round); its result is one JSON
record written atomically under ``<out>/runs/`` (and appended to a JSON-lines file when
asked), so an interrupted run resumes. Data come from a *bundle* (a folder made by
``effort.py pack``: lossless WebP images, packed masks, the plan with every arm's
selections, the PLFT weights), possibly split over several folders, so the same code runs
here on the CPU and on a lent GPU machine.
"""

import copy
import json
import os
import time
from pathlib import Path

import numpy as np

from _effort_plan import PATCH, ROUND_BUDGETS, budget_key, n_patches


def job_id(job):
    rnd = f"r{job['round']}" + (f"-{job['round1_arm']}" if job["round"] == 2 else "")
    return (
        f"{job['target']}__{job['arm']}__B{budget_key(job['budget'])}__{rnd}__{job['recipe']}"
        f"__split{job['split']}__seed{job['seed']}"
    )


def atomic_write_json(path, obj):
    """``obj`` as JSON at ``path``, written atomically (kwtl's own atomic writer)."""
    from kwtl.utils._atomic import atomic_write_text

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(obj))


class Bundle:
    """Images, masks, the plan and the weights from one or more bundle folders."""

    def __init__(self, folders, selections=()):
        self.folders = [Path(f) for f in folders if Path(f).is_dir()]
        plans = [f / "plan.json" for f in self.folders if (f / "plan.json").is_file()]
        if not plans:
            raise FileNotFoundError(f"no plan.json in {folders}")
        self.plan = json.loads(plans[0].read_text())
        for folder in selections:  # selections made after packing (effort.py prepare)
            for path in sorted(Path(folder).glob("*_split*.json")):
                target, split = path.stem.rsplit("_split", 1)
                per_split = self.plan["selections"].setdefault(target, {})
                per_split.setdefault(split, {}).update(
                    {
                        k: v
                        for k, v in json.loads(path.read_text()).items()
                        if k not in per_split.get(split, {})
                    }
                )
        self._files = {}
        for f in self.folders:
            for path in sorted((f / "data").glob("*/*.webp")):
                self._files[(path.parent.name, path.stem)] = path
        self._images, self._masks = {}, {}

    def has(self, target, names):
        return all((target, n) in self._files for n in names)

    def image(self, target, name):
        key = (target, name)
        if key not in self._images:
            from PIL import Image

            self._images[key] = np.asarray(Image.open(self._files[key]).convert("L"))
        return self._images[key]

    def mask(self, target, name):
        key = (target, name)
        if key not in self._masks:
            from PIL import Image

            path = self._files[key].with_suffix(".mask.png")
            self._masks[key] = np.asarray(Image.open(path).convert("L")) > 0
        return self._masks[key]

    def weights(self, target):
        for f in self.folders:
            path = f / "weights" / f"authors_plft_{target}.pth"
            if path.is_file():
                return path
        raise FileNotFoundError(f"no PLFT weights for {target} in {self.folders}")

    def split(self, target, split):
        return self.plan["splits"][target][str(split)]

    def support(self, target, split, arm, seed, budget):
        if arm == "random_fixed":  # the seed-only spread: random's draw 0, any FT seed
            arm, seed = "random", 0
        entry = self.plan["selections"][target][str(split)][arm]
        entry = entry.get(str(seed), entry.get("0"))
        return entry["support"][: n_patches(target, budget)], entry["drawn"][budget_key(budget)]


def job_images(bundle, job):
    """Every image a job reads (its test images, support images, and the pool for round 2)."""
    s = bundle.split(job["target"], job["split"])
    names = set(s["test"])
    arm = job["round1_arm"] if job["round"] == 2 else job["arm"]
    budget = job["budget"] / 2 if job["round"] == 2 else job["budget"]
    support, _ = bundle.support(job["target"], job["split"], arm, job["seed"], budget)
    names |= {n for n, _, _ in support}
    if job["round"] == 2:
        names |= set(s["pool"])
    return names


class Context:
    """What a worker keeps between jobs: the bundle and one PLFT model per target.

    ``models``: a folder of round-1 models (kwtl model files named by job id). Round-1 runs
    of the arms in ``keep`` write theirs there; a round-2 job whose round 1 is there loads
    it instead of fine-tuning it again (the same support, seed and recipe: the same model).
    """

    def __init__(self, folders, device, tf32=False, selections=(), models=None, keep=()):
        import torch

        torch.set_num_threads(int(os.environ.get("KWTL_THREADS", "1")))
        if device.startswith("cuda"):
            torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
            torch.backends.cudnn.allow_tf32 = bool(tf32)
            torch.backends.cudnn.benchmark = True
        self.bundle, self.device, self.tf32 = Bundle(folders, selections), device, tf32
        self.models, self.keep = (Path(models) if models else None), frozenset(keep)
        self._plft = {}

    def plft(self, target):
        from kwtl.models import load_pretrained

        if target not in self._plft:
            self._plft[target] = load_pretrained(
                f"authors:{target}",
                source=self.bundle.weights(target).parent,
                precision="fp32",
                patch_size=PATCH,
                stride=PATCH,
                device=self.device,
                # a few test images per forward pass: many workers share one GPU's memory
                # (batch-statistics BatchNorm does not depend on the batching)
                max_pixels=2**21 if self.device.startswith("cuda") else 2**23,
            )
        return self._plft[target]


def _support_sets(ctx, target, support):
    from kwtl.datasets import PatchSet

    names = sorted({n for n, _, _ in support})
    index = {n: i for i, n in enumerate(names)}
    coords = [[index[n], r, c] for n, r, c in support]
    patches = PatchSet([ctx.bundle.image(target, n) for n in names], coords, PATCH)
    return patches, patches.with_arrays([ctx.bundle.mask(target, n) for n in names])


def _fine_tune(ctx, job, support):
    from _effort_plan import make_recipe

    seg = copy.deepcopy(ctx.plft(job["target"]))
    patches, masks = _support_sets(ctx, job["target"], support)
    recipe = make_recipe(job["recipe"])
    recipe.train(seg, patches, masks, random_state=int(job["seed"]))
    return seg, recipe.n_steps(len(patches))


def _evaluate(ctx, job, seg):
    from kwtl.metrics import iou_score

    names = ctx.bundle.split(job["target"], job["split"])["test"]
    images = [ctx.bundle.image(job["target"], n) for n in names]
    preds = seg.predict(images)
    masks = [ctx.bundle.mask(job["target"], n) for n in names]
    per_image = [float(iou_score(m, p)) for m, p in zip(masks, preds)]
    # predicted against true foreground share: says whether a poor run over- or
    # under-predicts (added 2026-12-05; earlier records lack it)
    fg_share = {
        "per_image_pred_fg": [float(np.mean(np.asarray(p) > 0)) for p in preds],
        "per_image_true_fg": [float(np.mean(np.asarray(m) > 0)) for m in masks],
    }
    return 100 * float(np.mean(per_image)), per_image, fg_share


def round_two_support(ctx, job, seg1, support1):
    """Round 2 as ``kwtl select --model tuned1.kwtl --selector spread_entropy --pl-epochs 0
    --exclude round1/`` makes it: the round-1 model scores the pool (whole-image entropy, one
    patch per image first), candidates overlapping a round-1 region are excluded, and the
    greedy non-overlapping choice takes the rest of the budget."""
    from kwtl.datasets import PatchSet
    from kwtl.selection import make_selector
    from kwtl.workflow._rounds import overlaps_regions

    from _effort_plan import STRIDE

    target = job["target"]
    names = ctx.bundle.split(target, job["split"])["pool"]
    images = [ctx.bundle.image(target, n) for n in names]
    pool = PatchSet.from_images(images, PATCH, STRIDE, cover_border=True)
    regions = {}
    for n, r, c in support1:
        regions.setdefault(n, []).append((r, c, PATCH, PATCH))
    blocked = overlaps_regions(pool.coords, PATCH, [im.shape for im in images], names, regions)
    selector = make_selector("spread_entropy", dense=True)
    want = n_patches(target, job["budget"]) - len(support1)
    chosen = selector.choose(
        selector.score(pool, seg1), want, pool, non_overlapping=True, exclude=blocked
    )
    return [[names[i], int(r), int(c)] for i, r, c in pool.coords[chosen]]


def drawn_of(ctx, target, support):
    from scipy import ndimage

    fg = objects = 0
    for n, r, c in support:
        window = ctx.bundle.mask(target, n)[r : r + PATCH, c : c + PATCH]
        fg += int(window.sum())
        objects += int(ndimage.label(window, structure=np.ones((3, 3)))[1])
    return {
        "n_patches": len(support),
        "annotated_px": len(support) * PATCH * PATCH,
        "annotated_fg_px": fg,
        "annotated_objects": objects,
        "images_touched": len({n for n, _, _ in support}),
    }


def round_one_job(job):
    """The round-1 run inside a round-2 job: its arm at half the budget, same draw."""
    return {**job, "arm": job["round1_arm"], "budget": job["budget"] / 2, "round": 1,
            "round1_arm": None}  # fmt: skip


def _kept_model(ctx, job):
    return ctx.models / f"{job_id(job)}.kwtl" if ctx.models is not None else None


def _keep_model(ctx, job, seg, record):
    path = _kept_model(ctx, job)
    keep = job["arm"] in ctx.keep and 2 * job["budget"] in ROUND_BUDGETS  # a round 1
    if path is not None and keep and not path.exists():
        from kwtl.workflow import save_model

        # the run's record goes with it: a job stopped after this line still yields the
        # curve run when the next job loads the model
        training = {"job": job_id(job), "miou": record["miou"], "record": record}
        save_model(seg, path, training=training)


def _round_one(ctx, job, support1, drawn1):
    """The round-1 model, its mIoU, "kept" or "trained", and, when trained, the round-1
    run's own record (the same fine-tune as ARM's curve run at B/2: same patches, seed
    and recipe), so a two-round job also yields that curve run. A kept model is loaded,
    its mIoU re-measured and checked against the one recorded when it was trained; its
    run's record comes from the model file (None for models kept before it was stored)."""
    job1 = round_one_job(job)
    path = _kept_model(ctx, job1)
    if path is not None and path.exists():
        from kwtl.workflow import load_model
        from kwtl.workflow._model import recorded_training

        seg1 = load_model(path, download=False, device=ctx.device)
        miou1 = _evaluate(ctx, job, seg1)[0]
        recorded = recorded_training(path)
        if abs(miou1 - recorded["miou"]) > 1e-6:
            raise RuntimeError(f"{path}: mIoU {miou1} now, {recorded['miou']} when trained")
        return seg1, miou1, "kept", recorded.get("record")
    start = time.perf_counter()
    seg1, steps1 = _fine_tune(ctx, job1, support1)
    record1 = _record(ctx, job1, seg1, steps1, support1, drawn1, start)
    _keep_model(ctx, job1, seg1, record1)
    return seg1, record1["miou"], "trained", record1


def _record(ctx, job, seg, steps, support, drawn, start, extra=None):
    """Evaluate ``seg`` (fine-tuned from ``start``, a perf_counter time) and the record."""
    tuned = time.perf_counter()
    miou, per_image, fg_share = _evaluate(ctx, job, seg)
    return {
        **job,
        "id": job_id(job),
        "miou": miou,
        "per_image_iou": per_image,
        **fg_share,
        **drawn,
        **(extra or {}),
        "support": support,
        "n_steps": steps,
        "seconds_finetune": round(tuned - start, 2),
        "seconds_total": round(time.perf_counter() - start, 2),
        "device": ctx.device,
        "tf32": ctx.tf32,
    }


def run_job(ctx, job):
    """Fine-tune (one or two rounds) and evaluate; the result record. A two-round job that
    trained its round 1 carries that run's record as ``round1_record``."""
    start = time.perf_counter()
    t, split, seed = job["target"], job["split"], job["seed"]
    extra = {}
    if job["round"] == 1:
        support, drawn = ctx.bundle.support(t, split, job["arm"], seed, job["budget"])
    else:
        support1, drawn1 = ctx.bundle.support(t, split, job["round1_arm"], seed, job["budget"] / 2)
        seg1, miou1, how, record1 = _round_one(ctx, job, support1, drawn1)
        extra.update(round1_miou=miou1, round1_model=how, round1_patches=len(support1))
        support = support1 + round_two_support(ctx, job, seg1, support1)
        drawn = drawn_of(ctx, t, support)
    seg, steps = _fine_tune(ctx, job, support)
    record = _record(ctx, job, seg, steps, support, drawn, start, extra)
    if job["round"] == 1:
        _keep_model(ctx, job, seg, record)
    elif record1 is not None:
        record["round1_record"] = record1
    return record
