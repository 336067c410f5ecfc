"""What every selector checks of its inputs: the pool it is given and the model it calls."""

import numbers

from sklearn.utils.validation import check_is_fitted

from ..datasets import PatchSet
from ..utils import check_images

__all__ = ["PoolInputs"]


class PoolInputs:
    """The input checks of :class:`~kwtl.selection.BaseSelector`: a pool of candidate
    patches from images or a PatchSet, a model with the entry points the selector calls, a
    budget within the pool."""

    def _prepare(self, X, estimator):
        self._validate_params()
        estimator = self._check_estimator(estimator, X)
        return self._make_pool(X, estimator), estimator

    def _check_n(self, n, n_candidates):
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if n < 1:
            raise ValueError(f"n must be a positive integer (at least 1), got {n}")
        if n > n_candidates:
            what = "patches" if self.unit == "patch" else "images"
            raise ValueError(
                f"more shots than candidates: asked for n={n} but the pool has only "
                f"{n_candidates} candidate {what}"
            )

    def _check_estimator(self, estimator, X):
        required = tuple(self.required_methods)
        if not required:
            if estimator is None and not isinstance(X, PatchSet):
                raise ValueError(
                    "an estimator (for its patch_size and stride) is needed to cut images "
                    "into candidate patches; pass the segmenter, or a PatchSet (e.g. "
                    "PatchSet.from_stack(patches) for ready-made patches)"
                )
            return estimator
        missing = [m for m in required if not callable(getattr(estimator, m, None))]
        if estimator is None or missing:
            raise TypeError(
                f"estimator must be a segmenter with a {' and a '.join(missing or required)} "
                f"method (kwtl.selection.SelectionModel, e.g. FCRNSegmenter), needed by "
                f"{type(self).__name__}; got {type(estimator).__name__}"
            )
        if hasattr(estimator, "check_is_fitted"):
            estimator.check_is_fitted()  # skorch: NotInitializedError, a NotFittedError
        else:
            check_is_fitted(estimator)
        return estimator

    def _make_pool(self, X, estimator):
        if isinstance(X, PatchSet):
            pool = X
        else:
            images = check_images(X)
            if estimator is None:
                raise ValueError("an estimator is needed to cut images into patches")
            pool = PatchSet.from_images(images, estimator.patch_size, estimator.stride)
        if len(pool) == 0:
            raise ValueError("the pool is empty: there are no candidate patches to score")
        return pool

    def _n_candidates(self, pool):
        return len(pool) if self.unit == "patch" else len(pool.arrays)
