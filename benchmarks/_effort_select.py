"""The arms' selections, computed once on the CPU with the authors' PLFT models.

Per pool image, the per-candidate statistics of the shipped selectors (dense scoring, as
``kwtl select`` scores) are cached; per split, every arm's order over the split's pool is
made with the shipped selectors' public methods (``make_selector(name)``, ``score``,
``scores_from``) and cut into non-overlapping patches by ``kwtl select``'s greedy choice.
Ground truth is read only by the label-reading reference arms and for the record
(drawn foreground pixels and objects).
"""

import os
import tempfile

import numpy as np
from scipy import ndimage

from _effort_plan import (
    ARMS,
    BUDGETS,
    MIN_FOREGROUND,
    PATCH,
    SEEDS,
    SHARED,
    SPLITS,
    STRIDE,
    TARGETS,
    budget_key,
    n_patches,
    runs_of,
)


class Target:
    """Images, masks and the authors' splits of one target dataset (sorted file names, the
    authors' indexing)."""

    def __init__(self, name, data_root=None):
        import json

        from kwtl.datasets import load_benchmark

        bench = load_benchmark(str(data_root or SHARED / "data"), names=[name])
        order = np.argsort(bench.names)
        self.name = name
        self.names = [bench.names[i] for i in order]
        self.images = [bench.images[i] for i in order]
        self.masks = [np.asarray(bench.masks[i]) > 0 for i in order]
        self.splits = json.loads((SHARED / "reference" / "splits.json").read_text())[name]

    def split(self, k):
        if k not in SPLITS:
            raise ValueError("only the authors' splits 0-4 may be run here")
        pool = sorted(int(i) for i in self.splits["unlabelled"][str(k)])
        test = sorted(int(i) for i in self.splits["test"][str(k)])
        return pool, test


class BundleTarget(Target):
    """The same, read from a data bundle (``effort.py pack``) instead of ``../shared``."""

    def __init__(self, bundle, name):
        self.name = name
        self._splits = bundle.plan["splits"][name]
        self.names = sorted({n for s in self._splits.values() for n in s["pool"] + s["test"]})
        self.images = [bundle.image(name, n) for n in self.names]
        self.masks = [bundle.mask(name, n) for n in self.names]

    def split(self, k):
        if k not in SPLITS:
            raise ValueError("only the authors' splits 0-4 may be run here")
        index = {n: i for i, n in enumerate(self.names)}
        s = self._splits[str(k)]
        return sorted(index[n] for n in s["pool"]), sorted(index[n] for n in s["test"])


def image_grid(image):
    from kwtl.datasets import PatchSet

    return PatchSet.from_images([image], PATCH, STRIDE, cover_border=True)


def image_statistics(seg, image, mask):
    """Every statistic the arms need for one image's candidates (shipped selectors, dense)."""
    from kwtl.selection import ObjectRichnessSelector, PredictedForegroundSelector, make_selector
    from kwtl.selection._representative import dense_encoder_features

    grid = image_grid(image)
    stats = {
        "coords": grid.coords[:, 1:],
        "consistency": make_selector("consistency", dense=True).score(grid, seg),
        "fg_fraction": PredictedForegroundSelector(dense=True).score(grid, seg),
        "richness": ObjectRichnessSelector(dense=True).score(grid, seg),
        "features": dense_encoder_features(grid, seg).astype(np.float32),
        "gt_foreground": np.array(
            [mask[r : r + PATCH, c : c + PATCH].sum() for _, r, c in grid.coords]
        ),
    }
    return stats


def cached_statistics(cache, target, idx, seg):
    path = cache / target.name / f"{target.names[idx]}.npz"
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    stats = image_statistics(seg, target.images[idx], target.masks[idx])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    os.close(fd)
    np.savez(tmp, **stats)
    os.replace(tmp, path)
    return stats


def pool_table(cache, target, pool, seg):
    parts = [cached_statistics(cache, target, i, seg) for i in pool]
    table = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    table["image"] = np.concatenate(
        [np.full(len(p["consistency"]), i) for i, p in zip(pool, parts)]
    )
    return table


def arm_order(arm, table, seed, target):
    """The full order of the pool's candidates for one arm and draw (first = first pick)."""
    from kwtl.selection import make_selector

    images = table["image"]
    if arm == "random":
        scores = make_selector("random", random_state=seed).score(_pool(target, table), None)
    elif arm == "spread_random":
        scores = make_selector("spread_random", random_state=seed).score(_pool(target, table), None)
    elif arm == "consistency":
        scores = table["consistency"]
    elif arm == "gt_consistency":
        keep = table["gt_foreground"] >= MIN_FOREGROUND
        scores = np.where(keep, table["consistency"], -np.inf)
    elif arm == "stratified_consistency":
        sel = make_selector("stratified_consistency", random_state=seed)
        scores = sel.scores_from(table["consistency"], table["fg_fraction"], images)
    elif arm == "object_richness":
        scores = make_selector("object_richness").scores_from(table["richness"], images)
    elif arm == "typicality":
        spread = make_selector("typicality", random_state=0)
        inner = spread.selector.set_params(random_state=0)
        scores = spread.scores_from(inner.scores_from(table["features"]), images)
    elif arm == "fg_random":
        return foreground_aware_order(table, target, seed)
    else:
        raise ValueError(arm)
    scores = np.asarray(scores, dtype=np.float64)
    return np.argsort(-np.where(np.isnan(scores), -np.inf, scores), kind="stable")


def _pool(target, table):
    """A PatchSet over the pool's images with the table's candidates (image ids remapped)."""
    from kwtl.datasets import PatchSet

    ids, local = np.unique(table["image"], return_inverse=True)
    coords = np.column_stack([local, table["coords"]])
    return PatchSet([target.images[i] for i in ids], coords, PATCH)


def foreground_aware_order(table, target, seed):
    """nnActive's foreground-aware random (reads labels): each pick is, with probability 1/3
    each, a uniform candidate, the candidate centred nearest a uniformly drawn foreground
    pixel, or nearest a uniformly drawn foreground-boundary pixel of the pool's masks."""
    rng = np.random.default_rng([seed, 7])
    images = table["image"]
    centres = table["coords"] + PATCH / 2.0
    pool_ids = np.unique(images)
    fg_pixels, edge_pixels = [], []
    for i in pool_ids:
        m = target.masks[i]
        edge = m & ~ndimage.binary_erosion(m)
        fg_pixels.append(np.column_stack([np.full(m.sum(), i), np.argwhere(m)]))
        edge_pixels.append(np.column_stack([np.full(edge.sum(), i), np.argwhere(edge)]))
    fg_pixels, edge_pixels = np.concatenate(fg_pixels), np.concatenate(edge_pixels)
    order, seen = [], set()
    for _ in range(40 * 32):
        kind = rng.integers(3)
        source = fg_pixels if kind == 1 else edge_pixels if kind == 2 else None
        if source is None or len(source) == 0:
            k = int(rng.integers(len(images)))
        else:
            i, r, c = source[rng.integers(len(source))]
            mine = np.flatnonzero(images == i)
            k = int(mine[np.argmin(((centres[mine] - (r, c)) ** 2).sum(axis=1))])
        if k not in seen:
            seen.add(k)
            order.append(k)
    rest = [k for k in rng.permutation(len(images)) if k not in seen]
    return np.asarray(order + rest, dtype=np.intp)


def non_overlapping(order, table, budget):
    """``kwtl select``'s greedy non-overlapping choice over the pool's candidates."""
    from kwtl.selection import choose_non_overlapping as _non_overlapping

    coords = np.column_stack([table["image"], table["coords"]])
    return _non_overlapping(order, coords, PATCH, budget)


def drawn_record(target, table, chosen):
    """What drawing the chosen patches costs and holds (ground truth, for the record)."""
    fg, objects = 0, 0
    for k in chosen:
        i, (r, c) = table["image"][k], table["coords"][k]
        window = target.masks[i][r : r + PATCH, c : c + PATCH]
        fg += int(window.sum())
        objects += int(ndimage.label(window, structure=np.ones((3, 3)))[1])
    return {
        "n_patches": len(chosen),
        "annotated_px": len(chosen) * PATCH * PATCH,
        "annotated_fg_px": fg,
        "annotated_objects": objects,
        "images_touched": int(len(set(table["image"][chosen].tolist()))),
    }


def split_selections(cache, target, split, seg, arms):
    """{arm: {seed: {"support": [[name, r, c], ...], "drawn": {budget: record}}}} for the
    largest budget (smaller budgets are prefixes)."""
    pool, _ = target.split(split)
    table = pool_table(cache, target, pool, seg)
    most = n_patches(target.name, max(BUDGETS))
    out = {}
    for arm in arms:
        seeds = SEEDS if ARMS[arm][1] else SEEDS[:1]
        out[arm] = {}
        for seed in seeds:
            chosen = non_overlapping(arm_order(arm, table, seed, target), table, most)
            out[arm][seed] = {
                "support": [
                    [
                        target.names[int(table["image"][k])],
                        int(table["coords"][k][0]),
                        int(table["coords"][k][1]),
                    ]
                    for k in chosen
                ],
                "drawn": {
                    budget_key(b): drawn_record(target, table, chosen[: n_patches(target.name, b)])
                    for b in BUDGETS
                },
            }
    return out


def support_description(out, target, budget=1, seed=0):
    """{arm: (share of patches holding any foreground, share with >= 360 px, mean foreground
    fraction)} of every arm's draw ``seed`` at ``budget`` over splits 0-4, read from the
    committed selections and the ground truth (a description of the picks only)."""
    import json

    index = {n: i for i, n in enumerate(target.names)}
    n = n_patches(target.name, budget)
    stats = {}
    for split in SPLITS:
        plan = json.loads((out / "selections" / f"{target.name}_split{split}.json").read_text())
        for arm, entries in plan.items():
            entry = entries.get(str(seed), entries["0"])
            for name, r, c in entry["support"][:n]:
                window = target.masks[index[name]][r : r + PATCH, c : c + PATCH]
                stats.setdefault(arm, []).append(
                    (window.any(), window.sum() >= MIN_FOREGROUND, window.mean())
                )
    return {arm: tuple(float(np.mean(col)) for col in zip(*v)) for arm, v in stats.items()}


def support_table(out, records, recipe, budget=1, seed=0):
    """Markdown lines: :func:`support_description` of every arm beside the mean mIoU of its
    runs at ``budget`` and draw ``seed`` with ``recipe``, and the test images' predicted
    against true foreground share where the runs recorded it."""
    lines = [
        "| target | arm | patches with foreground | with >= 360 px | foreground | mIoU (runs) "
        "| test foreground predicted / true (runs) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in TARGETS:
        for arm, (any_fg, big, fg) in support_description(out, Target(name), budget, seed).items():
            runs = runs_of(
                records, target=name, arm=arm, budget=budget, seed=seed, round=1, recipe=recipe
            )
            miou = f"{np.mean([r['miou'] for r in runs]):.1f} ({len(runs)})" if runs else "—"
            # recorded since 2026-12-05: whether a poor run over- or under-predicts
            shares = [
                (np.mean(r["per_image_pred_fg"]), np.mean(r["per_image_true_fg"]))
                for r in runs
                if "per_image_pred_fg" in r
            ]
            share = "—"
            if shares:
                pred, true = 100 * np.mean(shares, axis=0)
                share = f"{pred:.1f} / {true:.1f} % ({len(shares)})"
            lines.append(
                f"| {name} | {arm} | {100 * any_fg:.0f} % | {100 * big:.0f} % | "
                f"{100 * fg:.1f} % | {miou} | {share} |"
            )
    return lines
