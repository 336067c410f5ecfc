"""The data, per-candidate statistics and arms of ``label_free.py``. Not part of kwtl."""

import json
import os
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
if not SHARED.exists():
    SHARED = Path("/work/shared")

PROFILES = {
    "cheap": {
        "patch_size": 128,
        "stride": 128,
        "patches_per_shot": 8,
        "epochs": 20,
        "batch_size": 4,
        "pool_images": {"EM": 8},
        "test_images": {"EM": 6},
        "test_crop": 0.5,
        "min_foreground": 90,  # 360 px scaled to 128² patches
        "n_clusters": 8,
        "max_per_image": 1,
    },
    # the paper's patch size and full-size test images, a coarser candidate grid and a small
    # support set: scoring stays exact per patch and one run takes about a minute
    "mid": {
        "patch_size": 256,
        "stride": 128,
        "patches_per_shot": 16,
        "epochs": 20,
        "batch_size": 8,
        "pool_images": {"EM": 24},
        "test_images": {"EM": 11},
        "test_crop": None,
        "min_foreground": 360,
        "n_clusters": 16,
        "max_per_image": 1,
    },
    # the paper's sizes. At stride 30 exact per-patch scoring would cost ~40x a whole-image
    # pass (676 overlapping 256² patches per ssTEM image), so the statistics are dense: whole
    # images through the library's dense selectors, read off per candidate by box sums.
    # Encoder features per patch are skipped (hours on a CPU): no representative arms here.
    "paper": {
        "patch_size": 256,
        "stride": 30,
        "patches_per_shot": {"ssTEM": 500, "EM": 400},
        "epochs": 20,
        "batch_size": 64,
        "pool_images": {},
        "test_images": {},
        "test_crop": None,
        "min_foreground": 360,
        "n_clusters": None,
        "max_per_image": None,
        "dense": True,
        "features": False,
    },
}
for _name, _profile in PROFILES.items():
    _profile["name"] = _name
SEEDS = (0, 1, 2, 3, 4)


def per_target(value, target):
    return value.get(target) if isinstance(value, dict) else value


def atomic_write_json(path, obj):
    """Write ``obj`` as JSON atomically (kwtl's own atomic writer), making the folder."""
    from kwtl.utils._atomic import atomic_write_text

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(obj))


def evenly_spaced(items, k):
    """``k`` items at evenly spaced positions (no randomness, no label read)."""
    items = list(items)
    if k is None or k >= len(items):
        return items
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, k).round().astype(int)]


def centre_crop(image, frac):
    if frac is None:
        return image
    h, w = image.shape
    ch, cw = (int(h * frac) // 8) * 8, (int(w * frac) // 8) * 8
    r, c = (h - ch) // 2, (w - cw) // 2
    return image[r : r + ch, c : c + cw]


def plft_model(target_name, profile, device="cpu"):
    """The authors' PLFT model of ``target_name`` (fp32), at the profile's patch size."""
    from kwtl.models import load_pretrained

    return load_pretrained(
        f"authors:{target_name}",
        source=SHARED / "weights",
        precision="fp32",
        device=device,
        patch_size=profile["patch_size"],
        stride=profile["stride"],
    )


class Target:
    """Images, masks and the authors' splits of one target dataset."""

    def __init__(self, name):
        from kwtl.datasets import load_benchmark

        bench = load_benchmark(str(SHARED / "data"), names=[name])
        order = np.argsort(bench.names)  # the authors index the sorted file list
        self.name = name
        self.names = [bench.names[i] for i in order]
        self.images = [bench.images[i] for i in order]
        self.masks = [np.asarray(bench.masks[i]) > 0 for i in order]
        self.splits = json.loads((SHARED / "reference" / "splits.json").read_text())[name]

    def split(self, k, profile):
        if not 0 <= k <= 4:
            raise ValueError("only the authors' splits 0-4 may be run here")
        pool = sorted(int(i) for i in self.splits["unlabelled"][str(k)])
        test = sorted(int(i) for i in self.splits["test"][str(k)])
        pool = evenly_spaced(pool, per_target(profile["pool_images"], self.name))
        test = evenly_spaced(test, per_target(profile["test_images"], self.name))
        return pool, test


def image_statistics(segmenter, image, mask, profile, magnitude=1.3):
    """Per-candidate statistics of one image's patch grid, computed by the shipped selectors
    (:meth:`~kwtl.selection.BaseSelector.score`): exactly per patch, or from whole-image
    passes (``dense=True``) when the profile says ``dense`` — a stride-30 grid then costs a
    few passes per image instead of one per patch. Encoder features (those of
    :class:`~kwtl.selection.RepresentativeSelector`) only if the profile asks for them
    (``features``), else an empty column."""
    from kwtl.datasets import PatchSet
    from kwtl.selection import PredictedForegroundSelector, make_selector

    dense = bool(profile.get("dense", False))
    pool = PatchSet.from_images([image], profile["patch_size"], profile["stride"])
    stats = {
        "consistency": make_selector("consistency", magnitude=magnitude, dense=dense),
        "fg_fraction": PredictedForegroundSelector(dense=dense),
        "mean_proba": PredictedForegroundSelector(measure="mean_proba", dense=dense),
        "entropy": make_selector("entropy", dense=dense),
    }
    stats = {
        k: np.asarray(sel.score(pool, segmenter), dtype=np.float64) for k, sel in stats.items()
    }
    if profile.get("features", True):
        stats["features"] = np.concatenate(
            [segmenter.encoder_features(batch) for _, batch in pool.iter_batches(16)]
        ).astype(np.float32)
    else:
        stats["features"] = np.zeros((len(pool), 0), dtype=np.float32)
    return {**stats, **candidate_truth(pool, mask)}


def candidate_truth(pool, mask):
    """Ground-truth foreground pixels of each candidate (read only by the label-reading arms
    and the descriptions) and its (row, col)."""
    ph, pw = pool.patch_size
    coords = pool.coords
    gt = np.array([mask[r : r + ph, c : c + pw].sum() for _, r, c in coords])
    return {"gt_foreground": gt, "coords": coords[:, 1:]}


def load_stats(out, target, idx, segmenter, profile):
    path = out / "cache" / profile["name"] / f"{target.name}_{idx:03d}.npz"
    if path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    stats = image_statistics(segmenter, target.images[idx], target.masks[idx], profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    os.close(fd)
    np.savez(tmp, **stats)
    os.replace(tmp, path)
    return stats


def pool_table(out, target, pool, segmenter, profile):
    parts = [load_stats(out, target, i, segmenter, profile) for i in pool]
    table = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    table["image"] = np.concatenate(
        [np.full(len(p["consistency"]), i) for i, p in zip(pool, parts)]
    )
    return table


# ---------------------------------------------------------------- arms
# name -> (reads_labels, stochastic, description)
ARMS = {
    "plft": (False, False, "no support fine-tuning: the authors' PLFT model alone (reference)"),
    "random": (False, True, "uniform over all candidates"),
    "gate_random": (
        False,
        True,
        "uniform inside the label-free gate (predicted fg >= pool median)",
    ),
    "consistency": (False, False, "the paper's consistency, top-n, no filter"),
    "gate_consistency": (False, False, "consistency top-n inside the label-free gate"),
    "stratified_consistency": (
        False,
        True,
        "3 predicted-fg strata, sampling ∝ consistency^1, <= max_per_image per image first",
    ),
    "gate_stratified_random": (
        False,
        True,
        "retired (not a shipped selector): inside the "
        "gate, 3 fg strata, uniform, <= max_per_image per image first",
    ),
    "representative": (False, False, "k-means on encoder features, nearest each centre"),
    "gate_representative": (False, False, "k-means representatives inside the gate"),
    "gt_consistency": (True, False, "the paper's protocol: consistency after the GT filter"),
    "gt_random": (True, True, "uniform after the GT filter (label-reading reference)"),
}


def arm_scores(arm, table, seed, profile):
    """Scores over the pool's candidates for one arm (higher = annotate first).

    Every label-free arm is the shipped selector of that name
    (:func:`kwtl.selection.make_selector`), fed the cached per-candidate statistics through
    its public methods (``score`` on the pool's candidates for the draws, which read no
    pixel, and ``scores_from`` for the compositions), so what is measured is what
    ``kwtl select`` and ``FewShotSegmentation`` run.
    """
    from kwtl.datasets import PatchSet
    from kwtl.selection import SELECTORS, make_selector
    from kwtl.selection._gate import gate_mask

    n = len(table["consistency"])
    fg = table["fg_fraction"]
    cons = table["consistency"]
    # the candidates' positions; the draws read no pixel, so the images are zero-memory
    # stand-ins of a size that holds every candidate
    size = profile["patch_size"]
    extent = np.broadcast_to(np.uint8(0), tuple(table["coords"].max(axis=0) + size))
    pool = PatchSet(
        [extent] * (int(table["image"].max()) + 1),
        np.column_stack([table["image"], table["coords"]]),
        size,
    )
    if arm in ("gt_consistency", "gt_random"):  # label-reading references, not shipped
        keep = table["gt_foreground"] >= profile["min_foreground"]
        inner = cons if arm == "gt_consistency" else arm_scores("random", table, seed, profile)
        return np.where(keep, inner, -np.inf)
    if arm not in SELECTORS:
        raise ValueError(
            f"arm {arm!r} is not a shipped selector (kwtl.selection.SELECTORS); "
            "it is kept only to read old results"
        )
    if arm in ("representative", "gate_representative") and table["features"].shape[1] == 0:
        raise ValueError(
            f"the {profile['name']!r} profile computes no encoder features; "
            f"the {arm} arm needs them"
        )
    selector = make_selector(
        arm,
        random_state=seed,
        magnitude=1.3,
        n_clusters=profile["n_clusters"],
        max_per_image=profile["max_per_image"],
    )
    if arm == "random":
        return selector.score(pool, None)
    if arm == "consistency":
        return cons
    if arm == "representative":
        return selector.scores_from(table["features"])
    if arm == "stratified_consistency":
        return selector.scores_from(cons, fg, table["image"])
    # a foreground gate around an inner selector: the inner one ranks the gated candidates
    keep = gate_mask(fg, selector.quantile, selector.threshold)
    inner_selector = selector.inner_selector()
    inner = np.full(n, np.nan)
    if arm == "gate_consistency":
        inner[keep] = cons[keep]
    elif arm == "gate_random":
        inner[keep] = inner_selector.score(pool.subset(np.flatnonzero(keep)), None)
    elif arm == "gate_representative":
        inner[keep] = inner_selector.scores_from(table["features"][keep])
    else:
        raise ValueError(f"no statistics for the arm {arm!r}")
    return selector.scores_from(inner, fg)
