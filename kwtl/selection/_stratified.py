"""Stratified, noise-tempered selection: spread the budget over foreground strata and images."""

import numbers

import numpy as np

from ..utils import derive_seed
from ._base import BaseSelector
from ._consistency import ConsistencySelector
from ._gate import _ForegroundWrapper, _present_images
from ._params import POSITIVE_INT
from ..utils.validation import Interval

__all__ = ["StratifiedSelector", "stratified_order"]


def _tempered_keys(scores, beta, rng):
    """Efraimidis–Spirakis keys: top-n of the keys samples n candidates without replacement
    with probability ∝ ``w = (scores / max)^beta`` (scores shifted to be non-negative)."""
    s = np.asarray(scores, dtype=np.float64)
    s = np.where(np.isfinite(s), s, np.nan)
    s = s - np.nanmin(s) if np.nanmin(s) < 0 else s
    s = np.nan_to_num(s, nan=0.0)
    top = s.max() if s.size and s.max() > 0 else 1.0
    weights = (s / top) ** float(beta) if beta else np.ones_like(s)
    u = rng.random(len(s))
    with np.errstate(divide="ignore"):
        return np.where(weights > 0, np.log(u) / np.maximum(weights, 1e-300), -np.inf)


def stratified_order(keys, strata, images=None, max_per_image=None):
    """A full selection order: round-robin over strata, best key first within a stratum.

    While some candidate's image has fewer than ``max_per_image`` chosen candidates, no
    image goes over that cap; once every remaining candidate is capped the cap grows by
    ``max_per_image`` (so any budget can be met). The order is budget-independent: the
    first ``n`` entries are the selection for budget ``n``.

    Returns
    -------
    order : ndarray of int
        Candidate indices, first to annotate first.

    Examples
    --------
    >>> stratified_order([5, 4, 3, 2, 1, 0], strata=[0, 0, 0, 1, 1, 1]).tolist()
    [0, 3, 1, 4, 2, 5]
    >>> stratified_order([5, 4, 3, 2], strata=[0, 0, 0, 0], images=[0, 0, 1, 1],
    ...                  max_per_image=1).tolist()
    [0, 2, 1, 3]
    """
    keys = np.asarray(keys, dtype=np.float64)
    strata = np.asarray(strata)
    n = len(keys)
    images = np.zeros(n, dtype=np.int64) if images is None else np.asarray(images)
    cap_step = n if max_per_image is None else int(max_per_image)
    labels = np.unique(strata)
    queues = []
    for lab in labels:
        members = np.flatnonzero(strata == lab)
        queues.append(list(members[np.argsort(-keys[members], kind="stable")]))
    deferred = [[] for _ in labels]
    pointers = [0] * len(labels)
    counts = {}
    cap = cap_step
    order = []
    while len(order) < n:
        progressed = False
        for s in range(len(labels)):
            queue = queues[s]
            while pointers[s] < len(queue):
                cand = queue[pointers[s]]
                pointers[s] += 1
                img = images[cand]
                if counts.get(img, 0) < cap:
                    counts[img] = counts.get(img, 0) + 1
                    order.append(cand)
                    progressed = True
                    break
                deferred[s].append(cand)
        if not progressed:  # everything left is capped: relax the cap
            cap += cap_step
            queues = [d + q[p:] for d, q, p in zip(deferred, queues, pointers)]
            deferred = [[] for _ in labels]
            pointers = [0] * len(labels)
    return np.asarray(order, dtype=np.intp)


class StratifiedSelector(_ForegroundWrapper, BaseSelector):
    """Spread the budget over predicted-foreground strata and images, sampling ∝ score^β.

    1. Every candidate gets the inner selector's score ``s`` (the paper's consistency by
       default) and the model's predicted foreground (no label read).
    2. The pool is cut into ``n_strata`` equal-count strata by predicted foreground.
    3. Within a stratum, candidates are drawn without replacement with probability
       ``∝ (s / max s)^beta`` (``beta=0``: uniform; large ``beta``: the strict top-k of
       the inner score). Strata take turns, so each gets an equal share of the budget.
    4. No image gets more than ``max_per_image`` candidates until every image is at the cap.

    The whole order is drawn once, so the first ``n`` candidates are the selection for any
    budget ``n`` (the scores are ``n_candidates − position``). This tempers the
    uncertainty score (nnActive's and ClaSP's lesson: strict top-k of an uncertainty picks
    near-duplicates of the noisiest background) and keeps foreground-rich and
    foreground-poor candidates in the support.

    Parameters
    ----------
    selector : selector or None, default=None
        Inner scores; None means :class:`~kwtl.selection.ConsistencySelector`. It is cloned
        and given this selector's ``unit`` and, if it has none, a seed derived from
        ``random_state``.
    beta : float, default=1.0
        Temperature exponent of the sampling weights (≥ 0).
    n_strata : int, default=3
        Number of equal-count strata of predicted foreground (1: no stratification).
    max_per_image : int or None, default=None
        Per-image cap (None: no cap). With ``unit="image"`` every candidate is its own
        image, so the cap has no effect.
    measure : {"fraction", "mean_proba"}, default="fraction"
        The foreground measure (see :class:`~kwtl.selection.PredictedForegroundSelector`).
    proba_threshold : float, default=0.5
        Probability that counts a pixel as foreground (``measure="fraction"``).
    dense : bool or "auto", default=False
        Dense scoring of the foreground measure; the inner selector has its own ``dense``.
    unit : {"patch", "image"}, default="patch"
        ``"image"``: images are stratified by their predicted foreground fraction (the mean
        of their patches') and drawn ∝ the inner selector's image score^β.
    batch_size : int or None, default=None
        Patches per chunk of the foreground measure.
    random_state : None, int or RandomState, default=None
        Seeds the draw (and an inner selector without a seed of its own).

    Attributes
    ----------
    foreground_, inner_scores_ : ndarray of shape (n_candidates,)
    scores_ : ndarray
        Scores of the last :meth:`select` call.

    Examples
    --------
    >>> import numpy as np
    >>> from kwtl.models import FCRNSegmenter
    >>> from kwtl.selection import EntropySelector, StratifiedSelector
    >>> seg = FCRNSegmenter(module__width=4, patch_size=16, stride=16, precision="fp32",
    ...                     random_state=0).initialize()
    >>> patches = np.random.default_rng(0).integers(0, 256, (6, 16, 16), dtype=np.uint8)
    >>> sel = StratifiedSelector(EntropySelector(), n_strata=2, random_state=0)
    >>> sel.select(patches, 3, seg).shape
    (3,)
    """

    #: Sampling ∝ score^β is a random draw.
    stochastic = True
    _default_inner = ConsistencySelector
    _inner_seed_salt = "stratified-inner"
    _parameter_constraints = {
        **_ForegroundWrapper._wrapper_constraints,
        "beta": [Interval(numbers.Real, 0, None, closed="left", finite=True)],
        "n_strata": [POSITIVE_INT],
        "max_per_image": [None, POSITIVE_INT],
    }

    def __init__(
        self,
        selector=None,
        beta=1.0,
        n_strata=3,
        max_per_image=None,
        measure="fraction",
        proba_threshold=0.5,
        *,
        dense=False,
        unit="patch",
        batch_size=None,
        random_state=None,
    ):
        self.selector = selector
        self.beta = beta
        self.n_strata = n_strata
        self.max_per_image = max_per_image
        self.measure = measure
        self.proba_threshold = proba_threshold
        self.dense = dense
        self.unit = unit
        self.batch_size = batch_size
        self.random_state = random_state

    def _score_pool(self, pool, estimator):
        self.foreground_ = self.measure_selector().score(pool, estimator)
        self.inner_scores_ = self.inner_selector().score(pool, estimator)
        if self.unit == "patch":
            return self.scores_from(self.inner_scores_, self.foreground_, pool.coords[:, 0])
        present = _present_images(pool)  # images without a patch (a subset pool) rank last
        scores = np.full(len(self.foreground_), -np.inf)
        scores[present] = self.scores_from(self.inner_scores_[present], self.foreground_[present])
        return scores

    def scores_from(self, inner_scores, foreground, images=None):
        """Scores (``n − position`` in the drawn order) from precomputed per-candidate
        inner scores, foreground measures and source-image ids (None: each candidate is
        its own image)."""
        self._validate_params()
        inner = np.asarray(inner_scores, dtype=np.float64)
        fg = np.asarray(foreground, dtype=np.float64)
        n = len(inner)
        rng = np.random.default_rng(derive_seed(self.random_state, "stratified"))
        keys = _tempered_keys(inner, self.beta, rng)
        k = min(int(self.n_strata), n)
        # equal-count strata by foreground rank (ties broken by position)
        strata = (np.argsort(np.argsort(fg, kind="stable"), kind="stable") * k) // max(n, 1)
        images = np.arange(n) if images is None else images
        order = stratified_order(keys, strata, images, self.max_per_image)
        scores = np.empty(n, dtype=np.float64)
        scores[order] = n - np.arange(n)
        return scores
