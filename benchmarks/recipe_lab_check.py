"""The default fine-tuning recipe on fluorescence and H&E images, through the lab workflow.

Before the measured recipe (``FineTuneRecipe()``, 250 steps with flips and quarter turns,
chosen on EM and ssTEM) became the default, it had to hold on the other kinds of image a
lab brings. For B39 and B5 (fluorescence nuclei) and TNBC (H&E, read as grey), as a user
would: ``kwtl.workflow.select`` on a folder of pool images with the authors' released
model for that kind of image (default selector, one image's worth of 256² patches),
masks "drawn" from the ground truth into the package, then ``kwtl.workflow.finetune`` twice
— the default recipe and the paper's 20 epochs (``epochs=20``) — and both models (and the
PLFT model they start from) predict held-out images (every fifth image by sorted name,
never selected from), scored by foreground IoU. Resumable (every step of the workflow is).

    KWTL_WEIGHTS=../shared/weights PYTHONPATH=$PWD python benchmarks/recipe_lab_check.py \\
        --out /tmp/kwtl_lab_check --seeds 0 1 --threads 1
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"
if not SHARED.exists():
    SHARED = Path("/work/shared")
DATASETS = {
    "B39": ("B39_sub_DSB2018_U2OS", "authors:B39"),
    "B5": ("B5_sub_DSB2018_fluo360", "authors:B5"),
    "TNBC": ("TNBC_sub_NuInsSeg", "authors:TNBC"),
}


def pool_and_test(folder, work):
    """Pool images linked into ``work/pool`` (a folder a user would point at), test names."""
    names = sorted(p.name for p in (folder / "images").iterdir() if p.is_file())
    test = names[::5]
    pool_dir = work / "pool"
    pool_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        link = pool_dir / name
        if name not in test and not link.exists():
            os.symlink(folder / "images" / name, link)
    return test


def draw_from_truth(todo, folder):
    """The annotator: every package item's mask cut from the ground truth."""
    from kwtl.datasets import read_mask, write_mask
    from kwtl.workflow import read_selection

    table = read_selection(todo)
    for row in table.itertuples(index=False):
        path = todo / row.mask_file
        if path.exists():
            continue
        source = next((folder / "masks").glob(f"{Path(row.source_image).stem}.*"))
        truth = read_mask(source) > 0
        size = int(row.size) if str(row.size).isdigit() else None
        crop = truth if size is None else truth[row.row : row.row + size, row.col : row.col + size]
        write_mask(path, crop)
    return len(table)


def miou(model_file, folder, test):
    from kwtl.datasets import read_image, read_mask
    from kwtl.metrics import iou_score
    from kwtl.workflow import load_model

    seg = load_model(model_file)
    images = [read_image(folder / "images" / n) for n in test]
    truths = [read_mask(next((folder / "masks").glob(f"{Path(n).stem}.*"))) > 0 for n in test]
    preds = seg.predict(images)
    return 100 * float(np.mean([iou_score(t, p) for t, p in zip(truths, preds)]))


def run(args):
    import torch

    from kwtl.workflow import finetune, select

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    record = Path(args.record)
    results = json.loads(record.read_text()) if record.exists() else []
    done = {(r["dataset"], r["seed"]) for r in results}
    for seed in args.seeds:
        for name in args.datasets:
            if (name, seed) in done:
                continue
            folder_name, model = DATASETS[name]
            folder = SHARED / "data" / folder_name
            work = out / name
            test = pool_and_test(folder, work)
            from kwtl.datasets import read_image

            shapes = [read_image(p).shape for p in sorted((work / "pool").iterdir())[:5]]
            budget = max(1, round(float(np.mean([h * w for h, w in shapes])) / 256**2))
            todo = work / f"todo{seed}"
            select(work / "pool", model, budget, todo, random_state=seed, progress=False)
            n_items = draw_from_truth(todo, folder)
            row = {
                "dataset": name,
                "seed": seed,
                "model": model,
                "budget": budget,
                "n_items": n_items,
                "n_test": len(test),
                "plft": miou(todo / "model_plft.kwtl", folder, test),
            }
            for label, kwargs in (("recipe", {}), ("paper20", {"epochs": 20})):
                start = time.perf_counter()
                tuned = work / f"{label}{seed}.kwtl"
                finetune(todo, tuned, random_state=seed, progress=False, **kwargs)
                row[f"seconds_{label}"] = round(time.perf_counter() - start, 1)
                row[label] = miou(tuned, folder, test)
            row["load"] = os.getloadavg()[0]
            results.append(row)
            record.write_text(json.dumps(results, indent=1) + "\n")
            print(json.dumps(row), flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="/tmp/kwtl_lab_check")
    parser.add_argument("--record", default="benchmarks/results/effort/lab_check.json")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--threads", type=int, default=2)
    run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
