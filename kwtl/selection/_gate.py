"""A label-free foreground gate: rank candidates the model believes contain cells first."""
import numbers

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.base import clone

from ..utils import derive_seed
from ._base import BaseSelector, PixelSelector
from ._random import RandomSelector

__all__ = ["ForegroundGate", "PredictedForegroundSelector", "gate_mask", "gate_scores"]

_MEASURES = ("fraction", "mean_proba")


class PredictedForegroundSelector(PixelSelector):
    """Score = the model's predicted foreground of a candidate (no label read).

    ``measure="fraction"``: fraction of pixels with ``σ(z) ≥ proba_threshold``;
    ``measure="mean_proba"``: mean foreground probability. BatchNorm in eval mode, as for
    the other selectors.

    Parameters
    ----------
    measure : {"fraction", "mean_proba"}, default="fraction"
    proba_threshold : float, default=0.5
    unit, reduction, batch_size, random_state
        See :class:`~kwtl.selection.BaseSelector` (``reduction`` defaults to the mean, which
        is what the measures are).

    Examples
    --------
    >>> import numpy as np
    >>> from kwtl.models import FCRNSegmenter
    >>> from kwtl.selection._gate import PredictedForegroundSelector
    >>> seg = FCRNSegmenter(module__width=4, patch_size=16, stride=16, precision="fp32",
    ...                     random_state=0).initialize()
    >>> patches = np.random.default_rng(0).integers(0, 256, (3, 16, 16), dtype=np.uint8)
    >>> s = PredictedForegroundSelector().score(patches, seg)
    >>> s.shape, bool(((0 <= s) & (s <= 1)).all())
    ((3,), True)
    """

    def __init__(self, measure="fraction", proba_threshold=0.5, *, unit="patch",
                 reduction="mean", batch_size=None, random_state=None):
        super().__init__(unit=unit, reduction=reduction, batch_size=batch_size,
                         random_state=random_state)
        self.measure = measure
        self.proba_threshold = proba_threshold

    def _validate_params(self):
        if self.measure not in _MEASURES:
            raise ValueError(f"measure must be one of {_MEASURES}, got {self.measure!r}")
        t = self.proba_threshold
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not 0.0 < t < 1.0:
            raise ValueError(f"proba_threshold must be in (0, 1), got {t!r}")

    def _pixel_scores(self, patches, estimator):
        proba = torch.sigmoid(estimator.patch_logits(patches))
        if self.measure == "fraction":
            return (proba >= float(self.proba_threshold)).to(proba.dtype)
        return proba


def gate_scores(inner_scores, foreground, quantile=0.5, threshold=None):
    """Scores that rank gated-in candidates first (in the inner order), then the others by
    predicted foreground.

    A candidate passes the gate if ``foreground >= threshold`` (absolute) or, when
    ``threshold`` is None, if ``foreground`` is at least the pool's ``quantile``. Passing
    candidates score ``1 + r`` with ``r ∈ [0, 1)`` the rank of their inner score among the
    passing ones scaled to the unit interval (ties share a rank; NaN ranks lowest); the
    others score their foreground rank scaled to ``[0, 1)`` (their inner scores are not
    used, so they may be NaN). Top-``n`` thus takes passing candidates first.

    Examples
    --------
    >>> gate_scores([0.1, 0.9, 0.5, 0.7], [0.2, 0.1, 0.8, 0.9], quantile=0.5).tolist()
    [0.25, 0.0, 1.0, 1.25]
    """
    inner = np.asarray(inner_scores, dtype=np.float64)
    fg = np.asarray(foreground, dtype=np.float64)
    if inner.shape != fg.shape or inner.ndim != 1:
        raise ValueError(f"inner scores and foreground must be 1-D of the same length, got "
                         f"{inner.shape} and {fg.shape}")
    keep = gate_mask(fg, quantile, threshold)
    n = max(len(fg), 1)
    out = (rankdata(fg, method="min") - 1) / n
    if keep.any():
        kept = inner[keep]
        out[keep] = 1 + (rankdata(np.where(np.isnan(kept), -np.inf, kept), method="min") - 1) / n
    return out


def gate_mask(foreground, quantile=0.5, threshold=None):
    """Which candidates pass the gate (see :func:`gate_scores`)."""
    fg = np.asarray(foreground, dtype=np.float64)
    cut = float(threshold) if threshold is not None else np.quantile(fg, float(quantile))
    return fg >= cut


class _ForegroundWrapper:
    """What the wrappers around an inner selector that also measure the model's predicted
    foreground (:class:`ForegroundGate`, ``StratifiedSelector``) share."""

    #: The inner selector when ``selector`` is None, and the salt of its derived seed.
    _default_inner = RandomSelector
    _inner_seed_salt = "gate-inner"

    @property
    def required_methods(self):
        """``patch_logits`` for the foreground measure, plus what the inner selector needs."""
        return tuple(dict.fromkeys(("patch_logits",) + tuple(self._inner().required_methods)))

    def _inner(self):
        inner = self._default_inner() if self.selector is None else clone(self.selector)
        if getattr(inner, "random_state", None) is None and self.random_state is not None:
            inner.set_params(random_state=derive_seed(self.random_state, self._inner_seed_salt))
        return inner

    def _measure_selector(self):
        return PredictedForegroundSelector(measure=self.measure,
                                           proba_threshold=self.proba_threshold,
                                           batch_size=self.batch_size)


class ForegroundGate(_ForegroundWrapper, BaseSelector):
    """Wrap any selector so that candidates with predicted foreground come first.

    The gate measures each candidate's predicted foreground with the model being adapted
    (see :class:`PredictedForegroundSelector`) — no label is read — and keeps the candidates
    at or above a pool quantile (default: the upper half) or an absolute ``threshold``.
    The inner selector scores only the kept candidates and orders them; the others follow
    by predicted foreground (so any budget can be met). The PLFT models of the paper mark half or more of all pixels as
    foreground at p ≥ 0.5, so an absolute gate at that level keeps almost everything: the
    default gate is relative (a pool quantile).

    Parameters
    ----------
    selector : selector or None, default=None
        The inner selector; None means :class:`RandomSelector` (random inside the gate).
    quantile : float, default=0.5
        Pool quantile of the foreground measure a candidate must reach (ignored when
        ``threshold`` is given). 0 keeps every candidate.
    threshold : float or None, default=None
        Absolute threshold on the foreground measure instead.
    measure : {"fraction", "mean_proba"}, default="fraction"
    proba_threshold : float, default=0.5
        Probability that counts a pixel as foreground (``measure="fraction"``).
    batch_size : int or None, default=None
    random_state : None, int or RandomState, default=None
        Passed to an inner selector that has none.

    Attributes
    ----------
    foreground_ : ndarray of shape (n_candidates,)
        The foreground measure of the last scoring.
    inner_scores_ : ndarray of shape (n_candidates,)
        The inner selector's scores of the last scoring (NaN outside the gate).
    scores_ : ndarray
        Scores of the last :meth:`select` call.

    Examples
    --------
    >>> import numpy as np
    >>> from kwtl.models import FCRNSegmenter
    >>> from kwtl.selection._gate import ForegroundGate
    >>> seg = FCRNSegmenter(module__width=4, patch_size=16, stride=16, precision="fp32",
    ...                     random_state=0).initialize()
    >>> patches = np.random.default_rng(0).integers(0, 256, (6, 16, 16), dtype=np.uint8)
    >>> ForegroundGate(random_state=0).select(patches, 2, seg).shape
    (2,)
    """

    def __init__(self, selector=None, quantile=0.5, threshold=None, measure="fraction",
                 proba_threshold=0.5, *, batch_size=None, random_state=None):
        self.selector = selector
        self.quantile = quantile
        self.threshold = threshold
        self.measure = measure
        self.proba_threshold = proba_threshold
        self.batch_size = batch_size
        self.random_state = random_state

    #: Candidates are patches (the inner selector must rank patches too).
    unit = "patch"

    @property
    def stochastic(self):
        """As the inner selector (random inside the gate is stochastic)."""
        return bool(self._inner().stochastic)

    def _validate_params(self):
        q = self.quantile
        if isinstance(q, bool) or not isinstance(q, numbers.Real) or not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be in [0, 1], got {q!r}")
        if self.threshold is not None and (isinstance(self.threshold, bool)
                                           or not isinstance(self.threshold, numbers.Real)):
            raise ValueError(f"threshold must be None or a number, got {self.threshold!r}")
        if self.selector is not None and getattr(self.selector, "unit", "patch") != "patch":
            raise ValueError("ForegroundGate ranks patches: the inner selector must have "
                             "unit='patch'")
        self._measure_selector()._validate_params()

    def _check_estimator(self, estimator, X):
        return BaseSelector._check_estimator(self, estimator, X)

    def _score_pool(self, pool, estimator):
        self.foreground_ = self._measure_selector().score(pool, estimator)
        keep = np.flatnonzero(gate_mask(self.foreground_, self.quantile, self.threshold))
        # the inner selector sees only the gated pool (cheaper, and set-based selectors such
        # as StratifiedSelector or RepresentativeSelector then spread over the gated pool)
        self.inner_scores_ = np.full(len(pool), np.nan)
        self.inner_scores_[keep] = self._inner().score(pool.subset(keep), estimator)
        return self.scores_from(self.inner_scores_, self.foreground_)

    def scores_from(self, inner_scores, foreground):
        """Gate scores from precomputed inner scores (of the gated candidates; the others
        may be NaN) and foreground measures."""
        self._validate_params()
        return gate_scores(inner_scores, foreground, self.quantile, self.threshold)
