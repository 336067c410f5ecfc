"""Share of the chosen support patches of a ``kwtl run`` on the synthetic benchmark that hold
foreground (ground truth, read afterwards for this description only).

    PYTHONPATH=$PWD python benchmarks/support_foreground.py OUT_FOLDER [--n-images 10]
        [--image-size 96] [--stride 16]

"Holds foreground": at least the authors' 360 px of a 256² patch, scaled to the patch area.
Reads the per-run JSON files of ``OUT_FOLDER/results`` (their ``support`` rows are
``(pool image, row, col, score)``) and regenerates the synthetic masks with the run's data
parameters (the ``quick`` profile's by default).
"""

import argparse
import collections
import glob
import json
import os

import numpy as np

from kwtl.datasets import make_synthetic_benchmark


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--n-images", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--stride", type=int, default=16)
    args = parser.parse_args()
    data = make_synthetic_benchmark(
        n_images=args.n_images, image_size=args.image_size, random_state=0
    )
    masks = dict(zip(data.names, data.masks))
    shares = collections.defaultdict(list)
    pool_share = {}
    for path in sorted(glob.glob(os.path.join(args.out, "results", "*.json"))):
        run = json.load(open(path))
        support = run["support"]
        support = json.loads(support) if isinstance(support, str) else support
        size = run["patch_size"]
        cut = 360 * (size / 256) ** 2

        def holds(name, r, c):
            return masks[name][r : r + size, c : c + size].sum() >= cut

        shares[(run["target"], run["selector"])].append(
            np.mean([holds(run["pool_images"][int(i)], int(r), int(c)) for i, r, c, *_ in support])
        )
        if run["target"] not in pool_share:
            grid = range(0, args.image_size - size + 1, args.stride)
            pool_share[run["target"]] = np.mean(
                [holds(n, r, c) for n in run["pool_images"] for r in grid for c in grid]
            )
    print("| target | selector | support patches holding foreground | runs | pool share |")
    print("|---|---|---|---|---|")
    for (target, selector), values in sorted(shares.items()):
        print(
            f"| {target} | {selector} | {np.mean(values):.2f} | {len(values)} | "
            f"{pool_share[target]:.2f} |"
        )


if __name__ == "__main__":
    main()
