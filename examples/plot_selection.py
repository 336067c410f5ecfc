"""
===============================================
Which patches to annotate? Comparing selectors
===============================================

A selector of :mod:`kwtl.selection` ranks the candidate patches of an unlabelled pool:
``score(X, segmenter)`` gives one number per candidate (higher = annotate first) and
``select(X, n, segmenter)`` returns the ``n`` best. All selectors share this interface:

* :class:`~kwtl.selection.ConsistencySelector` — the paper's method: how much the
  prediction changes when the patch is auto-contrasted, brightened or sharpened (binary
  cross-entropy between each augmented prediction and the thresholded clean one);
* :class:`~kwtl.selection.EntropySelector` — mean pixel entropy of one prediction;
* :class:`~kwtl.selection.MCDropoutSelector` — entropy of the mean of several predictions
  with dropout switched on before the last convolution;
* :class:`~kwtl.selection.RandomSelector` — uniform draw without replacement;
* :class:`~kwtl.selection.ForegroundGate` — a label-free wrapper around any of them: only
  the candidates whose *predicted* foreground reaches the pool median are ranked by the
  inner selector, the others come last.

The paper's consistency gains come with a filter its code applies before selecting: every
candidate whose **ground-truth** mask has fewer than 360 foreground pixels is dropped. A lab
has no ground truth for its pool; without the filter, on the real EM benchmarks, the most
"inconsistent" patches are empty background (see the user guide, *Knowing what to label
without labels*). This example puts the paper's consistency and the gated consistency side
by side on an EM-like pool whose foreground is as sparse as the real one (about 5 % of the
pixels, most patches empty), and draws what each chose so that you can check by eye.

``pixel_scores`` returns the per-pixel maps that the scores average, which shows *where* in
a patch a selector sees a problem.
"""

# %%
# A briefly trained segmenter and an unlabelled pool
# --------------------------------------------------
# The segmenter is trained on ssTEM-like mitochondria and asked about FIB-SEM-like ones
# (``"em"``, EPFL/Lucchi-like: elongated mitochondria among dark vesicles and membranes):
# a small domain shift, as between a source and a target dataset. As in the full method
# (:class:`~kwtl.FewShotSegmentation`), the model that scores the pool is first fine-tuned
# on the pool's classical pseudo-labels (the authors' equalise-and-threshold pipeline; it
# marks about half of the pixels as foreground, against about 5 % true).
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle
from scipy.stats import spearmanr

from kwtl.datasets import PatchSet, make_cells, stitch_patches
from kwtl.models import FCRNSegmenter
from kwtl.pseudo_label import PseudoLabeler
from kwtl.selection import (
    ConsistencySelector,
    EntropySelector,
    ForegroundGate,
    MCDropoutSelector,
    RandomSelector,
)

train_images, train_masks = make_cells(6, 64, "sstem", random_state=0)
segmenter = FCRNSegmenter(
    module__width=8,
    module__init="default",
    patch_size=32,
    stride=16,
    lr=3e-3,
    max_epochs=10,
    batch_size=16,
    precision="fp32",
    random_state=0,
)
segmenter.fit(train_images, train_masks)

pool_images, pool_masks = make_cells(2, 112, "em", random_state=1)
pseudo_labels = PseudoLabeler(method="threshold", polarity="dark").fit_transform(pool_images)
print(
    f"pseudo-label foreground: {np.mean([p.mean() for p in pseudo_labels]):.0%}, "
    f"true: {np.mean([m.mean() for m in pool_masks]):.0%}"
)

# %%
# The candidates are the grid patches of the pool, with the segmenter's ``patch_size`` and
# ``stride``. A :class:`~kwtl.datasets.PatchSet` is lazy: it stores the images and each
# patch's ``(image, row, col)``, and cuts patches on demand. Passing the list of images to a
# selector builds the same PatchSet internally.
#
# The masks are **not** given to any selector; they are used below only to check the
# choices, with the authors' filter scaled to the patch area (360 px of 256² → 6 px of 32²).
pool = PatchSet.from_images(pool_images, segmenter.patch_size, segmenter.stride)
true_pixels = np.array([m.sum() for _, m in pool.with_arrays(pool_masks).iter_batches(1)])
min_foreground = 360 * (pool.patch_size[0] / 256) ** 2
print(pool)
print(f"{np.mean(true_pixels < min_foreground):.0%} of the candidates hold no foreground")
segmenter.partial_fit(pool, pool.with_arrays(pseudo_labels), epochs=3)  # PLFT

# %%
# Scores
# ------
# Each selector scores every candidate. The network-based selectors stream the pool
# through the segmenter in chunks (``batch_size``), so memory does not grow with the pool.
selectors = {
    "consistency": ConsistencySelector(magnitude=1.3),
    "gated consistency": ForegroundGate(ConsistencySelector(magnitude=1.3)),
    "entropy": EntropySelector(),
    "mc_dropout": MCDropoutSelector(n_passes=5, random_state=0),
    "random": RandomSelector(random_state=0),
}
n_select = 6
scores, chosen = {}, {}
for name, selector in selectors.items():
    chosen[name] = selector.select(pool, n_select, segmenter)
    scores[name] = selector.scores_  # select() keeps the scores of all candidates
    holding = np.mean(true_pixels[chosen[name]] >= min_foreground)
    print(f"{name:18} top {n_select}: {chosen[name].tolist()}, {holding:.0%} hold foreground")

# %%
# The network-based scores are related (uncertain patches tend to be inconsistent too) but
# do not agree on the ranking; random scores are unrelated to all of them. The last column
# is the correlation with the true foreground of each candidate (computed from the masks,
# for this check only): the paper's scores on real EM correlate *negatively* with it.
names = [n for n in selectors if n != "gated consistency"]
print(" " * 12 + "".join(f"{n:>12}" for n in names) + f"{'true fg':>12}")
for a in names:
    print(
        f"{a:12}"
        + "".join(f"{spearmanr(scores[a], scores[b])[0]:12.2f}" for b in names)
        + f"{spearmanr(scores[a], true_pixels)[0]:12.2f}"
    )

# %%
# The paper's consistency and the gated consistency, side by side
# ----------------------------------------------------------------
# Left: each pool image with the true outline of its mitochondria (yellow) and three
# choices: the paper's consistency (red), the gated consistency (cyan) and random (white),
# kwtl's default selector (:data:`~kwtl.selection.DEFAULT_SELECTOR`). Middle: the
# consistency score of every candidate painted onto its pixels (averaged where patches
# overlap) with the ``n_select`` patches the paper's consistency chose (red). Right: the
# predicted foreground fraction that the gate measures (no label read), with the patches
# the gated consistency chose (cyan). A box on the left is a patch a person would be asked
# to annotate: count how many of them contain a mitochondrion. The printed shares above
# say the same in numbers. The gate can only help where the model's predicted foreground
# (right) follows the true one (left, yellow); a model fine-tuned on pseudo-labels that
# mark half the pixels may not, and then the gate keeps the wrong half. On a pool this
# small the shares vary from seed to seed; the measured
# comparison on the real benchmarks, with random as a distribution over seeds, is in the
# user guide.
gate = selectors["gated consistency"]
ph, pw = pool.patch_size
shapes = [im.shape for im in pool_images]


def paint(values, i):
    """Each candidate's value painted onto its pixels of pool image ``i``."""
    return stitch_patches(
        np.ones((len(pool), ph, pw)) * values[:, None, None], pool.coords, shapes
    )[i]


def boxes(ax, picks, i, colour):
    for k in picks:
        img, r, c = pool.coords[k]
        if img == i:
            ax.add_patch(
                Rectangle((c - 0.5, r - 0.5), pw, ph, fill=False, edgecolor=colour, linewidth=1.8)
            )


fig, axes = plt.subplots(len(pool_images), 3, figsize=(11, 3.6 * len(pool_images)))
for i, image in enumerate(pool_images):
    axes[i, 0].imshow(image, cmap="gray")
    axes[i, 0].contour(pool_masks[i], levels=[0.5], colors="yellow", linewidths=0.8)
    boxes(axes[i, 0], chosen["consistency"], i, "red")
    boxes(axes[i, 0], chosen["gated consistency"], i, "cyan")
    boxes(axes[i, 0], chosen["random"], i, "white")  # kwtl's default selector
    axes[i, 0].set_title(
        f"pool image {i}: truth; consistency (red), gated (cyan), random = default (white)",
        fontsize=8,
    )
    im = axes[i, 1].imshow(paint(scores["consistency"], i), cmap="viridis")
    fig.colorbar(im, ax=axes[i, 1], fraction=0.046, label="consistency score")
    boxes(axes[i, 1], chosen["consistency"], i, "red")
    axes[i, 1].set_title("paper's consistency (red)", fontsize=9)
    im = axes[i, 2].imshow(
        paint(gate.foreground_, i), cmap="magma", vmin=0, vmax=gate.foreground_.max()
    )
    fig.colorbar(im, ax=axes[i, 2], fraction=0.046, label="predicted foreground fraction")
    boxes(axes[i, 2], chosen["gated consistency"], i, "cyan")
    axes[i, 2].set_title("gated consistency (cyan)", fontsize=9)
for ax in axes.ravel():
    ax.set_axis_off()
fig.tight_layout()

# %%
# Per-pixel score maps
# --------------------
# ``pixel_scores(X, segmenter, indices)`` returns the maps behind the scores of the chosen
# patches (a patch's score is the mean of its map). The consistency map lights up where
# the augmented predictions disagree with the clean one, typically at object borders and
# at dim or touching nuclei; the entropy maps where the prediction is close to 0.5.
# :class:`~kwtl.selection.RandomSelector` has no pixel maps: it never looks at the pixels.
# (For :class:`~kwtl.selection.MCDropoutSelector` the maps are a fresh Monte-Carlo draw on a
# different chunking of the pool, so their means differ a little from the scores that
# ranked the patches.)
network_selectors = ["consistency", "entropy", "mc_dropout"]  # the PixelSelectors
fig, axes = plt.subplots(len(network_selectors), 2 * 2, figsize=(9, 7))
for row, name in enumerate(network_selectors):
    top = chosen[name][:2]
    maps = selectors[name].pixel_scores(pool, segmenter, indices=top)
    for col, (k, heat) in enumerate(zip(top, maps)):
        axes[row, 2 * col].imshow(pool[k], cmap="gray")
        axes[row, 2 * col].set_title(f"{name}: candidate {k}", fontsize=8)
        im = axes[row, 2 * col + 1].imshow(heat, cmap="inferno")
        fig.colorbar(im, ax=axes[row, 2 * col + 1], fraction=0.046)
        axes[row, 2 * col + 1].set_title(f"pixel scores (mean {heat.mean():.3f})", fontsize=8)
for ax in axes.ravel():
    ax.set_axis_off()
fig.tight_layout()

# %%
# Image-level selection
# ---------------------
# With ``unit="image"`` a candidate is a whole pool image, scored by aggregating the scores
# of its patches (``reduction``): one shot is then one fully annotated image.
print("image scores:", ConsistencySelector(unit="image").score(pool, segmenter).round(3))
print(
    "gated image choice:",
    ForegroundGate(ConsistencySelector(), unit="image").select(pool, 1, segmenter),
)
