"""Random selection baseline (uniform, without replacement)."""

import numpy as np

from ..utils import derive_seed
from ._base import BaseSelector
from ._pixel import PixelSelector

__all__ = ["RandomSelector"]


class RandomSelector(BaseSelector):
    """Select candidates uniformly at random, without replacement (paper baseline).

    Every candidate gets an independent uniform score in [0, 1); taking the top ``n`` is then
    a uniform sample of ``n`` distinct candidates in random order. The network is never
    called. With ``unit="image"`` every source image is equally likely, whatever its number
    of patches. (The authors' code draws patch indices *with* replacement and can never draw
    the last patch; this is the intended behaviour instead.)

    Parameters
    ----------
    unit : {"patch", "image"}, default="patch"
    reduction : {"mean", "sum", "max"} or callable, default="mean"
        Validated but unused.
    batch_size : int or None, default=None
        Unused.
    random_state : None, int or RandomState, default=None
        Seeds the draw: the same int gives the same scores and selection on the same pool
        (the seed is ``derive_seed(random_state, "random-selector")``). None draws fresh
        entropy each call.
        See :class:`~kwtl.selection.BaseSelector` for the common parameters.

    Attributes
    ----------
    scores_ : ndarray of shape (n_candidates,)
        Scores of the last :meth:`select` call.

    Notes
    -----
    ``estimator`` may be None when ``X`` is a :class:`~kwtl.datasets.PatchSet` or a patch
    stack; for a list of images it supplies ``patch_size`` and ``stride`` of the grid.
    It has no per-pixel score maps (the scores do not look at pixels). With
    ``unit="image"`` an image without any patch in the pool scores ``-inf``, as for the
    other selectors.

    Examples
    --------
    >>> import numpy as np
    >>> from kwtl.datasets import PatchSet
    >>> from kwtl.selection import RandomSelector
    >>> patches = PatchSet.from_stack(np.zeros((10, 16, 16), dtype=np.uint8))
    >>> picked = RandomSelector(random_state=0).select(patches, 3, estimator=None)
    >>> len(set(picked.tolist()))
    3
    >>> np.array_equal(picked, RandomSelector(random_state=0).select(patches, 3, None))
    True
    """

    stochastic = True
    # reduction and batch_size are unused, validated for a uniform API
    _parameter_constraints = PixelSelector._parameter_constraints

    def __init__(self, *, unit="patch", reduction="mean", batch_size=None, random_state=None):
        self.unit = unit
        self.reduction = reduction
        self.batch_size = batch_size
        self.random_state = random_state

    def _score_pool(self, pool, estimator):
        rng = np.random.default_rng(derive_seed(self.random_state, "random-selector"))
        scores = rng.random(self._n_candidates(pool))
        if self.unit == "image":
            has_patch = np.zeros(len(pool.arrays), dtype=bool)
            has_patch[pool.coords[:, 0]] = True
            scores[~has_patch] = -np.inf
        return scores
