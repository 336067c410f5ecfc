"""A label-free foreground gate: rank candidates the model believes contain cells first."""

import numbers

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn.base import clone

from ..utils import derive_seed
from ..utils.validation import Interval, Options
from ._base import BaseSelector
from ._dense import DenseScoringMixin
from ._params import DENSE, MEASURES, OPEN_UNIT, POSITIVE_INT
from ._pixel import PixelSelector
from ._random import RandomSelector

__all__ = ["ForegroundGate", "PredictedForegroundSelector", "gate_mask", "gate_scores"]


class PredictedForegroundSelector(DenseScoringMixin, PixelSelector):
    """Score = the model's predicted foreground of a candidate (no label read).

    ``measure="fraction"``: fraction of pixels with ``σ(z) ≥ proba_threshold``;
    ``measure="mean_proba"``: mean foreground probability. BatchNorm in eval mode, as for
    the other selectors. On its own it is "annotate what looks most like cells"; its main
    use is as the measure of :class:`ForegroundGate` and :class:`StratifiedSelector`.

    Parameters
    ----------
    measure : {"fraction", "mean_proba"}, default="fraction"
        The per-pixel map: ``σ(z) ≥ proba_threshold`` (0 or 1) or ``σ(z)``.
    proba_threshold : float, default=0.5
        Probability that counts a pixel as foreground (``measure="fraction"``).
    dense : bool or "auto", default=False
        ``True``: one probability map per image
        (:meth:`~kwtl.models.FCRNSegmenter.image_logits`), each candidate read off by box
        sums, as for :class:`~kwtl.selection.EntropySelector`.
    unit : {"patch", "image"}, default="patch"
        With ``"image"`` an image's score is the mean of its patches' scores (its predicted
        foreground fraction, overlapping pixels counted once per patch).
    reduction, batch_size, random_state
        See :class:`~kwtl.selection.PixelSelector` (``reduction`` defaults to the mean, which
        is what the measures are; ``random_state`` is unused: the score is deterministic).

    Examples
    --------
    >>> import numpy as np
    >>> from kwtl.models import FCRNSegmenter
    >>> from kwtl.selection import PredictedForegroundSelector
    >>> seg = FCRNSegmenter(module__width=4, patch_size=16, stride=16, precision="fp32",
    ...                     random_state=0).initialize()
    >>> patches = np.random.default_rng(0).integers(0, 256, (3, 16, 16), dtype=np.uint8)
    >>> s = PredictedForegroundSelector().score(patches, seg)
    >>> s.shape, bool(((0 <= s) & (s <= 1)).all())
    ((3,), True)
    """

    _parameter_constraints = {
        **PixelSelector._parameter_constraints,
        "measure": [Options(MEASURES)],
        "proba_threshold": [OPEN_UNIT],
        "dense": DENSE,
    }

    def __init__(
        self,
        measure="fraction",
        proba_threshold=0.5,
        *,
        dense=False,
        unit="patch",
        reduction="mean",
        batch_size=None,
        random_state=None,
    ):
        super().__init__(
            unit=unit, reduction=reduction, batch_size=batch_size, random_state=random_state
        )
        self.measure = measure
        self.proba_threshold = proba_threshold
        self.dense = dense

    def _pixel_scores(self, patches, estimator):
        return self._foreground_map(estimator.patch_logits(patches))

    def _dense_maps(self, image, corners, patch_size, estimator):
        yield self._foreground_map(estimator.image_logits(image[None])[0]), slice(None)

    def _foreground_map(self, logits):
        proba = torch.sigmoid(logits.float())
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
        raise ValueError(
            f"inner scores and foreground must be 1-D of the same length, got "
            f"{inner.shape} and {fg.shape}"
        )
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
    foreground (:class:`ForegroundGate`, :class:`~kwtl.selection.StratifiedSelector`) share.

    The wrapper's ``unit`` is the one that counts: the inner selector is cloned and given
    the wrapper's ``unit`` (and, when it has none, a seed derived from the wrapper's), so
    inner and wrapper always rank the same kind of candidate.
    """

    #: The inner selector when ``selector`` is None, and the salt of its derived seed.
    _default_inner = RandomSelector
    _inner_seed_salt = "gate-inner"
    #: Constraints of the parameters every wrapper has (besides its own).
    _wrapper_constraints = {
        **BaseSelector._parameter_constraints,
        "selector": [None, BaseSelector],
        "measure": [Options(MEASURES)],
        "proba_threshold": [OPEN_UNIT],
        "dense": DENSE,
        "batch_size": [None, POSITIVE_INT],
    }

    @property
    def required_methods(self):
        """``patch_logits`` for the foreground measure, plus what the inner selector needs."""
        return tuple(
            dict.fromkeys(("patch_logits",) + tuple(self.inner_selector().required_methods))
        )

    def inner_selector(self):
        """The inner selector as the wrapper uses it: a clone with the wrapper's ``unit`` and,
        when it has no seed, one derived from the wrapper's (for scores computed apart, e.g.
        with :meth:`scores_from`)."""
        inner = self._default_inner() if self.selector is None else clone(self.selector)
        if "unit" in inner.get_params(deep=False):
            inner.set_params(unit=self.unit)
        if getattr(inner, "random_state", None) is None and self.random_state is not None:
            inner.set_params(random_state=derive_seed(self.random_state, self._inner_seed_salt))
        return inner

    def measure_selector(self):
        """The :class:`PredictedForegroundSelector` of the wrapper's foreground measure."""
        return PredictedForegroundSelector(
            measure=self.measure,
            proba_threshold=self.proba_threshold,
            dense=self.dense,
            unit=self.unit,
            batch_size=self.batch_size,
        )

    def _validate_params(self):
        """The wrapper's parameters, then the inner selector's and the measure's."""
        super()._validate_params()
        self.measure_selector()._validate_params()
        self.inner_selector()._validate_params()


def _present_images(pool):
    """Image indices with at least one patch in ``pool`` (all of them unless a subset)."""
    return np.unique(pool.coords[:, 0])


class ForegroundGate(_ForegroundWrapper, BaseSelector):
    """Wrap any selector so that candidates with predicted foreground come first.

    The gate measures each candidate's predicted foreground with the model being adapted
    (see :class:`PredictedForegroundSelector`) — no label is read — and keeps the candidates
    at or above a pool quantile (default: the upper half) or an absolute ``threshold``.
    The inner selector scores only the kept candidates and orders them; the others follow
    by predicted foreground (so any budget can be met). The PLFT models of the paper mark
    half or more of all pixels as foreground at p ≥ 0.5, so an absolute gate at that level
    keeps almost everything: the default gate is relative (a pool quantile).

    It is the label-free stand-in for the authors' ground-truth filter (their code drops
    every candidate whose *true* mask has fewer than 360 foreground pixels; see the user
    guide, "Knowing what to label without labels").

    Parameters
    ----------
    selector : selector or None, default=None
        The inner selector; None means :class:`~kwtl.selection.RandomSelector` (random
        inside the gate). It is cloned and given the gate's ``unit`` (its own ``unit`` is
        ignored) and, if it has none, a seed derived from ``random_state``.
    quantile : float, default=0.5
        Pool quantile of the foreground measure a candidate must reach (ignored when
        ``threshold`` is given). 0 keeps every candidate.
    threshold : float or None, default=None
        Absolute threshold on the foreground measure instead (a fraction of pixels for
        ``measure="fraction"``). If no candidate reaches it, every candidate is ranked by
        predicted foreground alone.
    measure : {"fraction", "mean_proba"}, default="fraction"
        See :class:`PredictedForegroundSelector`.
    proba_threshold : float, default=0.5
        Probability that counts a pixel as foreground (``measure="fraction"``).
    dense : bool or "auto", default=False
        Dense scoring of the foreground measure (see :class:`PredictedForegroundSelector`);
        the inner selector has its own ``dense``.
    unit : {"patch", "image"}, default="patch"
        ``"image"``: an image passes the gate by its predicted foreground fraction (the mean
        of its patches'), and the inner selector ranks the images that pass.
    batch_size : int or None, default=None
        Patches per chunk of the foreground measure.
    random_state : None, int or RandomState, default=None
        Passed (derived) to an inner selector that has none.

    Attributes
    ----------
    foreground_ : ndarray of shape (n_candidates,)
        The foreground measure of the last scoring.
    inner_scores_ : ndarray of shape (n_candidates,)
        The inner selector's scores of the last scoring (NaN outside the gate).
    scores_ : ndarray
        Scores of the last :meth:`select` call.

    See Also
    --------
    gate_scores : the score rule, on precomputed inner scores and foreground measures.

    Examples
    --------
    >>> import numpy as np
    >>> from kwtl.models import FCRNSegmenter
    >>> from kwtl.selection import ConsistencySelector, ForegroundGate
    >>> seg = FCRNSegmenter(module__width=4, patch_size=16, stride=16, precision="fp32",
    ...                     random_state=0).initialize()
    >>> patches = np.random.default_rng(0).integers(0, 256, (6, 16, 16), dtype=np.uint8)
    >>> ForegroundGate(random_state=0).select(patches, 2, seg).shape
    (2,)
    >>> gate = ForegroundGate(ConsistencySelector(), quantile=0.75)
    >>> gate.set_params(selector__magnitude=1.5).selector
    ConsistencySelector(magnitude=1.5)
    """

    _parameter_constraints = {
        **_ForegroundWrapper._wrapper_constraints,
        "quantile": [Interval(numbers.Real, 0, 1, closed="both")],
        "threshold": [None, Interval(numbers.Real, None, None)],
    }

    def __init__(
        self,
        selector=None,
        quantile=0.5,
        threshold=None,
        measure="fraction",
        proba_threshold=0.5,
        *,
        dense=False,
        unit="patch",
        batch_size=None,
        random_state=None,
    ):
        self.selector = selector
        self.quantile = quantile
        self.threshold = threshold
        self.measure = measure
        self.proba_threshold = proba_threshold
        self.dense = dense
        self.unit = unit
        self.batch_size = batch_size
        self.random_state = random_state

    @property
    def stochastic(self):
        """As the inner selector (random inside the gate is stochastic)."""
        return bool(self.inner_selector().stochastic)

    def _score_pool(self, pool, estimator):
        foreground = self.measure_selector().score(pool, estimator)
        self.inner_scores_ = np.full(len(foreground), np.nan)
        if self.unit == "image":  # images without a patch in a subset pool stay out
            present = _present_images(pool)
            keep = present[gate_mask(foreground[present], self.quantile, self.threshold)]
            gated = pool.subset(np.flatnonzero(np.isin(pool.coords[:, 0], keep)))
        else:
            present = slice(None)
            keep = np.flatnonzero(gate_mask(foreground, self.quantile, self.threshold))
            gated = pool.subset(keep)
        self.foreground_ = foreground
        # the inner selector sees only the gated pool (cheaper, and set-based selectors such
        # as StratifiedSelector or RepresentativeSelector then spread over the gated pool)
        if len(keep):
            inner = self.inner_selector().score(gated, estimator)
            self.inner_scores_[keep] = inner[keep] if self.unit == "image" else inner
        scores = np.full(len(foreground), -np.inf)
        scores[present] = self.scores_from(self.inner_scores_[present], foreground[present])
        return scores

    def scores_from(self, inner_scores, foreground):
        """Gate scores from precomputed inner scores (of the gated candidates; the others
        may be NaN) and foreground measures (see :func:`gate_scores`)."""
        self._validate_params()
        return gate_scores(inner_scores, foreground, self.quantile, self.threshold)
