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
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
if "--smoke" in sys.argv[1:]:
    os.environ["KWTL_EFFORT_SMOKE"] = "1"  # before _effort_plan is read by any process

from _effort_plan import (
    ARMS,
    PATCH,
    RECIPES,
    SHARED,
    SPLITS,
    TARGETS,  # noqa: E402
    make_recipe,
)

OUT = Path(__file__).resolve().parent / "results" / "effort"


def _cache_images(args, name, indices):
    """Worker of ``prepare --workers N``: the per-image statistics of some images."""
    import torch

    from _effort_exec import Bundle
    from _effort_select import cached_statistics

    torch.set_num_threads(1)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
    target, seg = _target_and_model(args, name, Bundle(args.bundle) if args.bundle else None)
    for i in indices:
        cached_statistics(Path(args.out) / "cache", target, i, seg)


def _target_and_model(args, name, bundle):
    from _effort_select import BundleTarget, Target
    from kwtl.models import load_pretrained

    if bundle is not None:
        target, weights = BundleTarget(bundle, name), bundle.weights(name).parent
    else:
        target, weights = Target(name), SHARED / "weights"
    seg = load_pretrained(
        f"authors:{name}",
        source=weights,
        precision="fp32",
        patch_size=PATCH,
        stride=PATCH,
        device=args.device,
    )
    return target, seg


def prepare(args):
    """Every arm's selections for the given targets and splits (per-image statistics
    cached under <out>/cache/, selections written to <out>/selections/)."""
    import torch

    from _effort_exec import Bundle, atomic_write_json
    from _effort_select import split_selections

    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
    out = Path(args.out)
    bundle = Bundle(args.bundle) if args.bundle else None
    if bundle is not None:  # the splits the bundle was packed for
        packed = {int(k) for t in args.targets for k in bundle.plan["splits"].get(t, {})}
        args.splits = [k for k in args.splits if k in packed]
    for name in args.targets:
        if bundle is not None and all(
            set(args.arms) <= set(bundle.plan["selections"].get(name, {}).get(str(k), {}))
            for k in args.splits
        ):
            print(f"{name}: the bundle's plan has every selection already")
            continue
        target, seg = _target_and_model(args, name, bundle)
        if args.workers > 1:  # per-image statistics in parallel, then the selections
            import multiprocessing as mp

            pool_ids = sorted({i for k in args.splits for i in target.split(k)[0]})
            chunks = [pool_ids[w :: args.workers] for w in range(args.workers)]
            procs = [
                mp.get_context("spawn").Process(target=_cache_images, args=(args, name, c))
                for c in chunks
            ]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
        for split in args.splits:
            path = out / "selections" / f"{name}_split{split}.json"
            done = json.loads(path.read_text()) if path.exists() else {}
            missing = [a for a in args.arms if a not in done]
            if not missing:
                continue
            start = time.perf_counter()
            done.update(split_selections(out / "cache", target, split, seg, missing))
            atomic_write_json(path, done)
            print(
                f"{name} split {split}: {', '.join(missing)} ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )


def write_plan(out, targets, splits):
    from _effort_select import Target

    plan = {"splits": {}, "selections": {}}
    needed = {}
    for name in targets:
        target = Target(name)
        plan["splits"][name], plan["selections"][name] = {}, {}
        for split in splits:
            pool, test = target.split(split)
            plan["splits"][name][str(split)] = {
                "pool": [target.names[i] for i in pool],
                "test": [target.names[i] for i in test],
            }
            path = out / "selections" / f"{name}_split{split}.json"
            if path.exists():  # else made later on the machine that runs (prepare --bundle)
                plan["selections"][name][str(split)] = json.loads(path.read_text())
            needed.setdefault(name, set()).update(target.names[i] for i in pool + test)
    return plan, needed


def pack(args):
    """Lossless WebP images and 1-bit PNG masks, in parts of at most --max-mb MiB each (the
    first part also holds the PLFT weights; every part holds the plan)."""
    from PIL import Image

    from _effort_select import Target

    out = Path(args.out)
    plan, needed = write_plan(out, args.targets, args.splits)
    base = Path(args.bundle)
    for old in sorted(base.parent.glob(base.name + "*")):
        shutil.rmtree(old)
    limit = args.max_mb * 2**20
    part, size = 1, 0

    def start(k):
        f = Path(f"{base}{k}")
        (f / "data").mkdir(parents=True)
        (f / "plan.json").write_text(json.dumps(plan))
        if k == 1:
            (f / "weights").mkdir()
            for name in args.targets:
                shutil.copy(SHARED / "weights" / f"authors_plft_{name}.pth", f / "weights")
        return f, sum(p.stat().st_size for p in f.rglob("*") if p.is_file())

    folder, size = start(part)
    for name in args.targets:
        target = Target(name)
        for i, stem in enumerate(target.names):
            if stem not in needed[name]:
                continue
            image = folder / "data" / name / f"{stem}.webp"
            image.parent.mkdir(exist_ok=True)
            # lossless; effort 50 is ~50x faster than 100 at ~9 % more bytes
            Image.fromarray(target.images[i]).save(
                image, format="WEBP", lossless=True, quality=50, method=4
            )
            mask = image.with_suffix(".mask.png")
            Image.fromarray(target.masks[i]).convert("1").save(mask, optimize=True)
            size += image.stat().st_size + mask.stat().st_size
            if size > limit - 2**20:
                part += 1
                folder, size = start(part)
    for f in sorted(base.parent.glob(base.name + "*")):
        total = sum(p.stat().st_size for p in f.rglob("*") if p.is_file())
        print(f"{f}: {total / 2**20:.1f} MiB, {len(list(f.rglob('*.webp')))} images", flush=True)


def _logger(path):
    """A function printing a time-stamped line, and appending it to ``path`` when given."""
    log_file = open(path, "a") if path else None

    def log(msg):
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        if log_file:
            log_file.write(line + "\n")
            log_file.flush()

    return log


def run(args):
    from _effort_sched import Scheduler

    deadline = None if args.seconds is None else time.time() + args.seconds
    log = _logger(args.log)

    if args.smoke:  # the code path end to end in minutes: a 2-step recipe (_effort_plan)
        args.recipes = ["smoke"]
    sched = Scheduler(
        args.bundle,
        args.out,
        device=args.device,
        workers=args.workers,
        tf32=args.tf32,
        deadline=deadline,
        jsonl=args.jsonl,
        log=log,
        phases=args.phases,
        previous=args.previous,
        targets=args.targets,
        splits=args.splits,
        recipes=args.recipes,
    )
    sched.run()


def queue(args):
    """Run chosen jobs in a given order (e.g. on the CPU, where the phases do not fit):
    seed-major over the given arms, budgets, splits and targets."""
    from _effort_sched import Scheduler, job

    log = _logger(args.log)

    if "round2_entropy" in args.arms and not args.round1_arm:
        raise SystemExit("round2_entropy needs --round1-arm (the arm that draws round 1)")
    jobs = [
        job(t, s, a, b, seed, args.recipe, args.phase)
        if a != "round2_entropy"
        else job(t, s, a, b, seed, args.recipe, args.phase, 2, args.round1_arm)
        for seed in args.seeds
        for a in args.arms
        for b in args.budgets
        for s in args.splits
        for t in args.targets
    ]
    sched = Scheduler(
        args.bundle, args.out, device=args.device, workers=args.workers, jsonl=args.jsonl, log=log
    )
    import multiprocessing as mp

    context = mp.get_context("spawn")
    sched.jobs, sched.results = context.Queue(), context.Queue()
    from _effort_sched import _worker

    workers = [
        context.Process(
            target=_worker,
            args=(sched.folders, sched.device, False, sched.selections, sched.jobs, sched.results),
            kwargs={"models": Path(args.out) / "cache" / "models", "keep": args.keep_models},
        )
        for _ in range(sched.n_workers)
    ]
    for w in workers:
        w.start()
    sched.workers = workers
    try:
        sched._run_phase("queue", sched.runnable(jobs))
    finally:
        sched._finish(workers)


def support(args):
    """Every arm's support patches at one budget and draw, described against the ground
    truth, beside the arm's mean mIoU over the draw's runs with the default recipe."""
    from _effort_sched import load_records
    from _effort_select import support_table

    from _effort_plan import default_recipe

    records = list(load_records([Path(args.out)]).values())
    recipe = default_recipe(records)[0]
    print("\n".join(support_table(Path(args.out), records, recipe, args.budget, args.seed)))


def cost(args):
    """CPU seconds per optimiser step of each recipe (``--steps`` steps after one warm-up
    step, on 16 random ssTEM patches), with ``--threads`` torch threads; a recipe's cost is
    its steps times this."""
    import copy

    import torch

    from _effort_select import Target, image_grid
    from kwtl.datasets import PatchSet
    from kwtl.models import load_pretrained

    torch.set_num_threads(args.threads)
    target = Target("ssTEM")
    seg0 = load_pretrained(
        "authors:ssTEM", source=SHARED / "weights", precision="fp32", patch_size=PATCH, stride=PATCH
    )
    rng = np.random.default_rng(0)
    coords = []
    for i in rng.choice(len(target.images), 16):
        grid = image_grid(target.images[i])
        coords.append([len(coords), *grid.coords[rng.integers(len(grid)), 1:]])
    arrays = [target.images[i] for i in range(16)]
    patches = PatchSet(arrays, coords, PATCH)
    masks = patches.with_arrays([target.masks[i] for i in range(16)])
    for name in args.recipes:
        recipe = make_recipe(name)
        timed = recipe.set_params(steps=args.steps, epochs=None, schedule="constant", warmup=0)
        seg = copy.deepcopy(seg0)
        timed.set_params(steps=1).train(seg, patches, masks, random_state=0)  # warm-up
        timed.set_params(steps=args.steps)
        start = time.perf_counter()
        timed.train(seg, patches, masks, random_state=0)
        per_step = (time.perf_counter() - start) / args.steps
        full = make_recipe(name).n_steps(16)
        print(
            f"{name}: {per_step:.3f} s/step at batch {timed.batch_size} ({args.threads} "
            f"threads, load {os.getloadavg()[0]:.1f}); {full} steps = {full * per_step:.0f} s",
            flush=True,
        )


def paper_area(args):
    """The drawn area of the paper's 1 shot (P_t = 500 ssTEM / 400 EM patches of the
    stride-30 grid, overlapping): the union of the windows of a random draw and of the
    paper's consistency top-P_t (scores cached by ``prepare``), in image-equivalents."""
    from _effort_select import Target, pool_table

    per_shot = {"ssTEM": 500, "EM": 400}
    rows = []
    for name in args.targets:
        target = Target(name)
        for split in args.splits:
            pool, _ = target.split(split)
            table = pool_table(Path(args.out) / "cache", target, pool, None)
            n = per_shot[name]
            rng = np.random.default_rng(split)
            picks = {
                "random": rng.choice(len(table["image"]), n, replace=False),
                "consistency": np.argsort(-table["consistency"], kind="stable")[:n],
            }
            area = float(np.mean([np.prod(target.images[i].shape) for i in pool]))
            for arm, chosen in picks.items():
                covered = {}
                for k in chosen:
                    i, (r, c) = int(table["image"][k]), table["coords"][k]
                    mask = covered.setdefault(i, np.zeros(target.images[i].shape, bool))
                    mask[r : r + PATCH, c : c + PATCH] = True
                drawn = sum(m.sum() for m in covered.values())
                rows.append((name, split, arm, n, drawn / area, len(covered)))
                print(
                    f"{name} split {split} {arm}: {n} patches = {drawn / area:.1f} "
                    f"image-equivalents over {len(covered)} images",
                    flush=True,
                )
    for name in args.targets:
        for arm in ("random", "consistency"):
            v = [r[4] for r in rows if r[0] == name and r[2] == arm]
            print(f"{name} {arm}: mean {np.mean(v):.1f} image-equivalents (splits {args.splits})")


def one_job(args):
    """Run one job given as JSON (a check of the code path on a new machine)."""
    from _effort_exec import Context, run_job

    ctx = Context(args.bundle, args.device, args.tf32, models=args.models, keep=args.keep_models)
    start = time.perf_counter()
    r = run_job(ctx, json.loads(args.json))
    print(
        f"{r['id']}: mIoU {r['miou']:.1f}, {r['n_patches']} patches, predicted / true "
        f"foreground {100 * np.mean(r['per_image_pred_fg']):.1f} / "
        f"{100 * np.mean(r['per_image_true_fg']):.1f} %, {time.perf_counter() - start:.1f} s",
        flush=True,
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="every arm's selections (CPU)")
    p.add_argument("--targets", nargs="+", default=list(TARGETS))
    p.add_argument("--splits", nargs="+", type=int, default=list(SPLITS))
    p.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bundle", nargs="*", default=None, help="read the data from a bundle")
    p.add_argument("--device", default="cpu")
    p.add_argument("--tf32", action="store_true")
    p.add_argument("--workers", type=int, default=1, help="processes for the statistics")
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
    p.add_argument(
        "--previous",
        nargs="*",
        default=[],
        help="folders with earlier records (runs/*.json or *.jsonl)",
    )
    p = sub.add_parser("queue", help="chosen jobs in a given order (resumable)")
    p.add_argument("--bundle", nargs="+", required=True)
    p.add_argument("--recipe", required=True)
    p.add_argument("--arms", nargs="+", required=True)
    p.add_argument("--budgets", nargs="+", type=float, default=[1])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--targets", nargs="+", default=list(TARGETS))
    p.add_argument("--splits", nargs="+", type=int, default=list(SPLITS))
    p.add_argument("--phase", type=int, default=2, help="the phase recorded with the runs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--jsonl", default=None)
    p.add_argument("--log", default=None)
    p.add_argument(
        "--round1-arm", default=None, help="round 1's arm for round2_entropy (two rounds)"
    )
    p.add_argument(
        "--keep-models",
        nargs="*",
        default=[],
        metavar="ARM",
        help="keep these arms' round-1 models in <out>/cache/models; a round-2 job whose "
        "round 1 is kept loads it instead of fine-tuning it again",
    )
    p = sub.add_parser("cost", help="CPU seconds per step of each recipe")
    p.add_argument("--recipes", nargs="+", default=list(RECIPES))
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p = sub.add_parser("paper-area", help="the drawn area of the paper's 1 shot")
    p.add_argument("--targets", nargs="+", default=list(TARGETS))
    p.add_argument("--splits", nargs="+", type=int, default=list(SPLITS))
    p = sub.add_parser("job", help="run one job given as JSON (a code-path check)")
    p.add_argument("--bundle", nargs="+", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--tf32", action="store_true")
    p.add_argument("--models", default=None, help="a folder of kept round-1 models")
    p.add_argument("--keep-models", nargs="*", default=[], metavar="ARM")
    p.add_argument("--json", required=True)
    p.add_argument("--smoke", action="store_true", help="make the 2-step recipe available")
    p = sub.add_parser("support", help="what every arm's patches hold (ground truth)")
    p.add_argument("--budget", type=float, default=1)
    p.add_argument("--seed", type=int, default=0)
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
    commands = {"prepare": prepare, "pack": pack, "run": run, "cost": cost, "job": one_job}
    commands["queue"] = queue
    commands["paper-area"] = paper_area
    commands["support"] = support
    commands[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
