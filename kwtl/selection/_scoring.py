"""The selectors' score cache: one pass, or image by image, from a cache when allowed."""

import os
from pathlib import Path

import numpy as np
from sklearn.base import clone

from ..datasets import PatchSet
from ..utils._atomic import atomic_write
from ..utils._fingerprint import model_fingerprint
from ..utils._progress import progress_bar

__all__ = ["score_candidates", "score_part"]

#: Sub-folder of a cache location that holds the selectors' scores.
CACHE_FOLDER = "kwtl_scores"


def score_part(selector, estimator, part):
    """``selector``'s scores of the candidates ``part`` (what an executor's worker runs)."""
    import torch

    with torch.no_grad():
        return np.asarray(selector._score_pool(part, estimator))


class _ScoreCache:
    """Scores as ``.npy`` files named by a hash of the selector's parameters, the model's
    weights and the candidates (so any process, local or remote, can fill it)."""

    def __init__(self, memory, selector, estimator):
        location = getattr(memory, "location", memory)  # a joblib.Memory or a folder
        self.folder = None if location is None else Path(os.fspath(location)) / CACHE_FOLDER
        self.selector = clone(selector)  # parameters, not fitted attributes such as scores_
        self.estimator, self._model = estimator, None

    def path(self, part):
        import joblib

        if self.folder is None:
            return None
        if self._model is None and self.estimator is not None:  # hashed once, when needed
            self._model = model_fingerprint(self.estimator)
        return self.folder / f"{joblib.hash((self.selector, self._model, part))}.npy"

    @staticmethod
    def load(path):
        return None if path is None or not path.is_file() else np.load(path)

    @staticmethod
    def save(path, values):
        if path is not None:
            atomic_write(path, lambda f: np.save(f, values))
        return values


def score_candidates(selector, pool, estimator, memory=None, progress=None, executor=None):
    """Scores of every candidate of ``pool`` by ``selector._score_pool``.

    With ``memory`` (a folder or a ``joblib.Memory``) and a
    :attr:`~kwtl.selection.BaseSelector.deterministic` selector the scores are cached, keyed
    by the selector's parameters, the model's weights and the candidates. A
    :attr:`~kwtl.selection.BaseSelector.separable` selector is then scored (and cached)
    image by image, so an interrupted run keeps the images it scored; it reports its
    ``progress`` by image, and with an ``executor`` (an object with ``submit(function,
    *args)`` returning a future with ``result()``, e.g. a wrapper of a Dask client) the
    images not cached yet are scored by the executor's workers; the scores are those of a
    plain run.
    """
    cache = _ScoreCache(memory if selector.deterministic else None, selector, estimator)
    if not (selector.separable and (memory is not None or progress or executor)):
        path = cache.path(pool)
        values = cache.load(path)
        return cache.save(path, score_part(selector, estimator, pool)) if values is None else values
    owners = pool.coords[:, 0]
    images = np.unique(owners)
    parts = {}
    for i in images:
        rows = np.flatnonzero(owners == i)
        coords = np.column_stack([np.zeros(len(rows), np.int64), pool.coords[rows, 1:]])
        part = PatchSet([pool.arrays[i]], coords, pool.patch_size)
        parts[int(i)] = (rows, part, cache.path(part))
    remote = {}
    if executor is not None:  # send what is not cached; the results come back in order
        remote = {
            i: executor.submit(score_part, selector, estimator, part)
            for i, (_, part, path) in parts.items()
            if cache.load(path) is None
        }
    scores = np.full(selector._n_candidates(pool), -np.inf)
    bar = progress_bar(progress, len(images), "scoring images", "image")
    try:
        for i, (rows, part, path) in parts.items():
            values = cache.load(path)
            if values is None:
                values = cache.save(
                    path,
                    remote.pop(i).result()
                    if i in remote
                    else score_part(selector, estimator, part),
                )
            if selector.unit == "patch":
                scores[rows] = values
            else:
                scores[i] = values[0]
            bar.update(1)
    finally:
        bar.close()
    return scores
