"""How sparse is the foreground of real microscopy data, per image and per candidate patch?

Measures, for every dataset under ``../shared/data`` (ground-truth masks only; nothing is
trained or selected), the foreground fraction of each image and of each patch of a
non-overlapping grid, and the same for the embedded synthetic benchmark at the ``quick``
profile's sizes. The numbers set the synthetic generator's foreground density and its spread
across images (``kwtl/datasets/_synthetic.py``); they are recorded in
``benchmarks/results/foreground_stats.json`` and summarised in ``benchmarks/RESULTS.md``.

    PYTHONPATH=$PWD python benchmarks/foreground_stats.py [--data ../shared/data]

"Empty" patches are those under the authors' ground-truth filter (360 foreground pixels of a
256² patch, 0.55 % of the patch area, scaled to the patch size).
"""

import argparse
import json
import os
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from kwtl.datasets import make_synthetic_benchmark, read_mask
from kwtl.utils import as_mask

FOLDERS = {
    "ssTEM": "ssTEM",
    "EM": "EM",
    "B39": "B39_sub_DSB2018_U2OS",
    "B5": "B5_sub_DSB2018_fluo360",
    "TNBC": "TNBC_sub_NuInsSeg",
}
FILTER_FRACTION = 360 / 256**2
#: The real dataset each synthetic domain imitates.
COUNTERPART = {
    "fluorescence": "B5",
    "fluorescence_dense": "B39",
    "histology": "TNBC",
    "em": "EM",
    "sstem": "ssTEM",
}
SYNTHETIC_SIZE, SYNTHETIC_PATCH = 96, 32  # the ``quick`` profile of ``kwtl run``


def mean_object_area(masks):
    """Mean area of the connected foreground components (of at least 5 pixels)."""
    areas = []
    for m in masks:
        labels, _ = ndi.label(m)
        a = np.bincount(labels.ravel())[1:]
        areas += a[a >= 5].tolist()
    return float(np.mean(areas))


def crops(masks, size):
    """Non-overlapping ``size``² crops (the synthetic image's field of view in real pixels)."""
    return [
        m[r : r + size, c : c + size]
        for m in masks
        for r in range(0, m.shape[0] - size + 1, size)
        for c in range(0, m.shape[1] - size + 1, size)
    ]


def patch_fractions(mask, size):
    h, w = mask.shape
    return np.array(
        [
            mask[r : r + size, c : c + size].mean()
            for r in range(0, h - size + 1, size)
            for c in range(0, w - size + 1, size)
        ]
    )


def summarise(masks, patch_size):
    per_image = np.array([m.mean() for m in masks])
    per_patch = np.concatenate([patch_fractions(m, patch_size) for m in masks])
    empty_per_image = np.array(
        [np.mean(patch_fractions(m, patch_size) < FILTER_FRACTION) for m in masks]
    )
    q = lambda x, p: float(np.quantile(x, p))  # noqa: E731
    return {
        "n_images": len(masks),
        "image_shape": list(masks[0].shape),
        "patch_size": patch_size,
        "n_patches": int(per_patch.size),
        "image_fraction_mean": float(per_image.mean()),
        "image_fraction_sd": float(per_image.std()),
        "image_fraction_cv": float(per_image.std() / per_image.mean()),
        "image_fraction_q10_q50_q90": [q(per_image, 0.1), q(per_image, 0.5), q(per_image, 0.9)],
        "image_fraction_min_max": [float(per_image.min()), float(per_image.max())],
        "patch_fraction_q10_q50_q90": [q(per_patch, 0.1), q(per_patch, 0.5), q(per_patch, 0.9)],
        "patch_empty_share": float(np.mean(per_patch < FILTER_FRACTION)),
        "patch_zero_share": float(np.mean(per_patch == 0)),
        "patch_empty_share_per_image_q10_q50_q90": [
            q(empty_per_image, 0.1),
            q(empty_per_image, 0.5),
            q(empty_per_image, 0.9),
        ],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    )
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "foreground_stats.json")
    )
    args = parser.parse_args()
    report = {"real": {}, "synthetic": {}, "matched": {}}
    real_masks = {}
    for name, folder in FOLDERS.items():
        paths = sorted((Path(args.data) / folder / "masks").glob("*.png"))
        if not paths:
            continue
        masks = [as_mask(read_mask(p), name=str(p)) for p in paths]  # kwtl's mask rule
        real_masks[name] = masks
        report["real"][name] = {f"patch_{s}": summarise(masks, s) for s in (256, 128)}
        report["real"][name]["mean_object_area"] = mean_object_area(masks)
    # the quick profile of ``kwtl run``: 96² images, 32² patches
    data = make_synthetic_benchmark(n_images=40, image_size=SYNTHETIC_SIZE, random_state=0)
    for domain in data.datasets:
        masks = [m for m, d in zip(data.masks, data.dataset) if d == domain]
        report["synthetic"][domain] = {
            f"patch_{SYNTHETIC_PATCH}": summarise(masks, SYNTHETIC_PATCH)
        }
        report["synthetic"][domain]["mean_object_area"] = mean_object_area(masks)
        real = COUNTERPART[domain]
        if real not in real_masks:
            continue
        # the same field of view: scale = linear size ratio of the objects
        scale = np.sqrt(
            report["real"][real]["mean_object_area"]
            / report["synthetic"][domain]["mean_object_area"]
        )
        fov = int(round(SYNTHETIC_SIZE * scale))
        patch = int(round(SYNTHETIC_PATCH * scale))
        matched = crops(real_masks[real], fov)
        if len(matched) < 5:  # images smaller than the field of view: the whole images
            matched, fov = real_masks[real], None
        report["matched"][domain] = {
            "real": real,
            "scale": float(scale),
            "real_field_of_view": fov,
            "real_patch": patch,
            "real_at_synthetic_scale": summarise(matched, patch),
        }
    tmp = args.out + ".tmp"
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, args.out)
    rows = [
        ("real", n, s, v)
        for n, d in report["real"].items()
        for s, v in d.items()
        if s.startswith("patch")
    ]
    rows += [
        ("synthetic", n, s, v)
        for n, d in report["synthetic"].items()
        for s, v in d.items()
        if s.startswith("patch")
    ]
    rows += [
        (
            f"real {d['real']} as {n} (x{d['scale']:.1f}, fov {d['real_field_of_view']})",
            n,
            "",
            d["real_at_synthetic_scale"],
        )
        for n, d in report["matched"].items()
    ]
    print("| data | set | patch | image fg mean | sd | CV | q10/q50/q90 | patch empty | zero |")
    print("|---|---|---|---|---|---|---|---|---|")
    for kind, name, size, v in rows:
        q = "/".join(f"{x:.3f}" for x in v["image_fraction_q10_q50_q90"])
        print(
            f"| {kind} | {name} | {v['patch_size']} | {v['image_fraction_mean']:.3f} | "
            f"{v['image_fraction_sd']:.3f} | {v['image_fraction_cv']:.2f} | {q} | "
            f"{v['patch_empty_share']:.2f} | {v['patch_zero_share']:.2f} |"
        )


if __name__ == "__main__":
    main()
