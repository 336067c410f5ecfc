"""What a lab gets for the area it draws: selectors and fine-tuning recipes at equal drawn area.

Budgets are image-equivalents of annotated area (ssTEM: 16 non-overlapping 256² patches =
one 1024² image; EM: 12 = one 768x1024 image), chosen as ``kwtl select`` chooses; every
run fine-tunes the authors' PLFT model (``../shared/weights``) and is scored on its split's
full-size test images (authors' splits 0-4 of ssTEM and EM; 5-9 are never run). Arms are
paired: draw k of every arm uses fine-tuning seed k. See ``_effort_plan.py`` for the
budgets, recipes, arms and the decision rules, ``_effort_sched.py`` for the phases.

Steps (each resumable; results are one JSON file per run under ``<out>/runs/``)::

    # 1. every arm's selections (CPU, cached per image under <out>/cache/)
    PYTHONPATH=$PWD python benchmarks/effort.py prepare
    # 2. a bundle of the data the runs read (lossless WebP images, packed masks, the plan,
    #    the PLFT weights), in parts of at most --max-mb each (for a GPU machine)
    PYTHONPATH=$PWD python benchmarks/effort.py pack --bundle .device/effort --max-mb 58
    # 3. the runs, here or on a GPU machine (the phases of _effort_sched.py)
    PYTHONPATH=$PWD python benchmarks/effort.py run --bundle .device/effort* --workers 2
    # 4. results.csv, the tables and the figures
    PYTHONPATH=$PWD python benchmarks/effort.py table
"""
import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
if "--smoke" in sys.argv[1:]:
    import os

    os.environ["KWTL_EFFORT_SMOKE"] = "1"  # before _effort_plan is read by any process

from _effort_plan import (ARMS, PATCH, RECIPES, SHARED, SPLITS, TARGETS,  # noqa: E402
                          make_recipe)

OUT = Path(__file__).resolve().parent / "results" / "effort"


def prepare(args):
    import torch

    from _effort_select import Target, split_selections
    from kwtl.models import load_pretrained

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    for name in args.targets:
        target = Target(name)
        seg = load_pretrained(f"authors:{name}", source=SHARED / "weights", precision="fp32",
                              patch_size=PATCH, stride=PATCH)
        for split in args.splits:
            path = out / "selections" / f"{name}_split{split}.json"
            done = json.loads(path.read_text()) if path.exists() else {}
            missing = [a for a in args.arms if a not in done]
            if not missing:
                continue
            start = time.perf_counter()
            done.update(split_selections(out / "cache", target, split, seg, missing))
            from _effort_exec import atomic_write_json

            atomic_write_json(path, done)
            print(f"{name} split {split}: {', '.join(missing)} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)


def write_plan(out, targets, splits):
    from _effort_select import Target

    plan = {"splits": {}, "selections": {}}
    needed = {}
    for name in targets:
        target = Target(name)
        plan["splits"][name], plan["selections"][name] = {}, {}
        for split in splits:
            pool, test = target.split(split)
            plan["splits"][name][str(split)] = {"pool": [target.names[i] for i in pool],
                                                "test": [target.names[i] for i in test]}
            path = out / "selections" / f"{name}_split{split}.json"
            plan["selections"][name][str(split)] = json.loads(path.read_text())
            needed.setdefault(name, set()).update(target.names[i] for i in pool + test)
    return plan, needed


def pack(args):
    """Lossless WebP images + bit-packed masks, split into parts of at most --max-mb."""
    from PIL import Image

    from _effort_select import Target

    out = Path(args.out)
    plan, needed = write_plan(out, args.targets, args.splits)
    base = Path(args.bundle)
    for old in sorted(base.parent.glob(base.name + "*")):
        shutil.rmtree(old)
    part, size, limit = 1, 0, args.max_mb * 2**20
    folders = []

    def folder(k):
        f = Path(f"{base}{k}")
        if f not in folders:
            (f / "weights").mkdir(parents=True)
            for name in args.targets:
                shutil.copy(SHARED / "weights" / f"authors_plft_{name}.pth", f / "weights")
            (f / "plan.json").write_text(json.dumps(plan))
            folders.append(f)
        return f

    for name in args.targets:
        target = Target(name)
        for i, stem in enumerate(target.names):
            if stem not in needed[name]:
                continue
            f = folder(part) / "data" / name
            f.mkdir(parents=True, exist_ok=True)
            Image.fromarray(target.images[i]).save(f / f"{stem}.webp", format="WEBP",
                                                   lossless=True, quality=100, method=6)
            mask = target.masks[i]
            np.savez_compressed(f / f"{stem}.mask.npz", bits=np.packbits(mask.ravel()),
                                shape=np.array(mask.shape))
            size = sum(p.stat().st_size for p in folder(part).rglob("*") if p.is_file())
            if size > limit - 2**20:
                part, size = part + 1, 0
    for f in folders:
        total = sum(p.stat().st_size for p in f.rglob("*") if p.is_file())
        print(f"{f}: {total / 2**20:.1f} MiB, {len(list(f.rglob('*.webp')))} images")


def run(args):
    from _effort_sched import Scheduler

    deadline = None if args.seconds is None else time.time() + args.seconds
    log_file = open(args.log, "a") if args.log else None

    def log(msg):
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        if log_file:
            log_file.write(line + "\n")
            log_file.flush()

    if args.smoke:  # the code path end to end in minutes: a 2-step recipe (_effort_plan)
        args.recipes = ["smoke"]
    sched = Scheduler(args.bundle, args.out, device=args.device, workers=args.workers,
                      tf32=args.tf32, deadline=deadline, jsonl=args.jsonl, log=log,
                      phases=args.phases, previous=args.previous, targets=args.targets,
                      splits=args.splits, recipes=args.recipes)
    sched.run()


def cost(args):
    """CPU seconds of one fine-tune per recipe at B = 1 (16 ssTEM patches of split 0's
    random draw 0), with ``--threads`` torch threads."""
    import torch

    from _effort_exec import Context

    torch.set_num_threads(args.threads)
    ctx = Context(args.bundle, "cpu")
    support, _ = ctx.bundle.support("ssTEM", 0, "random", 0, 1)
    from _effort_exec import _support_sets

    patches, masks = _support_sets(ctx, "ssTEM", support)
    for name in args.recipes:
        import copy

        recipe = make_recipe(name)
        seg = copy.deepcopy(ctx.plft("ssTEM"))
        start = time.perf_counter()
        recipe.train(seg, patches, masks, random_state=0)
        seconds = time.perf_counter() - start
        print(f"{name}: {recipe.n_steps(len(patches))} steps, {seconds:.1f} s "
              f"({seconds / recipe.n_steps(len(patches)):.3f} s/step, {args.threads} threads)",
              flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="every arm's selections (CPU)")
    p.add_argument("--targets", nargs="+", default=list(TARGETS))
    p.add_argument("--splits", nargs="+", type=int, default=list(SPLITS))
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--threads", type=int, default=2)
    p = sub.add_parser("pack", help="a data bundle for the runs")
    p.add_argument("--bundle", required=True, help="folder prefix: parts are <bundle>1, 2 ...")
    p.add_argument("--targets", nargs="+", default=list(TARGETS))
    p.add_argument("--splits", nargs="+", type=int, default=list(SPLITS))
    p.add_argument("--max-mb", type=float, default=1e9)
    p = sub.add_parser("run", help="the runs (resumable)")
    p.add_argument("--bundle", nargs="+", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seconds", type=float, default=None, help="stop starting runs after this")
    p.add_argument("--tf32", action="store_true", help="TF32 convolutions on a GPU")
    p.add_argument("--phases", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--jsonl", default=None, help="also append every record to this file")
    p.add_argument("--log", default=None)
    p.add_argument("--targets", nargs="+", default=list(TARGETS))
    p.add_argument("--splits", nargs="+", type=int, default=list(SPLITS))
    p.add_argument("--recipes", nargs="+", default=None, help="the grid (default: all)")
    p.add_argument("--smoke", action="store_true", help="a 2-step recipe only (code check)")
    p.add_argument("--previous", nargs="*", default=[],
                   help="folders with earlier records (runs/*.json or *.jsonl)")
    p = sub.add_parser("cost", help="CPU seconds of one fine-tune per recipe")
    p.add_argument("--bundle", nargs="+", required=True)
    p.add_argument("--recipes", nargs="+", default=list(RECIPES))
    p.add_argument("--threads", type=int, default=2)
    p = sub.add_parser("table", help="results.csv, tables and figures")
    for p in sub.choices.values():
        p.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    if getattr(args, "splits", None) and any(s not in SPLITS for s in args.splits):
        parser.error("only the authors' splits 0-4 may be run (5-9 are held out)")
    if args.command == "table":
        from _effort_report import table

        table(Path(args.out))
        return 0
    {"prepare": prepare, "pack": pack, "run": run, "cost": cost}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
