"""
===============================================
Which patches to annotate? Comparing selectors
===============================================

A selector of :mod:`kwtl.selection` ranks the candidate patches of an unlabelled pool:
``score(X, segmenter)`` gives one number per candidate (higher = annotate first) and
``select(X, n, segmenter)`` returns the ``n`` best. Four selectors share this interface:

* :class:`~kwtl.selection.ConsistencySelector` — the paper's method: how much the
  prediction changes when the patch is auto-contrasted, brightened or sharpened (binary
  cross-entropy between each augmented prediction and the thresholded clean one);
* :class:`~kwtl.selection.EntropySelector` — mean pixel entropy of one prediction;
* :class:`~kwtl.selection.MCDropoutSelector` — entropy of the mean of several predictions
  with dropout switched on before the last convolution;
* :class:`~kwtl.selection.RandomSelector` — uniform draw without replacement.

``pixel_scores`` returns the per-pixel maps that the scores average, which shows *where* in
a patch a selector sees a problem.
"""

# %%
# A briefly trained segmenter and an unlabelled pool
# --------------------------------------------------
# The segmenter is trained on sparse fluorescence nuclei (BBBC005-like) and asked about
# crowded, unevenly lit nuclei (``"fluorescence_dense"``, BBBC039-like): a small domain
# shift, as between a source and a target dataset. In the full method the scoring model is
# the pseudo-label fine-tuned one (see :class:`~kwtl.FewShotSegmentation`).
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle
from scipy.stats import spearmanr

from kwtl.datasets import PatchSet, make_cells, stitch_patches
from kwtl.models import FCRNSegmenter
from kwtl.selection import (ConsistencySelector, EntropySelector, MCDropoutSelector,
                            RandomSelector)

train_images, train_masks = make_cells(6, 64, "fluorescence", random_state=0)
segmenter = FCRNSegmenter(module__width=8, module__init="default", patch_size=32, stride=16,
                          lr=3e-3, max_epochs=10, batch_size=16, precision="fp32",
                          random_state=0)
segmenter.fit(train_images, train_masks)

pool_images, _ = make_cells(2, 96, "fluorescence_dense", random_state=1)

# %%
# The candidates are the grid patches of the pool, with the segmenter's ``patch_size`` and
# ``stride``. A :class:`~kwtl.datasets.PatchSet` is lazy: it stores the images and each
# patch's ``(image, row, col)``, and cuts patches on demand. Passing the list of images to a
# selector builds the same PatchSet internally.
pool = PatchSet.from_images(pool_images, segmenter.patch_size, segmenter.stride)
print(pool)

# %%
# Scores
# ------
# Each selector scores every candidate. The three network-based selectors stream the pool
# through the segmenter in chunks (``batch_size``), so memory does not grow with the pool.
selectors = {
    "consistency": ConsistencySelector(magnitude=1.3),
    "entropy": EntropySelector(),
    "mc_dropout": MCDropoutSelector(n_passes=5, random_state=0),
    "random": RandomSelector(random_state=0),
}
n_select = 4
scores, chosen = {}, {}
for name, selector in selectors.items():
    chosen[name] = selector.select(pool, n_select, segmenter)
    scores[name] = selector.scores_  # select() keeps the scores of all candidates
    print(f"{name:12} top {n_select} candidates: {chosen[name].tolist()}")

# %%
# The network-based scores are related (uncertain patches tend to be inconsistent too) but
# do not agree on the ranking; random scores are unrelated to all of them.
names = list(selectors)
print(" " * 12 + "".join(f"{n:>12}" for n in names))
for a in names:
    print(f"{a:12}" + "".join(f"{spearmanr(scores[a], scores[b])[0]:12.2f}" for b in names))

# %%
# Where the selected patches are
# ------------------------------
# Painting each candidate's score onto its pixels (averaging where patches overlap) gives a
# coarse map of what each selector would have annotated; the boxes are the ``n_select``
# selected patches.
ph, pw = pool.patch_size
fig, axes = plt.subplots(len(pool_images), len(names) + 1, figsize=(12, 5))
for i, image in enumerate(pool_images):
    axes[i, 0].imshow(image, cmap="gray")
    axes[i, 0].set_title(f"pool image {i}", fontsize=9)
    for j, name in enumerate(names, start=1):
        ones = np.ones((len(pool), ph, pw))
        heat = stitch_patches(ones * scores[name][:, None, None], pool.coords,
                              [im.shape for im in pool_images])[i]
        axes[i, j].imshow(heat, cmap="viridis")
        for k in chosen[name]:
            img, r, c = pool.coords[k]
            if img == i:
                axes[i, j].add_patch(Rectangle((c - 0.5, r - 0.5), pw, ph, fill=False,
                                               edgecolor="red", linewidth=1.5))
        axes[i, j].set_title(name, fontsize=9)
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
network_selectors = ["consistency", "entropy", "mc_dropout"]
fig, axes = plt.subplots(len(network_selectors), 2 * 2, figsize=(9, 7))
for row, name in enumerate(network_selectors):
    top = chosen[name][:2]
    maps = selectors[name].pixel_scores(pool, segmenter, indices=top)
    for col, (k, heat) in enumerate(zip(top, maps)):
        axes[row, 2 * col].imshow(pool[k], cmap="gray")
        axes[row, 2 * col].set_title(f"{name}: candidate {k}", fontsize=8)
        axes[row, 2 * col + 1].imshow(heat, cmap="inferno")
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
