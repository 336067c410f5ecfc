"""Spread a selector's choice over the images: at most a few candidates per image first."""

import numpy as np
from sklearn.base import clone

from ..utils import derive_seed
from ..utils.validation import POSITIVE_INT
from ._base import BaseSelector
from ._random import RandomSelector
from ._stratified import stratified_order

__all__ = ["SpreadSelector"]


class SpreadSelector(BaseSelector):
    """Any selector's order, with at most ``max_per_image`` candidates per image first.

    The inner selector scores the pool; candidates are then taken best first, skipping any
    whose image already holds ``max_per_image`` chosen candidates, until every image is at
    the cap; then the cap grows by ``max_per_image`` (see
    :func:`~kwtl.selection._stratified.stratified_order`), so any budget can be met. The
    order does not depend on the budget: the first ``n`` candidates are the selection for
    budget ``n``. With the default inner :class:`~kwtl.selection.RandomSelector` this is
    *spread random*: a uniform draw that touches as many images as the budget allows.

    Parameters
    ----------
    selector : selector or None, default=None
        The inner scores; None means ``RandomSelector()``. It is cloned and given this
        selector's ``unit`` and, when it has none, a seed derived from ``random_state``.
    max_per_image : int, default=1
        Per-image cap before the cap grows.
    unit : {"patch", "image"}, default="patch"
        With ``"image"`` every candidate is its own image and the order is the inner one.
    random_state : None, int or RandomState, default=None
        Seeds an inner selector without a seed of its own.

    Attributes
    ----------
    inner_scores_ : ndarray of shape (n_candidates,)

    Examples
    --------
    >>> import numpy as np
    >>> from kwtl.datasets import PatchSet
    >>> from kwtl.selection import SpreadSelector
    >>> images = [np.zeros((16, 32), np.uint8), np.zeros((16, 32), np.uint8)]
    >>> pool = PatchSet.from_images(images, 16, 16)  # two patches per image
    >>> chosen = SpreadSelector(random_state=0).select(pool, 2, None)
    >>> sorted(pool.coords[chosen, 0].tolist())  # one from each image
    [0, 1]
    """

    def __init__(self, selector=None, max_per_image=1, *, unit="patch", random_state=None):
        self.selector = selector
        self.max_per_image = max_per_image
        self.unit = unit
        self.random_state = random_state

    def _inner(self):
        inner = RandomSelector() if self.selector is None else clone(self.selector)
        params = inner.get_params()
        if "unit" in params:
            inner.set_params(unit=self.unit)
        seed = derive_seed(self.random_state, "spread-inner")
        if seed is not None and "random_state" in params and params["random_state"] is None:
            inner.set_params(random_state=seed)
        return inner

    @property
    def required_methods(self):
        """What the inner selector asks of the model."""
        return tuple(self._inner().required_methods)

    @property
    def stochastic(self):
        """As random as the inner selector."""
        return bool(getattr(self._inner(), "stochastic", False))

    _parameter_constraints = {
        **BaseSelector._parameter_constraints,
        "selector": [None, BaseSelector],
        "max_per_image": [POSITIVE_INT],
    }

    def _score_pool(self, pool, estimator):
        self.inner_scores_ = np.asarray(self._inner().score(pool, estimator), dtype=np.float64)
        if self.unit == "image":
            return self.inner_scores_
        return self.scores_from(self.inner_scores_, pool.coords[:, 0])

    def scores_from(self, inner_scores, images):
        """Scores from precomputed inner scores and the candidates' source-image ids.

        The integer part is ``n − position`` in the spread order; the fraction is the
        candidate's rank in the inner order over ``n + 1``, which :meth:`choose` reads to
        spread again over the candidates an ``exclude`` leaves.
        """
        self._validate_params()
        inner = np.asarray(inner_scores, dtype=np.float64)
        keys = np.where(np.isnan(inner), -np.inf, inner)
        n = len(keys)
        order = stratified_order(
            keys, np.zeros(n, dtype=np.int64), np.asarray(images), int(self.max_per_image)
        )
        inner_rank = np.empty(n, dtype=np.float64)  # n - 1 for the best, ties by index
        inner_rank[np.argsort(-keys, kind="stable")] = n - 1 - np.arange(n)
        scores = np.empty(n, dtype=np.float64)
        scores[order] = n - np.arange(n)
        return scores + inner_rank / (n + 1)

    def choose(self, scores, n, pool=None, *, non_overlapping=False, exclude=None):
        """As :meth:`BaseSelector.choose`; with ``exclude`` the allowed candidates are spread
        again (each image's best allowed candidate first), so an image whose best candidate
        was drawn in an earlier round keeps its place in the first pass. That needs
        ``pool`` (the candidates' images)."""
        if exclude is None or self.unit == "image":
            return super().choose(scores, n, pool, non_overlapping=non_overlapping, exclude=exclude)
        if pool is None:
            raise ValueError(
                "SpreadSelector.choose with exclude needs the pool (the candidates' images)"
            )
        scores = np.asarray(scores, dtype=np.float64)
        allowed = ~np.asarray(exclude, dtype=bool)
        fraction = scores - np.floor(scores)
        # scores cached before the fraction existed hold the spread order alone
        keys = fraction if np.any(fraction > 0) else scores
        again = np.full(len(scores), -np.inf)
        again[allowed] = self.scores_from(keys[allowed], pool.coords[allowed, 0])
        return super().choose(again, n, pool, non_overlapping=non_overlapping, exclude=~allowed)
