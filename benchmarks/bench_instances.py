"""How well ``kwtl.postprocess.label_instances`` recovers nuclei from binary masks (issue 14).

The two DSB2018 substitutes of ``shared/data`` (B39, B5) ship the ground-truth instance
labels (``labels/``) beside the binary masks (``masks/``) in which touching nuclei are merged.
This script labels each binary mask with

* ``components``: plain 8-connected components (no splitting), and
* ``label_instances`` at a few ``min_distance`` values,

and matches the objects to the ground-truth instances one to one at IoU > 0.5 (an IoU above
0.5 makes a match unique). Reported: objects found vs true, precision, recall, F1, and the
time per image (wall clock, noisy on a shared machine). Run from the repository root::

    PYTHONPATH=$PWD python benchmarks/bench_instances.py --json benchmarks/results/instances.json

Nothing here is tuned on test images: the binary masks are ground truth, not predictions, so
this measures the splitting step alone.
"""

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from kwtl.datasets import read_mask
from kwtl.postprocess import label_instances

DATASETS = {"B39": "B39_sub_DSB2018_U2OS", "B5": "B5_sub_DSB2018_fluo360"}


def match_counts(truth, found, iou_threshold=0.5):
    """(matched, true objects, found objects): pairs with IoU > threshold (unique for a
    threshold >= 0.5, since an object can overlap only one other by more than half)."""
    t = truth.ravel().astype(np.int64)
    f = found.ravel().astype(np.int64)
    n_t, n_f = int(t.max()), int(f.max())
    both = (t > 0) & (f > 0)
    overlap = np.bincount(t[both] * (n_f + 1) + f[both], minlength=(n_t + 1) * (n_f + 1))
    overlap = overlap.reshape(n_t + 1, n_f + 1)
    area_t = np.bincount(t, minlength=n_t + 1)
    area_f = np.bincount(f, minlength=n_f + 1)
    union = area_t[:, None] + area_f[None, :] - overlap
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, overlap / union, 0.0)
    tp = int((iou[1:, 1:] > iou_threshold).sum())
    return tp, int((area_t[1:] > 0).sum()), int((area_f[1:] > 0).sum())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--min-distance", type=int, nargs="+", default=[3, 5, 8])
    parser.add_argument("--min-size", type=int, default=16)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    rows = []
    for name, folder in DATASETS.items():
        root = Path(args.data) / folder
        files = sorted((root / "labels").iterdir())
        truths = [read_mask(f) for f in files]
        binaries = [read_mask(root / "masks" / f.name) != 0 for f in files]
        methods = [("components", None)] + [("label_instances", d) for d in args.min_distance]
        for method, min_distance in methods:
            tp = n_true = n_found = 0
            seconds = 0.0
            for truth, binary in zip(truths, binaries):
                start = time.perf_counter()
                if method == "components":
                    found = ndimage.label(binary, np.ones((3, 3)))[0]
                else:
                    found = label_instances(
                        binary, min_distance=min_distance, min_size=args.min_size
                    )
                seconds += time.perf_counter() - start
                a, b, c = match_counts(truth, found)
                tp, n_true, n_found = tp + a, n_true + b, n_found + c
            precision = tp / max(n_found, 1)
            recall = tp / max(n_true, 1)
            rows.append(
                {
                    "dataset": name,
                    "images": len(files),
                    "method": method,
                    "min_distance": min_distance,
                    "min_size": args.min_size if min_distance else None,
                    "true_objects": n_true,
                    "found_objects": n_found,
                    "matched": tp,
                    "precision": round(precision, 4),
                    "recall": round(recall, 4),
                    "f1": round(2 * precision * recall / max(precision + recall, 1e-12), 4),
                    "ms_per_image": round(1000 * seconds / len(files), 1),
                }
            )
            r = rows[-1]
            print(
                f"{name:4s} {method:16s} min_distance={str(min_distance):4s} "
                f"true={n_true:5d} found={n_found:5d} P={r['precision']:.3f} "
                f"R={r['recall']:.3f} F1={r['f1']:.3f} {r['ms_per_image']:.0f} ms/image"
            )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(
                {
                    "command": "PYTHONPATH=$PWD python benchmarks/bench_instances.py --json "
                    + args.json,
                    "machine": platform.platform(),
                    "rows": rows,
                },
                indent=1,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
