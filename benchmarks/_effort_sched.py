"""The drawn-area benchmark's jobs in three phases, run by a pool of worker processes.

1. the recipe grid: random selection at B = 1, seeds 0-2, every recipe;
2. with the default recipe (``_effort_plan.default_recipe``, applied to all grid results so
   far): random's draws 3-4, the seed-only spread (random's draw 0 with fine-tuning seeds
   0-4), every arm at B = 1 (seeds 0-4), random at the other budgets;
3. the two best label-free arms at B = 1 (``best_label_free_arms``) at the other budgets, and
   two rounds (round 1: the best arm at B/2, round 2: spread entropy of the round-1 model at
   B/2, fine-tuned from the PLFT model on all labels) for B = 1 and 2.

Within a phase jobs run seed-major (all splits and targets of draw 0 first), so a run cut
short by its deadline leaves balanced, paired data. A job whose images are not in the
bundle is skipped.
"""

import json
import queue
import time
import traceback
from pathlib import Path

from _effort_exec import Context, atomic_write_json, job_id, job_images, run_job
from _effort_plan import (
    ARMS,
    BUDGETS,
    RECIPES,
    ROUND_BUDGETS,
    SEEDS,
    SPLITS,
    TARGETS,
    best_label_free_arms,
    default_recipe,
)


def job(target, split, arm, budget, seed, recipe, phase, round_=1, round1_arm=None):
    budget = int(budget) if float(budget).is_integer() else float(budget)  # "B1", not "B1.0"
    return {
        "target": target,
        "split": split,
        "arm": arm,
        "budget": budget,
        "seed": seed,
        "recipe": recipe,
        "round": round_,
        "round1_arm": round1_arm,
        "phase": phase,
        "reads_labels": ARMS.get(round1_arm or arm.replace("_fixed", ""), (False,))[0],
    }


def grid_jobs(targets=TARGETS, splits=SPLITS, recipes=tuple(RECIPES)):
    return [
        job(t, s, "random", 1, seed, r, 1)
        for seed in SEEDS[:3]
        for s in splits
        for t in targets
        for r in recipes
    ]


def phase2_jobs(recipe, targets=TARGETS, splits=SPLITS):
    out = [
        job(t, s, "random", 1, seed, recipe, 2)
        for seed in SEEDS[3:]
        for s in splits
        for t in targets
    ]
    out += [
        job(t, s, "random_fixed", 1, seed, recipe, 2)
        for seed in SEEDS[1:]
        for s in splits
        for t in targets
    ]
    arms = [a for a in ARMS if a != "random"]
    out += [
        job(t, s, a, 1, seed, recipe, 2)
        for seed in SEEDS
        for s in splits
        for t in targets
        for a in arms
    ]
    out += [
        job(t, s, "random", b, seed, recipe, 2)
        for seed in SEEDS
        for b in BUDGETS
        if b != 1
        for s in splits
        for t in targets
    ]
    return out


def phase3_jobs(recipe, best, targets=TARGETS, splits=SPLITS):
    out = [
        job(t, s, a, b, seed, recipe, 3)
        for seed in SEEDS
        for b in BUDGETS
        if b != 1
        for s in splits
        for t in targets
        for a in best
    ]
    if best:
        out += [
            job(t, s, "round2_entropy", b, seed, recipe, 3, 2, best[0])
            for seed in SEEDS
            for b in ROUND_BUDGETS
            for s in splits
            for t in targets
        ]
    return out


def load_records(folders):
    records = {}
    for folder in folders:
        for path in sorted(Path(folder).glob("runs/*.json")):
            r = json.loads(path.read_text())
            records[r["id"]] = r
        for path in sorted(Path(folder).glob("*.jsonl")):
            for line in path.read_text().splitlines():
                if line.strip():
                    r = json.loads(line)
                    records[r["id"]] = r
    return records


def _worker(folders, device, tf32, selections, jobs, results, models=None, keep=()):
    import torch

    torch.set_num_threads(1)
    ctx = Context(folders, device, tf32, selections, models, keep)
    while True:
        item = jobs.get()
        if item is None:
            return
        try:
            results.put(run_job(ctx, item))
        except Exception:  # reported by the parent, never silently dropped
            results.put({"id": job_id(item), "error": traceback.format_exc()})


class Scheduler:
    def __init__(
        self,
        folders,
        out,
        device="cpu",
        workers=1,
        tf32=False,
        deadline=None,
        jsonl=None,
        log=print,
        phases=(1, 2, 3),
        previous=(),
        targets=TARGETS,
        splits=SPLITS,
        recipes=None,
    ):
        self.targets, self.splits = tuple(targets), tuple(splits)
        self.recipes = tuple(RECIPES) if recipes is None else tuple(recipes)
        self.folders, self.out = list(folders), Path(out)
        self.device, self.n_workers, self.tf32 = device, int(workers), tf32
        self.deadline = deadline
        self.jsonl = Path(jsonl) if jsonl else None
        self.log, self.phases = log, tuple(phases)
        self.records = load_records([self.out, *previous])
        from _effort_exec import Bundle

        self.selections = [str(self.out / "selections")]
        self.bundle = Bundle(self.folders, self.selections)

    def runnable(self, jobs):
        todo = []
        for j in jobs:
            if job_id(j) in self.records:
                continue
            try:
                ok = self.bundle.has(j["target"], job_images(self.bundle, j))
            except KeyError:
                ok = False
            if ok:
                todo.append(j)
        return todo

    def time_left(self):
        return float("inf") if self.deadline is None else self.deadline - time.time()

    def run(self):
        import multiprocessing as mp

        context = mp.get_context("spawn")
        self.jobs, self.results = context.Queue(), context.Queue()
        workers = [
            context.Process(
                target=_worker,
                args=(
                    self.folders,
                    self.device,
                    self.tf32,
                    self.selections,
                    self.jobs,
                    self.results,
                ),
            )
            for _ in range(self.n_workers)
        ]
        for w in workers:
            w.start()
        try:
            self._phases()
        finally:
            self._finish(workers)
        return self.records

    def _phases(self):
        if 1 in self.phases:
            self._run_phase(
                "grid", self.runnable(grid_jobs(self.targets, self.splits, self.recipes))
            )
        recipe, scores = default_recipe(
            list(self.records.values()), self.targets, self.splits, self.recipes
        )
        self.log(
            f"default recipe by the rule: {recipe} "
            f"({', '.join(f'{k} {v:.1f}' for k, v in sorted(scores.items()))})"
        )
        if recipe is None:
            return
        if 2 in self.phases and self.time_left() > 0:
            self._run_phase(
                "phase 2", self.runnable(phase2_jobs(recipe, self.targets, self.splits))
            )
        best = best_label_free_arms(list(self.records.values()), recipe)
        self.log(f"best label-free arms at B=1: {best}")
        if 3 in self.phases and self.time_left() > 0:
            self._run_phase(
                "phase 3",
                self.runnable(phase3_jobs(recipe, [a for a, _ in best], self.targets, self.splits)),
            )

    def _run_phase(self, name, todo):
        self.log(f"{name}: {len(todo)} jobs to run ({len(self.records)} records so far)")
        for j in todo:
            self.jobs.put(j)
        pending, started = len(todo), time.time()
        while pending and self.time_left() > 0:
            try:
                r = self.results.get(timeout=min(10.0, max(0.1, self.time_left())))
            except queue.Empty:
                continue
            pending -= 1
            if "error" in r:
                self.log(f"ERROR {r['id']}:\n{r['error']}")
                continue
            self._record(r)
            done = len(todo) - pending
            if done % 10 == 0 or pending == 0:
                rate = done / max(1e-9, time.time() - started)
                self.log(
                    f"{name}: {done}/{len(todo)} done, {rate:.2f} jobs/s; last "
                    f"{r['id']} {r['miou']:.1f} ({r['seconds_total']:.0f} s)"
                )
        if pending:
            self.log(f"{name}: deadline reached with {pending} jobs not finished")

    def _record(self, r):
        first = r.pop("round1_record", None)  # a two-round job's own round 1 (run_job)
        if first is not None:
            known = self.records.get(first["id"])
            if known is None:
                self._record(first)
            elif abs(known["miou"] - first["miou"]) > 1e-6:  # same fine-tune, other result
                self.log(
                    f"NOTE {r['id']}: its round 1 gave {first['miou']:.4f}, the recorded "
                    f"{first['id']} {known['miou']:.4f} ({known.get('device')})"
                )
        self.records[r["id"]] = r
        atomic_write_json(self.out / "runs" / f"{r['id']}.json", r)
        if self.jsonl is not None:
            with open(self.jsonl, "a") as f:
                f.write(json.dumps(r) + "\n")

    def _finish(self, workers, grace=30.0):
        """Drop unstarted jobs, let running ones finish (up to ``grace`` seconds past the
        deadline) and keep their results; then stop the workers."""
        while True:
            try:
                self.jobs.get_nowait()
            except (queue.Empty, OSError, ValueError):
                break
        for _ in workers:
            self.jobs.put(None)
        until = time.time() + (
            grace if self.deadline is None else max(1.0, min(grace, self.time_left() + grace))
        )
        while any(w.is_alive() for w in workers) and time.time() < until:
            try:
                r = self.results.get(timeout=0.5)
            except (queue.Empty, OSError, ValueError):
                continue
            if "error" not in r:
                self._record(r)
        for w in workers:
            w.join(timeout=1.0)
            if w.is_alive():
                w.terminate()
