"""
=================================================
Train and apply an FCRN segmenter on whole images
=================================================

:class:`~kwtl.models.FCRNSegmenter` is the paper's fully convolutional regression network
(FCRN) wrapped as a `skorch <https://skorch.readthedocs.io>`_ / scikit-learn estimator that
works on **images of any size**:

* ``fit(X, y)`` cuts the images and masks into grid patches (``patch_size``, ``stride``) and
  trains on them with the paper's weighted binary cross-entropy;
* ``predict_proba(X)`` returns one full-resolution foreground probability map per image;
* ``predict(X)`` thresholds it, and ``score(X, y)`` is the mean foreground IoU.

This example trains a tiny FCRN on synthetic fluorescence images and looks at its
predictions.
"""

# %%
# Synthetic data
# --------------
# :func:`~kwtl.datasets.make_cells` draws images of one imaging domain together with their
# ground-truth masks. ``"fluorescence"`` imitates BBBC005: bright nuclei on a dark
# background, with per-image focus blur and a few dim nuclei.
import matplotlib.pyplot as plt
import numpy as np

from kwtl.datasets import make_cells
from kwtl.models import FCRNSegmenter

images, masks = make_cells(n_images=8, image_size=64, domain="fluorescence", random_state=0)
train_images, train_masks = images[:6], masks[:6]
test_images, test_masks = images[6:], masks[6:]
print(f"{len(images)} images of shape {images[0].shape}, dtype {images[0].dtype}")

# %%
# A tiny segmenter
# ----------------
# The paper's network has base width 32 (985,665 parameters) and trains on 256 x 256
# patches. Here ``module__width=8`` and 32 x 32 patches on a stride-16 grid keep training to
# a second or two on a CPU (the paper fine-tunes with ``lr=1e-4``; a network
# trained from scratch for a few epochs needs a larger step). ``module__init="default"`` uses PyTorch's weight initialisation
# instead of the authors' N(0, 1) initialisation (which suits their long Reptile
# pre-training, not a short fit from scratch). ``precision="fp32"`` makes the example
# give the same numbers on every CPU; the default ``"auto"`` uses bfloat16 autocast where the
# hardware supports it natively.
segmenter = FCRNSegmenter(
    module__width=8,
    module__init="default",
    patch_size=32,
    stride=16,
    lr=3e-3,
    max_epochs=20,
    batch_size=16,
    precision="fp32",
    random_state=0,
)
segmenter.fit(train_images, train_masks)
print("training loss per epoch:", np.round(segmenter.history[:, "train_loss"], 3))

# %%
# Full-resolution prediction
# --------------------------
# ``predict_proba`` runs the network on whole images (padded to a multiple of 8 and cropped
# back), not on patches, so there are no tiling seams.
proba = segmenter.predict_proba(test_images)
pred = segmenter.predict(test_images)
print(f"mean foreground IoU on the held-out images: {segmenter.score(test_images, test_masks):.3f}")

fig, axes = plt.subplots(len(test_images), 3, figsize=(7.5, 2.6 * len(test_images)))
for row, (image, mask, p) in enumerate(zip(test_images, test_masks, proba)):
    axes[row, 0].imshow(image, cmap="gray")
    axes[row, 1].imshow(mask, cmap="gray")
    axes[row, 2].imshow(p, cmap="magma", vmin=0, vmax=1)
for ax, title in zip(axes[0], ["image", "ground truth", "predict_proba"]):
    ax.set_title(title)
for ax in axes.ravel():
    ax.set_axis_off()
fig.tight_layout()

# %%
# Test-time BatchNorm: ``bn_mode``
# --------------------------------
# The authors evaluated with BatchNorm normalising by the statistics of the *test images
# themselves* (the PyTorch 1.3 semantics of their code, whole test set in one batch). kwtl
# reproduces this by default, ``bn_mode="batch"``: the statistics are pooled over *all*
# images passed to ``predict_proba``, whatever ``max_pixels`` chunking is needed to fit them
# in memory. ``bn_mode="running"`` uses the running averages collected during training
# instead (ordinary eval mode). The two differ, sometimes noticeably: here the statistics
# of whole 64 x 64 test images are not those of the 32 x 32 training patches.
for mode in ("batch", "running"):
    segmenter.set_params(bn_mode=mode)
    print(f"bn_mode={mode!r:10} IoU = {segmenter.score(test_images, test_masks):.3f}")
segmenter.set_params(bn_mode="batch")

# %%
# It is a scikit-learn estimator
# ------------------------------
# ``get_params``/``set_params``/``clone`` work, so the segmenter can be tuned with
# scikit-learn tools or dropped into :class:`~kwtl.FewShotSegmentation`. Predictions are
# thresholded at ``threshold`` (0.5, as in the paper).
from sklearn.base import clone

untrained = clone(segmenter)
print(untrained.get_params()["patch_size"], untrained.get_params()["threshold"])
print("predicted foreground fraction:", [round(float(m.mean()), 3) for m in pred])
