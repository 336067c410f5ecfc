"""
=========================================
From a folder of images to masks (Python)
=========================================

The lab workflow as a script: :func:`kwtl.workflow.pretrain` a model on annotated folders,
:func:`~kwtl.workflow.select` what to annotate in a folder of new images (an annotation
package for the expert), :func:`~kwtl.workflow.finetune` on the expert's masks, and
:func:`~kwtl.workflow.predict` masks for the whole folder. The same four steps are the
commands ``kwtl pretrain``, ``kwtl select``, ``kwtl finetune`` and ``kwtl predict``
(:ref:`cli-workflow`). Here the "expert" copies the masks from the synthetic ground truth.
"""

# %%
# The folders
# -----------
# Two annotated source folders (``images/`` + ``masks/``) of synthetic fluorescence and
# histology images, and a folder of new, unlabelled images of dense fluorescent nuclei
# whose masks the expert will draw later.
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from kwtl.datasets import make_cells, write_image, write_mask
from kwtl.workflow import evaluate, finetune, predict, pretrain, read_selection, select

root = Path(tempfile.mkdtemp())
for seed, domain in enumerate(("fluorescence", "histology")):
    source_images, source_masks = make_cells(4, 64, domain, random_state=seed)
    for i, (image, mask) in enumerate(zip(source_images, source_masks)):
        write_image(root / domain / "images" / f"cells{i}.png", image)
        write_mask(root / domain / "masks" / f"cells{i}.png", mask)
new_images, hidden_truth = make_cells(4, 96, "fluorescence_dense", random_state=2)
for i, image in enumerate(new_images):
    write_image(root / "new" / f"nuclei{i}.png", image)

# %%
# 1. Pre-train
# ------------
# A tiny network and a few Reptile steps, one task per folder (the paper's defaults are
# width 32, 256² patches, 300 meta-iterations; or start from the authors' weights,
# ``start="authors:EM"``). ``segmenter_params`` sets the learning rate of the later
# fine-tuning (a tiny network learns faster than the paper's 1e-4).
pretrain(
    [root / "fluorescence", root / "histology"],
    root / "model.kwtl",
    width=8,
    patch_size=32,
    stride=16,
    meta_iterations=20,
    inner_steps=5,
    segmenter_params={"lr": 1e-3, "module__init": "default", "precision": "fp32"},
    progress=False,
)

# %%
# 2. Select what to annotate
# --------------------------
# Pseudo-label fine-tuning on the new folder, then the default selector scores every 32²
# candidate; six non-overlapping ones are exported with ``selection.csv``, a contact sheet
# of all of them, an overview picture per image that holds one, and a README for the
# annotator that says what the selector did.
result = select(
    root / "new", root / "model.kwtl", budget=6, out=root / "todo", pl_epochs=5, progress=False
)
print(result.table[["image_file", "mask_file", "source_image", "row", "col", "score"]])
print(sorted(p.name for p in (root / "todo").iterdir()))

fig, axes = plt.subplots(1, 4, figsize=(10, 2.8))
for ax, name in zip(axes, sorted(result.table["source_image"].unique())[:4]):
    ax.imshow(Image.open(root / "todo" / "overview" / f"{name}.png"))
    ax.set_title(f"overview/{name}.png")
    ax.axis("off")
fig.suptitle("What to annotate: the chosen patches, numbered by rank")
fig.tight_layout()

fig, ax = plt.subplots(figsize=(10, 3))
ax.imshow(Image.open(root / "todo" / "contact_sheet.png"))
ax.set_title("contact_sheet.png: every chosen patch, by rank")
ax.axis("off")

# %%
# 3. The annotator draws the masks; fine-tune
# -------------------------------------------
# Every row of ``selection.csv`` names the file to annotate and where its mask goes. Here
# the "annotator" cuts the masks out of the hidden ground truth.
truth = {f"nuclei{i}": m for i, m in enumerate(hidden_truth)}
table = read_selection(root / "todo")
for row in table.itertuples():
    mask = truth[row.source_image][row.row : row.row + row.size, row.col : row.col + row.size]
    write_mask(root / "todo" / row.mask_file, mask)

finetune(root / "todo", root / "tuned.kwtl", epochs=30, batch_size=6, progress=False)

# %%
# 4. Masks for the whole folder
# -----------------------------
# Instance labels (one value per cell, touching cells split by a watershed) in ``masks/``,
# an overlay per image in ``overlays/``, same names as the images.
predict(root / "new", root / "tuned.kwtl", root / "predicted", instances=True, progress=False)

fig, axes = plt.subplots(2, 4, figsize=(10, 5.2))
for i in range(4):
    labels = np.asarray(Image.open(root / "predicted" / "masks" / f"nuclei{i}.png"))
    axes[0, i].imshow(new_images[i], cmap="gray")
    axes[0, i].set_title(f"nuclei{i}.png")
    axes[1, i].imshow(labels, cmap="nipy_spectral", interpolation="nearest")
    axes[1, i].set_title(f"{labels.max()} objects")
for ax in axes.ravel():
    ax.axis("off")
fig.suptitle("Predicted instance labels (masks/)")
fig.tight_layout()

# %%
# 5. How good is it?
# ------------------
# A lab labels a few images of its own and compares: IoU per image and the mean, and with
# ``instances=True`` the cells matched one to one (``kwtl evaluate`` on the command line).
for i in range(3):
    write_mask(root / "my_truth" / f"nuclei{i}.png", hidden_truth[i])
scores = evaluate(root / "predicted", root / "my_truth", instances=True)
print(scores.table.round(3))
plt.show()
