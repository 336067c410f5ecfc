"""The selectors' score cache: one pass, or image by image, from a cache when allowed."""
import os

import numpy as np
from sklearn.base import clone
from sklearn.utils.validation import check_memory

from ..datasets import PatchSet
from ..utils._fingerprint import model_fingerprint
from ..utils._progress import progress_bar

__all__ = ["score_candidates"]


def _cached_scores(selector, fingerprint, pool, estimator):
    """Selection scores of every candidate; cached by ``fingerprint``, not ``estimator``.

    Scores do not depend on the budget, so one scoring pass serves every shot count.
    """
    return selector._score_pool(pool, estimator)


def score_candidates(selector, pool, estimator, memory=None, progress=None):
    """Scores of every candidate of ``pool`` by ``selector._score_pool``.

    With ``memory`` and a :attr:`~kwtl.selection.BaseSelector.deterministic` selector the
    scores are cached, keyed by the selector's parameters, the model's weights and the pool;
    a :attr:`~kwtl.selection.BaseSelector.separable` selector is then scored (and cached)
    image by image, so an interrupted run keeps the images it scored, and reports its
    ``progress`` by image.
    """
    cache = memory is not None and selector.deterministic  # an unseeded draw is not reused
    if cache:
        fingerprint = None if estimator is None else model_fingerprint(estimator)
        memory = os.fspath(memory) if isinstance(memory, os.PathLike) else memory
        cached = check_memory(memory).cache(_cached_scores, ignore=["estimator"])

        def score_pool(part):
            return cached(clone(selector), fingerprint, part, estimator)  # params, not scores_
    else:
        def score_pool(part):
            return selector._score_pool(part, estimator)

    if not (selector.separable and (cache or progress)):
        return score_pool(pool)
    owners = pool.coords[:, 0]
    images = np.unique(owners)
    scores = np.full(selector._n_candidates(pool), -np.inf)
    bar = progress_bar(progress, len(images), "scoring images", "image")
    try:
        for i in images:
            rows = np.flatnonzero(owners == i)
            coords = np.column_stack([np.zeros(len(rows), np.int64),
                                      pool.coords[rows, 1:]])
            part = score_pool(PatchSet([pool.arrays[i]], coords, pool.patch_size))
            if selector.unit == "patch":
                scores[rows] = part
            else:
                scores[i] = part[0]
            bar.update(1)
    finally:
        bar.close()
    return scores
