"""
==========================================================
The paper's protocol with GridSearchCV: selectors x shots
==========================================================

:class:`~kwtl.FewShotSegmentation` runs the whole method for one target dataset (source
pre-training, pseudo-label fine-tuning, selection, annotation of the selected patches,
fine-tuning). :class:`~kwtl.model_selection.LeaveOneDatasetOut` turns a benchmark into the
paper's evaluation protocol: each dataset in turn is the target, the others are the
sources, and the target images are split into an unlabelled pool (80 %) and a test set
(20 %), several times. Together with scikit-learn's
``GridSearchCV`` this gives the paper's table, mIoU per
selector and number of shots, in a few lines.

Everything here is tiny (three synthetic domains of six 64 x 64 images, a width-8 network,
a handful of iterations) so that it runs in seconds; the numbers say nothing about the
method. ``kwtl run`` (see :doc:`/cli`) runs the same protocol at useful sizes.
"""

# %%
# Data: one array, two roles per image
# ------------------------------------
# :func:`~kwtl.model_selection.benchmark_to_Xy` packs a benchmark following skada's
# ``sample_domain`` convention: every image appears once as a *source* copy (label ``+id``)
# and once as a *target* copy (label ``-id``). The copies are references to the same arrays,
# so nothing is duplicated in memory.
import tempfile

import joblib
import matplotlib.pyplot as plt
import numpy as np
import sklearn
from sklearn.model_selection import GridSearchCV

from kwtl import FewShotSegmentation
from kwtl.datasets import make_synthetic_benchmark
from kwtl.model_selection import LeaveOneDatasetOut, benchmark_to_Xy
from kwtl.models import FCRNSegmenter
from kwtl.selection import ConsistencySelector, EntropySelector, RandomSelector

benchmark = make_synthetic_benchmark(
    n_images=6, image_size=64, domains=["fluorescence", "histology", "em"], random_state=0
)
X, y, sample_domain = benchmark_to_Xy(benchmark)
print("datasets:", benchmark.datasets)
print("sample_domain:", sample_domain)
print("same array in both roles:", X[0] is X[len(X) // 2])

# %%
# Metadata routing
# ----------------
# ``sample_domain`` is not a feature: it is *metadata* that GridSearchCV must pass to the
# splitter (to build the folds), to ``fit`` (sources vs target) and to ``score``.
# scikit-learn does this with metadata routing: switch it on, and tell the estimator that
# its ``fit`` and ``score`` want ``sample_domain``. The splitter requests it by itself.
sklearn.set_config(enable_metadata_routing=True)

# %%
# The method and the grid
# -----------------------
# ``memory`` caches source pre-training and pseudo-label fine-tuning, which do not depend on
# the selector or the number of shots: for each split they run once and every grid point
# reuses them (here from a temporary folder; use a permanent one to reuse across runs).
#
# The selectors score patches with BatchNorm in eval mode, i.e. with the running statistics
# gathered during pseudo-label fine-tuning (as the authors do). Those need a few dozen
# optimizer steps to settle: with a pool this small, the default ``pl_batch_size=128`` would
# make every PLFT epoch a single step, hence ``pl_batch_size=16`` here.
cache = tempfile.TemporaryDirectory()
method = (
    FewShotSegmentation(
        FCRNSegmenter(
            module__width=8,
            module__init="default",
            patch_size=32,
            stride=16,
            lr=1e-3,
            batch_size=16,
            meta_iterations=10,
            inner_steps=5,
            precision="fp32",
        ),
        patches_per_shot=4,
        pl_epochs=5,
        pl_batch_size=16,
        finetune_epochs=10,
        memory=joblib.Memory(cache.name, verbose=0),
        random_state=0,
    )
    .set_fit_request(sample_domain=True)
    .set_score_request(sample_domain=True)
)

param_grid = {
    "selector": [ConsistencySelector(), EntropySelector(), RandomSelector()],
    "n_shots": [1, 3],
}
# the paper tests on 20 % of each target; with 6 images per domain, 1/3 gives 2 test images
cv = LeaveOneDatasetOut(n_repeats=2, test_size=0.34, random_state=0)
print(cv.get_n_splits(sample_domain=sample_domain), "splits")

# %%
# ``refit=False``: after cross-validation GridSearchCV would normally refit the best
# parameters on *all* the data, which here would mean several target datasets at once; a
# few-shot adaptation is always to one target, so there is nothing sensible to refit.
grid = GridSearchCV(method, param_grid, cv=cv, refit=False)
grid.fit(X, y, sample_domain=sample_domain)
cache.cleanup()

# %%
# From ``cv_results_`` to a per-target table
# ------------------------------------------
# ``mean_test_score`` averages over *all* splits, i.e. over targets too. The paper reports
# one table per target, so split the scores back: ``cv.split_targets(sample_domain)`` gives
# the ``(target id, repeat)`` of every split, in the order of the ``split<k>_test_score``
# columns. Target id ``k + 1`` is dataset ``benchmark.datasets[k]``.
results = grid.cv_results_
split_scores = np.column_stack(
    [results[f"split{k}_test_score"] for k in range(grid.n_splits_)]
)  # (n_params, n_splits)
split_target = np.array([t for t, _ in cv.split_targets(sample_domain)])
targets = sorted(set(split_target.tolist()))
names = {t: benchmark.datasets[t - 1] for t in targets}

labels = [
    f"{type(p['selector']).__name__.replace('Selector', ''):12} {p['n_shots']}-shot"
    for p in results["params"]
]
print(f"{'mIoU (%)':20}" + "".join(f"{names[t]:>20}" for t in targets))
for i, label in enumerate(labels):
    cells = []
    for t in targets:
        s = 100 * split_scores[i, split_target == t]
        cells.append(f"{s.mean():12.1f} ± {s.std():4.1f}")
    print(f"{label:20}" + "".join(f"{c:>20}" for c in cells))

# %%
# The same, as the paper's mIoU-versus-shots plot.
fig, axes = plt.subplots(1, len(targets), figsize=(4 * len(targets), 3.2), sharey=True)
for ax, t in zip(axes, targets):
    for selector in param_grid["selector"]:
        rows = [i for i, p in enumerate(results["params"]) if p["selector"] is selector]
        shots = [results["params"][i]["n_shots"] for i in rows]
        mean = [100 * split_scores[i, split_target == t].mean() for i in rows]
        ax.plot(shots, mean, marker="o", label=type(selector).__name__)
    ax.set_title(f"target: {names[t]}")
    ax.set_xlabel("shots")
    ax.set_xticks(param_grid["n_shots"])
axes[0].set_ylabel("mIoU (%)")
axes[0].legend(fontsize=8)
fig.tight_layout()

# %%
# Routing is a global setting; switch it off again if the rest of your program does not use
# it.
sklearn.set_config(enable_metadata_routing=False)
