"""Time ``kwtl select`` on a folder of 20 images of 1024² (issue 14, item 8).

Runs the command as a user would (``kwtl.cli.main``) with its defaults (one PLFT epoch on
at most 64 patches, the default selector with dense scoring, 256² patches of the authors'
model on its stride-30 grid) and stores the wall time, the phase times recorded in
``selection.json`` and the load average before and after in a JSON file.

    PYTHONPATH=$PWD KWTL_WEIGHTS=../shared/weights python benchmarks/bench_workflow_select.py \
        --images ../shared/data/ssTEM/images --model authors:EM --threads 1 \
        --json benchmarks/results/workflow/select_sstem20.json
"""

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True)
    parser.add_argument("--model", default="authors:EM")
    parser.add_argument("--budget", type=int, default=20)
    parser.add_argument("--n-images", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--selector", default=None, help="default: the command's")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()

    from kwtl.cli import main as kwtl

    work = Path(tempfile.mkdtemp())
    folder = work / "images"
    folder.mkdir()
    for f in sorted(Path(args.images).iterdir())[: args.n_images]:
        shutil.copy(f, folder / f.name)
    argv = [
        "select",
        str(folder),
        "--model",
        args.model,
        "--budget",
        str(args.budget),
        "--out",
        str(work / "todo"),
        "--threads",
        str(args.threads),
    ]
    if args.selector:
        argv += ["--selector", args.selector]
    load_before = os.getloadavg()
    started = time.perf_counter()
    code = kwtl(argv)
    wall = time.perf_counter() - started
    load_after = os.getloadavg()
    meta = json.loads((work / "todo" / "selection.json").read_text())
    result = {
        "command": "kwtl "
        + " ".join(argv[:1] + ["IMAGES_DIR"] + argv[2:6] + ["--out", "TODO_DIR"] + argv[8:]),
        "images": args.images,
        "n_images": meta["n_images"],
        "exit_code": code,
        "wall_seconds": round(wall, 1),
        "phase_seconds": meta["seconds"],
        "n_candidates": meta["n_candidates"],
        "selector": meta["selector"]["name"],
        "dense": meta["dense"],
        "pl_epochs": meta["pl_epochs"],
        "pl_max_patches": meta["pl_max_patches"],
        "load_average_before": load_before,
        "load_average_after": load_after,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
