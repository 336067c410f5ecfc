#!/usr/bin/env python
"""Dense scoring vs exact per-patch scoring on real data, from the authors' PLFT weights.

Issue 12. Two modes:

* ``agreement`` (default): for each dataset (``--datasets``) and each of the authors'
  splits (``--splits``, 0–4 only: 5–9 are reserved), ``--images-per-split`` pool images of
  that split are scored on the paper's candidate grid (256², stride 30). Exact per-patch
  scoring is expensive, so it runs on ``--candidates-per-image`` candidates drawn at random
  (seeded) from each image; dense scoring runs on the whole images (all their candidates)
  and its scores of the same candidates are compared: Spearman ρ and top-10 % overlap over
  all sampled candidates of the dataset, and the time of each path measured side by side in
  the same process (exact: seconds per candidate; dense: seconds per image, i.e. for all of
  its candidates). Selectors: consistency (dense with ``contrast_groups`` from
  ``--groups``) and entropy.
* ``pool``: every candidate of every pool image of one split (EM split 0: 132 images,
  61,776 candidates) scored densely by ``ConsistencySelector(dense=True)``: wall time and
  peak RSS of the process.
* ``pool-compare``: the first ``--max-images`` pool images of one split scored densely, image
  by image, alternately by the dense path before issue 12's second session (the image and its
  augmented copies batched into ~544-px tiles with 32-px margins) and today's (whole images
  per forward pass, no forward pass for identity auto-contrast tables): seconds per image of
  each, the ratio, the projected time of the whole pool, scores compared; plus one forward
  pass of FCRN-32 on a 768x1024 image in fp32 and under bf16 autocast (channels-last), timed
  alternately, to record whether bf16 pays on this CPU.

The weights are the authors' released PLFT state dicts (``../shared/weights``), loaded into
``FCRNSegmenter(module__width=32, module__affine=True)``. Results: JSON under
``benchmarks/results/dense/``; the command lines are in ``benchmarks/RESULTS.md``.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from kwtl.datasets import PatchSet, read_image
from kwtl.models import FCRNSegmenter
from kwtl.selection import ConsistencySelector, EntropySelector, MCDropoutSelector

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _perf_common import DEFAULT_DATA, DEFAULT_SPLITS, PeakRSS, image_files  # noqa: E402

WEIGHTS = Path(__file__).resolve().parent.parent.parent / "shared" / "weights"
OUT = Path(__file__).resolve().parent / "results" / "dense"


def load_plft(dataset, device="cpu", precision="auto", weights_dir=WEIGHTS):
    """FCRNSegmenter holding the authors' PLFT weights of ``dataset`` (local helper)."""
    seg = FCRNSegmenter(
        module__width=32, module__affine=True, device=device, precision=precision
    ).initialize()
    state = torch.load(
        Path(weights_dir) / f"authors_plft_{dataset}.pth", map_location=device, weights_only=True
    )
    seg.module_.load_state_dict(state, strict=True)
    return seg


def pool_files(dataset, split, data=DEFAULT_DATA, splits=DEFAULT_SPLITS):
    if not 0 <= int(split) <= 4:
        raise SystemExit("splits 5-9 are reserved: use 0-4")
    files = image_files(Path(data) / dataset / "images")
    table = json.loads(Path(splits).read_text())[dataset]
    return [files[int(i)] for i in table["unlabelled"][str(split)]]


def top_overlap(a, b, fraction=0.1):
    k = max(1, int(round(fraction * len(a))))
    top_a = set(np.argsort(-a, kind="stable")[:k].tolist())
    top_b = set(np.argsort(-b, kind="stable")[:k].tolist())
    return len(top_a & top_b) / k


def _plain(args):
    return {k: v for k, v in vars(args).items() if k != "save"}


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def load_average():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def run_agreement(args):
    rng = np.random.default_rng(args.seed)
    report = {
        "mode": "agreement",
        "args": _plain(args),
        "load_before": load_average(),
        "torch_threads": torch.get_num_threads(),
        "datasets": {},
    }
    for dataset in args.datasets:
        seg = load_plft(dataset, args.device, args.precision)
        rows = {"exact_consistency": [], "exact_entropy": [], "dense_entropy": []}
        for g in args.groups:
            rows[f"dense_consistency_g{g}"] = []
        if args.mc:
            rows.update({"exact_mc": [], "mc_exact_seed1": [], "dense_mc": []})
        times = {k: 0.0 for k in rows}
        n_candidates_total, n_images, used = 0, 0, set()
        for split in args.splits:
            files = pool_files(dataset, split)
            # distinct images across splits (the pools of different splits overlap)
            fresh = [f for f in files if f not in used]
            chosen = rng.choice(len(fresh), min(args.images_per_split, len(fresh)), replace=False)
            for f in [fresh[i] for i in sorted(chosen)]:
                used.add(f)
                image = read_image(f)
                full = PatchSet.from_images([image], 256, 30)
                pick = np.sort(
                    rng.choice(len(full), min(args.candidates_per_image, len(full)), replace=False)
                )
                sample = PatchSet(full.arrays, full.coords[pick], 256)
                n_candidates_total += len(full)
                n_images += 1
                # side by side, same process: exact on the sample, dense on the whole image
                for name, fn in (
                    [
                        ("exact_consistency", lambda: ConsistencySelector().score(sample, seg)),
                        ("exact_entropy", lambda: EntropySelector().score(sample, seg)),
                        (
                            "dense_entropy",
                            lambda: EntropySelector(dense=True).score(full, seg)[pick],
                        ),
                    ]
                    + [
                        (
                            f"dense_consistency_g{g}",
                            lambda g=g: ConsistencySelector(dense=True, contrast_groups=g).score(
                                full, seg
                            )[pick],
                        )
                        for g in args.groups
                    ]
                    + (
                        [
                            (
                                "exact_mc",
                                lambda: MCDropoutSelector(random_state=0).score(sample, seg),
                            ),
                            (
                                "mc_exact_seed1",  # Monte-Carlo noise floor: exact vs exact, other seed
                                lambda: MCDropoutSelector(random_state=1).score(sample, seg),
                            ),
                            (
                                "dense_mc",
                                lambda: MCDropoutSelector(dense=True, random_state=0).score(
                                    full, seg
                                )[pick],
                            ),
                        ]
                        if args.mc
                        else []
                    )
                ):
                    values, seconds = timed(fn)
                    rows[name].append(values)
                    times[name] += seconds
                report.setdefault("images", []).append([dataset, split, f.name])
                print(
                    f"{dataset} split {split} {f.name}: {len(full)} candidates, "
                    f"load {load_average()}",
                    flush=True,
                )
                report["datasets"][dataset] = _summary(
                    rows, times, n_images, n_candidates_total, args.splits
                )
                report["load_after"] = load_average()
                if args.save is not None:
                    args.save(report)
    return report


def _summary(rows, times, n_images, n_candidates_total, splits):
    if True:
        scores = {k: np.concatenate(v) for k, v in rows.items()}
        n_sample = len(scores["exact_consistency"])
        result = {
            "n_images": n_images,
            "n_sampled_candidates": n_sample,
            "n_candidates_of_those_images": n_candidates_total,
            "variants": {},
            "splits": list(splits),
        }
        for name, values in scores.items():
            if name.startswith("exact"):
                continue
            ref = (
                "exact_consistency"
                if "consistency" in name
                else "exact_mc"
                if "mc" in name
                else "exact_entropy"
            )
            exact = scores[ref]
            exact_per_candidate = times[ref] / n_sample
            result["variants"][name] = {
                "spearman_rho": float(spearmanr(exact, values)[0]),
                "top10_overlap": top_overlap(exact, values),
                "dense_seconds_per_image": times[name] / n_images,
                "exact_seconds_per_candidate": exact_per_candidate,
                "speedup_whole_images": exact_per_candidate * n_candidates_total / times[name],
            }
            print(name, json.dumps(result["variants"][name]), flush=True)
        return result


def run_pool(args):
    dataset, split = args.datasets[0], args.splits[0]
    seg = load_plft(dataset, args.device, args.precision)
    files = pool_files(dataset, split)[: args.max_images]
    with PeakRSS() as rss:
        t = time.perf_counter()
        images = [read_image(f) for f in files]
        pool = PatchSet.from_images(images, 256, 30)
        scores = ConsistencySelector(dense=True, contrast_groups=args.groups[0]).score(pool, seg)
        seconds = time.perf_counter() - t
    report = {
        "mode": "pool",
        "args": _plain(args),
        "dataset": dataset,
        "split": split,
        "n_images": len(images),
        "n_candidates": len(pool),
        "seconds": seconds,
        "peak_rss_mib": rss.peak,
        "load_avg": load_average(),
        "torch_threads": torch.get_num_threads(),
        "score_summary": [float(scores.min()), float(scores.mean()), float(scores.max())],
    }
    print(json.dumps(report, indent=1))
    return report


class _TiledBefore(FCRNSegmenter):
    """image_logits as before issue 12's second session: copies batched into square tiles."""

    def _tiled(self, forward, module, images, **kwargs):
        from kwtl.models._inference import forward_tiled

        budget = 4 * int(self.inference_batch_size) * int(self.patch_size) ** 2
        side = max(64, int((budget / max(1, len(images))) ** 0.5) // 8 * 8)
        return forward_tiled(
            forward,
            module,
            images,
            tile_size=side,
            device=self.device,
            dtype=self._amp_dtype,
            channels_last=self._inference_channels_last,
            **kwargs,
        )


def _bf16_vs_fp32(seg, image, repeats=2):
    from kwtl.models._inference import forward_patches

    module = seg._inference_module()
    times = {"fp32": [], "bf16": []}
    for _ in range(repeats):
        for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
            t = time.perf_counter()
            forward_patches(module, image[None].copy(), dtype=dtype, channels_last=True)
            times[name].append(time.perf_counter() - t)
    return {k: min(v) for k, v in times.items()}


def run_pool_compare(args):
    dataset, split = args.datasets[0], args.splits[0]
    after = load_plft(dataset, args.device, args.precision)
    before = _TiledBefore(
        module__width=32, module__affine=True, device=args.device, precision=args.precision
    ).initialize()
    before.module_.load_state_dict(after.module_.state_dict())
    files = pool_files(dataset, split)
    n_pool = len(files)
    files = files[: args.max_images]
    report = {
        "mode": "pool-compare",
        "args": _plain(args),
        "dataset": dataset,
        "split": split,
        "n_pool_images": n_pool,
        "load_before": load_average(),
        "torch_threads": torch.get_num_threads(),
        "native_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "images": [],
    }
    selector = ConsistencySelector(dense=True, contrast_groups=args.groups[0])
    with PeakRSS() as rss:
        for f in files:
            image = read_image(f)
            pool = PatchSet.from_images([image], 256, 30)
            row = {"image": f.name, "n_candidates": len(pool)}
            scores = {}
            for name, seg in (("before", before), ("after", after)):
                scores[name], row[f"{name}_seconds"] = timed(lambda: selector.score(pool, seg))
            row["max_abs_score_difference"] = float(
                np.abs(scores["before"] - scores["after"]).max()
            )
            row["load"] = load_average()
            report["images"].append(row)
            print(json.dumps(row), flush=True)
        report["one_forward_768x1024_seconds"] = _bf16_vs_fp32(after, image)
    per = {
        k: float(np.mean([r[f"{k}_seconds"] for r in report["images"]]))
        for k in ("before", "after")
    }
    report.update(
        {
            "seconds_per_image": per,
            "speedup": per["before"] / per["after"],
            "projected_pool_minutes": {k: v * n_pool / 60 for k, v in per.items()},
            "peak_rss_mib": rss.peak,
            "load_after": load_average(),
        }
    )
    print(
        json.dumps(
            {
                k: report[k]
                for k in (
                    "seconds_per_image",
                    "speedup",
                    "projected_pool_minutes",
                    "peak_rss_mib",
                    "one_forward_768x1024_seconds",
                )
            },
            indent=1,
        )
    )
    return report


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "mode", nargs="?", choices=("agreement", "pool", "pool-compare"), default="agreement"
    )
    p.add_argument("--datasets", nargs="+", default=["ssTEM", "EM"])
    p.add_argument("--splits", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--images-per-split", type=int, default=1)
    p.add_argument("--candidates-per-image", type=int, default=40)
    p.add_argument(
        "--groups",
        nargs="+",
        type=int,
        default=[1, 4],
        help="contrast_groups of dense consistency (pool mode: the first)",
    )
    p.add_argument(
        "--mc",
        action="store_true",
        help="also MC dropout (10 passes): exact, exact with another seed, dense",
    )
    p.add_argument("--max-images", type=int, default=None, help="pool mode: cap the images")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON file (default: results/dense/<mode>.json)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else OUT / f"{args.mode}_{args.device}.json"

    def save(report):
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=1, default=str))
        tmp.replace(out)

    args.save = save
    report = {"agreement": run_agreement, "pool": run_pool, "pool-compare": run_pool_compare}[
        args.mode
    ](args)
    save(report)
    print("wrote", out)


if __name__ == "__main__":
    main()
