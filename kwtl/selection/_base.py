"""The selector contract: everything about choosing candidates lives here.

A selector *scores* every candidate of an unlabelled pool (higher = annotate first) and
*chooses* the ``n`` best. Scoring and choosing are separate (as in scikit-activeml), so a
score vector can be inspected, plotted, cached or combined before anything is chosen.

* :class:`BaseSelector` (an ABC) owns the budget rule (:meth:`~BaseSelector.budget`), the
  image-unit expansion, score caching (allowed when :attr:`~BaseSelector.deterministic`),
  the tied-score warning, ``scores_`` and the final choice
  (:meth:`~BaseSelector.select_support`, one call for :class:`~kwtl.FewShotSegmentation`).
  A subclass implements one hook, ``_score_pool(pool, estimator)``: whole-pool selectors
  (clustering, coverage) and wrappers (a gate, a mixture) implement it directly.
* :class:`PixelSelector` implements ``_score_pool`` by streaming the pool in chunks through
  one per-pixel hook, ``_pixel_scores(patches, estimator)``, and reducing each patch's
  pixels to one score on the segmenter's device.

What a selector may ask of the model is the :class:`~kwtl.selection.SelectionModel`
protocol; a selector lists the entry points it calls in ``required_methods``.
"""
import abc
import contextlib
import dataclasses
import numbers
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted, check_memory

from ..datasets import PatchSet
from ..utils import check_images
from ..utils._fingerprint import model_fingerprint

__all__ = ["BaseSelector", "PixelSelector", "Support"]

_UNITS = ("patch", "image")
_REDUCTIONS = ("mean", "sum", "max")
_DEFAULT_BATCH_SIZE = 16


@dataclasses.dataclass(frozen=True)
class Support:
    """What a selector chose: the candidates to annotate, best first.

    Attributes
    ----------
    indices : ndarray of int, shape (n,)
        Candidate indices: positions in the pool's patches (``unit="patch"``) or image
        indices (``unit="image"``).
    coords : ndarray of int, shape (n, 3)
        Their ``(pool_image_index, row, col)``; with ``unit="image"`` row = col = 0.
    scores : ndarray, shape (n, ...)
        Their rows of the selector's ``scores_``.
    patches : PatchSet
        The patches whose masks the oracle reveals: the chosen patches, or every pool patch
        of the chosen images (``unit="image"``).
    """

    indices: np.ndarray
    coords: np.ndarray
    scores: np.ndarray
    patches: PatchSet


def _cached_scores(selector, fingerprint, pool, estimator):
    """Selection scores of every candidate; cached by ``fingerprint``, not ``estimator``.

    Scores do not depend on the budget, so one scoring pass serves every shot count.
    """
    return selector._score_pool(pool, estimator)


def _check_positive_int_or_none(value, name):
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)
                              or value < 1):
        raise ValueError(f"{name} must be None or a positive int, got {value!r}")


class BaseSelector(abc.ABC, BaseEstimator):
    """Base class of the selection strategies: the contract every selector follows.

    A new selector subclasses this class (or :class:`PixelSelector` for per-pixel scores),
    stores its parameters in ``__init__`` (scikit-learn rules: keyword parameters, no
    logic) and implements:

    ``_score_pool(self, pool, estimator) -> ndarray``
        Scores of every candidate of ``pool`` (a :class:`~kwtl.datasets.PatchSet` of uint8
        patches; never empty), first axis = candidates: ``len(pool)`` for
        ``unit="patch"``, ``len(pool.arrays)`` for ``unit="image"``. 1-D float scores are
        ranked largest first; a whole-pool selector may return rows (e.g. features) and
        override ``_choose``. Called under ``torch.no_grad()`` only by the base class, after
        the parameters and the model were checked.

    and may override:

    ``_choose(self, scores, n) -> ndarray of intp, shape (n,)``
        The ``n`` candidates to annotate, best first, from what ``_score_pool`` returned
        (``1 <= n <= len(scores)`` already checked). Default: stable top-``n`` (ties keep
        the lower index, NaN last). Budget-dependent choices (clustering into ``n``
        groups, coverage) override it; it must not call the model.
    ``_validate_params(self)``
        Check the selector's own parameters (raise ``ValueError`` naming the parameter);
        called before every use.

    Class attributes (declarations read by the base class):

    ``required_methods`` : tuple of str, default ``()``
        The :class:`~kwtl.selection.SelectionModel` entry points the selector calls
        (e.g. ``("patch_logits",)``). Empty means the model is optional (needed only for
        its ``patch_size``/``stride`` to cut images into candidates). May be a property.
    ``stochastic`` : bool, default False
        True when the scores are random draws (reproducible only with a seed). Wrappers
        make it a property of their inner selector.

    Every selector has the parameters ``unit`` (``"patch"`` or ``"image"``) and
    ``random_state``; a wrapper may expose its inner selector's ``unit`` as a property.

    Parameters
    ----------
    unit : {"patch", "image"}, default="patch"
        What a candidate is. ``"patch"``: every patch of the pool (the paper). ``"image"``:
        every source image; :meth:`select` returns image indices and a shot is one image.
    random_state : int, RandomState instance or None, default=None
        Seeds the stochastic selectors; deterministic selectors ignore it.

    Attributes
    ----------
    scores_ : ndarray of shape (n_candidates, ...)
        Scores of the last :meth:`select` / :meth:`select_support` call.

    Notes
    -----
    Candidates (argument ``X`` of :meth:`score` and :meth:`select`):

    * a :class:`~kwtl.datasets.PatchSet` of uint8 patches: its patches, in order;
    * a list (or object array) of 2-D images: converted with
      :func:`~kwtl.utils.check_images` and cut into the segmenter's grid,
      ``PatchSet.from_images(images, estimator.patch_size, estimator.stride)``;
    * an ndarray stack ``(n, H, W)``: n images, like everywhere in kwtl (converted with
      :func:`~kwtl.utils.check_images` and cut into the segmenter's grid like a list); to
      score a stack of ready-made patches whole, pass ``PatchSet.from_stack(stack)``.

    Patch height and width must be divisible by 8 (the network's three poolings).

    Examples
    --------
    A selector that prefers dark patches (it needs no model):

    >>> import numpy as np
    >>> from kwtl.selection import BaseSelector
    >>> class DarkestFirst(BaseSelector):
    ...     def _score_pool(self, pool, estimator):
    ...         return -np.array([p.mean() for _, p in pool.iter_batches(1)], dtype=float)
    >>> from kwtl.datasets import PatchSet
    >>> patches = np.stack([np.full((8, 8), v, np.uint8) for v in (50, 10, 90)])
    >>> DarkestFirst().select(PatchSet.from_stack(patches), 2, estimator=None).tolist()
    [1, 0]
    """

    #: SelectionModel entry points this selector calls (empty: the model is optional).
    required_methods = ()
    #: Whether scores are random draws (then they are reproducible only with a seed).
    stochastic = False

    def __init__(self, *, unit="patch", random_state=None):
        self.unit = unit
        self.random_state = random_state

    # ------------------------------------------------------------------ declarations
    @property
    def deterministic(self):
        """Whether the same pool and model always give the same scores (then they may be
        cached): a non-stochastic selector, or a stochastic one with a seed."""
        return not self.stochastic or self.random_state is not None

    # ------------------------------------------------------------------ the hooks
    @abc.abstractmethod
    def _score_pool(self, pool, estimator):
        """Scores of every candidate of ``pool`` (see the class docstring)."""

    def _choose(self, scores, n):
        """The ``n`` best candidates, best first: stable top-n, NaN last."""
        scores = np.asarray(scores, dtype=np.float64)
        if scores.ndim != 1:
            raise ValueError(
                f"{type(self).__name__} returned scores of shape {scores.shape}; rows other "
                "than one number per candidate need a _choose of the selector's own")
        order = np.argsort(-np.where(np.isnan(scores), -np.inf, scores), kind="stable")
        return order[: int(n)].astype(np.intp)

    def _validate_params(self):
        """Check the selector's own parameters (hook; called before every use)."""

    # ------------------------------------------------------------------ public API
    def score(self, X, estimator):
        """One score per candidate; higher means "annotate first".

        Parameters
        ----------
        X : PatchSet, list of 2-D images, or ndarray stack of images (n, H, W)
            The unlabelled pool (see the class notes).
        estimator : SelectionModel
            A fitted (or at least initialised) segmenter, e.g. an
            :class:`~kwtl.models.FCRNSegmenter`.

        Returns
        -------
        scores : ndarray of shape (n_candidates,), dtype float64
            ``n_candidates`` is the number of patches (``unit="patch"``) or of source
            images (``unit="image"``; an image without any patch in the pool, possible only
            for a subset :class:`~kwtl.datasets.PatchSet`, scores ``-inf``).
        """
        pool, estimator = self._prepare(X, estimator)
        with torch.no_grad():
            return self._score_pool(pool, estimator)

    def select(self, X, n, estimator):
        """Indices of the ``n`` candidates to annotate, best first.

        The candidates are ranked by :meth:`score`, largest first. Ties are broken
        deterministically by a stable sort: on equal scores the lower candidate index comes
        first. NaN scores (only possible with a callable reduction) rank last.

        Parameters
        ----------
        X : PatchSet, list of 2-D images, or ndarray stack of images (n, H, W)
            The unlabelled pool (see the class notes).
        n : int
            Number of candidates to select, ``1 <= n <= n_candidates``.
        estimator : SelectionModel
            A fitted (or at least initialised) segmenter.

        Returns
        -------
        indices : ndarray of shape (n,), dtype intp
            Candidate indices: positions in the pool's patches (``unit="patch"``; use
            ``pool.coords[indices]`` for their ``(image, row, col)``) or image indices
            (``unit="image"``).

        Raises
        ------
        ValueError
            If ``n`` is not a positive integer, exceeds the number of candidates, the pool
            is empty, or a parameter is invalid.
        sklearn.exceptions.NotFittedError
            If the segmenter is not initialised.

        Notes
        -----
        Sets ``scores_``, the float64 scores of all candidates (as returned by
        :meth:`score`), on the selector.
        """
        pool, estimator = self._prepare(X, estimator)
        self._check_n(n, self._n_candidates(pool))
        with torch.no_grad():
            scores = self._score_pool(pool, estimator)
        self.scores_ = scores
        return self.rank(scores, n)

    def rank(self, scores, n):
        """The ``n`` best candidates of a score vector, best first (as :meth:`select`).

        Ties keep the lower index first (stable sort); NaN ranks last. Useful with scores
        computed once (e.g. cached) and several budgets ``n``.

        Examples
        --------
        >>> from kwtl.selection import RandomSelector
        >>> RandomSelector().rank([0.2, 0.9, 0.2, float("nan")], 3).tolist()
        [1, 0, 2]
        """
        self._check_n(n, len(scores))
        return np.asarray(self._choose(scores, int(n)), dtype=np.intp)

    def budget(self, pool, n_shots, patches_per_shot="auto"):
        """Number of candidates that ``n_shots`` shots buy on ``pool``.

        The paper's rule: a shot is ``patches_per_shot`` patches (its P_t); ``"auto"`` is
        the mean number of candidate patches per pool image (at least 1), so a shot costs
        about one image's worth of patches. With ``unit="image"`` a shot is one image.

        Parameters
        ----------
        pool : PatchSet
            The candidate patches (``pool.arrays`` are the pool images).
        n_shots : int
        patches_per_shot : int or "auto", default="auto"

        Returns
        -------
        n : int

        Raises
        ------
        ValueError
            If the budget is not positive or exceeds the number of candidates.

        Examples
        --------
        >>> import numpy as np
        >>> from kwtl.datasets import PatchSet
        >>> from kwtl.selection import RandomSelector
        >>> pool = PatchSet.from_images([np.zeros((32, 32), np.uint8)] * 2, 16, 16)
        >>> RandomSelector().budget(pool, 1), RandomSelector().budget(pool, 3, 2)
        (4, 6)
        >>> RandomSelector(unit="image").budget(pool, 2)
        2
        """
        self._validate_common()
        if isinstance(n_shots, bool) or not isinstance(n_shots, numbers.Integral) or n_shots < 1:
            raise ValueError(f"n_shots must be a positive integer, got {n_shots!r}")
        pps = patches_per_shot
        if not (pps == "auto" or (isinstance(pps, numbers.Integral) and not isinstance(pps, bool)
                                  and pps >= 1)):
            raise ValueError(f"patches_per_shot must be a positive integer or 'auto', got {pps!r}")
        n = self._budget_size(len(pool), len(pool.arrays), n_shots, pps)
        available = self._n_candidates(pool)
        if n > available:
            if self.unit == "image":
                budget, what, fix = f"n_shots={n_shots}", "pool images", "lower n_shots"
            else:
                budget = f"n_shots={n_shots} x patches_per_shot={pps!r} = {n}"
                what = "candidate patches"
                fix = "lower n_shots or patches_per_shot, or use a smaller stride"
            raise ValueError(f"more shots than candidates: the budget {budget} is larger than "
                             f"the pool, which has only {available} {what}; {fix}")
        return n

    def _budget_size(self, n_candidates, n_images, n_shots, patches_per_shot):
        """The budget rule alone (validated inputs, no check against the pool)."""
        if self.unit == "image":
            return int(n_shots)
        if patches_per_shot == "auto":
            return int(n_shots) * max(1, int(round(n_candidates / max(1, n_images))))
        return int(n_shots) * int(patches_per_shot)

    def select_support(self, X, estimator, n_shots, patches_per_shot="auto", memory=None):
        """Choose what to annotate for a budget of ``n_shots`` (the method's selection step).

        Scores every candidate (from ``memory`` when the selector is
        :attr:`deterministic`: one scoring pass serves every budget), warns when all
        scores tie, sets ``scores_``, chooses :meth:`budget` candidates and expands
        chosen images into their patches (``unit="image"``).

        Parameters
        ----------
        X : PatchSet, list of 2-D images, or ndarray stack of images (n, H, W)
            The unlabelled pool (see the class notes).
        estimator : SelectionModel
            The (PLFT) model the scores are computed with.
        n_shots : int
        patches_per_shot : int or "auto", default="auto"
            See :meth:`budget`.
        memory : None, str or joblib.Memory, default=None
            Cache of the scores, keyed by the selector's parameters, the model's weights and
            the pool.

        Returns
        -------
        support : Support
        """
        pool, estimator = self._prepare(X, estimator)
        n = self.budget(pool, n_shots, patches_per_shot)
        scores = self._scores(pool, estimator, memory)
        self._warn_if_tied(scores)
        self.scores_ = scores
        chosen = self.rank(scores, n)
        if self.unit == "image":
            patches = pool.subset(np.flatnonzero(np.isin(pool.coords[:, 0], chosen)))
            coords = np.column_stack([chosen, np.zeros((len(chosen), 2), dtype=np.int64)])
        else:
            patches = pool.subset(chosen)
            coords = pool.coords[chosen]
        return Support(indices=chosen, coords=np.asarray(coords, dtype=np.int64),
                       scores=np.asarray(scores)[chosen], patches=patches)

    # ------------------------------------------------------------------ internals
    def _scores(self, pool, estimator, memory):
        with torch.no_grad():
            if memory is None or not self.deterministic:
                return self._score_pool(pool, estimator)  # an unseeded draw must not be reused
            fingerprint = None if estimator is None else model_fingerprint(estimator)
            cached = check_memory(memory).cache(_cached_scores, ignore=["estimator"])
            return cached(clone(self), fingerprint, pool, estimator)  # params, not scores_

    def _warn_if_tied(self, scores):
        scores = np.asarray(scores)
        if self.stochastic or scores.ndim != 1 or len(scores) < 2:
            return
        if np.ptp(scores) <= 1e-12 * max(1.0, float(np.max(np.abs(scores)))):
            warnings.warn(
                f"all {len(scores)} candidates have the same {type(self).__name__} score, "
                "so the selection is just the first candidates; the PLFT model is probably "
                "untrained (more PLFT steps, e.g. more pl_epochs or a smaller pl_batch_size)",
                RuntimeWarning, stacklevel=3)

    def _prepare(self, X, estimator):
        self._validate_common()
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

    def _validate_common(self):
        if self.unit not in _UNITS:
            raise ValueError(f"unit must be one of {_UNITS}, got {self.unit!r}")

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


class PixelSelector(BaseSelector):
    """Base class of selectors that score pixels: stream, score, reduce.

    A subclass implements one hook, ``_pixel_scores(self, patches, estimator)``: a chunk of
    uint8 patches ``(k, h, w)`` → per-pixel scores, a ``torch.Tensor`` ``(k, h, w)`` on the
    model's device. The base streams the pool ``batch_size`` patches at a time (only the
    current chunk and its augmented copies are ever materialised, so memory does not grow
    with the pool beyond the score vector), reduces each patch's pixels to one score on
    the device (``reduction``), aggregates patches into images (``unit="image"``), and
    gives :meth:`pixel_scores` for free. ``_scoring_context(estimator)`` may wrap one
    streaming pass (e.g. seeding of random draws).

    Parameters
    ----------
    unit : {"patch", "image"}, default="patch"
        What a candidate is. ``"patch"``: every patch of the pool (the paper). ``"image"``:
        every source image; an image's score aggregates the scores of all its patches in the
        pool (see ``reduction``), and :meth:`select` returns image indices.
    reduction : {"mean", "sum", "max"} or callable, default="mean"
        How the per-pixel scores of a patch become one score.

        * ``"mean"`` / ``"sum"`` / ``"max"`` over the patch's pixels (computed on the
          segmenter's device). With ``unit="image"`` the image score is the mean of its
          patch means, the sum of its patch sums, or the max of its patch maxima
          respectively (overlapping pixels count once per patch that contains them).
        * A callable ``f(pixel_scores) -> scores`` receives a float32 ndarray of shape
          ``(k, h, w)`` (on the CPU) with the per-pixel scores of ``k`` candidate patches and
          must return ``k`` numbers, one per patch. It is called once per chunk, so it must
          treat patches independently. With ``unit="image"`` the image score is the **mean**
          of the callable's scores of the image's patches.
    batch_size : int or None, default=None
        Patches per scoring chunk; memory grows with it, not with the pool. None uses the
        segmenter's ``inference_batch_size``. The segmenter forwards each chunk in pieces of
        its own ``inference_batch_size``.
    random_state : int, RandomState instance or None, default=None
        Seeds the stochastic selectors (dropout masks); deterministic selectors ignore it.
    """

    required_methods = ("patch_logits",)

    def __init__(self, *, unit="patch", reduction="mean", batch_size=None, random_state=None):
        self.unit = unit
        self.reduction = reduction
        self.batch_size = batch_size
        self.random_state = random_state

    @abc.abstractmethod
    def _pixel_scores(self, patches, estimator):
        """Per-pixel scores of a chunk (the one hook of a pixel selector).

        Parameters
        ----------
        patches : ndarray of shape (k, h, w), dtype uint8
        estimator : SelectionModel

        Returns
        -------
        torch.Tensor of shape (k, h, w), floating, on the segmenter's device
        """

    def _scoring_context(self, estimator):
        """Context around one streaming pass (hook; e.g. seeding of random draws)."""
        return contextlib.nullcontext()

    def pixel_scores(self, X, estimator, indices=None):
        """Per-pixel score maps of candidate patches.

        Always patch-level, whatever ``unit``. The maps are those that :meth:`score` reduces
        (e.g. for ``reduction="mean"`` and ``unit="patch"``,
        ``pixel_scores(X, est).mean(axis=(1, 2))`` equals ``score(X, est)`` up to float32
        rounding; for the stochastic :class:`MCDropoutSelector` only with the same
        ``indices`` chunking, i.e. all patches).

        Parameters
        ----------
        X : PatchSet, list of 2-D images, or ndarray stack of images (n, H, W)
            The unlabelled pool (see the class notes).
        estimator : FCRNSegmenter
            A fitted (or at least initialised) segmenter.
        indices : array-like of int or None, default=None
            Patch indices into the pool; None means all patches.

        Returns
        -------
        maps : ndarray of shape (k, h, w), dtype float32
            The output is materialised: ``4 · k · h · w`` bytes (e.g. 256 MiB for 1,000
            patches of 256²), so pass ``indices`` for large pools. Computation streams in
            chunks of ``batch_size``.
        """
        self._validate_common()
        self._validate_params()
        estimator = self._check_estimator(estimator, X)
        pool = self._make_pool(X, estimator)
        if indices is None:
            indices = np.arange(len(pool))
        else:
            indices = np.asarray(indices)
            if indices.ndim != 1 or (indices.size and not np.issubdtype(indices.dtype, np.integer)):
                raise ValueError("indices must be a 1-D array of integer patch indices")
            indices = indices.astype(np.intp)
            bad = (indices < 0) | (indices >= len(pool))
            if bad.any():
                raise ValueError(
                    f"patch index {int(indices[bad][0])} is out of range for a pool of "
                    f"{len(pool)} patches"
                )
        ph, pw = pool.patch_size
        out = np.empty((len(indices), ph, pw), dtype=np.float32)
        step = self._chunk_size(estimator)
        with torch.no_grad(), self._scoring_context(estimator):
            for start in range(0, len(indices), step):
                idx = indices[start : start + step]
                maps = self._pixel_scores(self._as_batch(pool[idx]), estimator)
                out[start : start + len(idx)] = maps.detach().to("cpu", torch.float32).numpy()
        return out

    def _validate_common(self):
        super()._validate_common()
        _check_reduction(self.reduction)
        _check_positive_int_or_none(self.batch_size, "batch_size")

    def _chunk_size(self, estimator):
        if self.batch_size is not None:
            return int(self.batch_size)
        return int(getattr(estimator, "inference_batch_size", _DEFAULT_BATCH_SIZE) or 1)

    @staticmethod
    def _as_batch(patches):
        patches = np.asarray(patches)
        if patches.dtype != np.uint8 or patches.ndim != 3:
            raise ValueError(
                f"candidate patches must be 2-D uint8 grey patches, got dtype {patches.dtype} "
                f"and batch shape {patches.shape}; build the PatchSet from uint8 images "
                "(kwtl.utils.check_images)"
            )
        return patches

    def _reduce(self, maps):
        """Per-pixel maps (k, h, w) tensor → float64 ndarray (k,), reduced on the device."""
        k = maps.shape[0]
        if callable(self.reduction):
            values = np.asarray(self.reduction(maps.detach().to("cpu", torch.float32).numpy()),
                                dtype=np.float64)
            if values.shape != (k,):
                raise ValueError(
                    f"the reduction callable must return one value per patch, shape ({k},), "
                    f"got shape {values.shape}"
                )
            return values
        flat = maps.reshape(k, -1)
        if self.reduction == "mean":
            reduced = flat.mean(dim=1)
        elif self.reduction == "sum":
            reduced = flat.sum(dim=1)
        else:
            reduced = flat.amax(dim=1)
        return reduced.detach().to("cpu", torch.float64).numpy()

    def _score_pool(self, pool, estimator):
        step = self._chunk_size(estimator)
        scores = np.empty(len(pool), dtype=np.float64)
        with torch.no_grad(), self._scoring_context(estimator):
            for idx, batch in pool.iter_batches(step):
                scores[idx] = self._reduce(self._pixel_scores(self._as_batch(batch), estimator))
        return self._per_unit(scores, pool)

    def _per_unit(self, patch_scores, pool):
        """Patch scores → candidate scores: themselves (``unit="patch"``) or their images'
        aggregates (``unit="image"``, see :func:`aggregate_images`)."""
        if self.unit == "patch":
            return patch_scores
        return aggregate_images(patch_scores, pool.coords[:, 0], len(pool.arrays),
                                "mean" if callable(self.reduction) else self.reduction)


def aggregate_images(values, owners, n_images, reduction):
    """Patch scores → image scores (``unit="image"``): the mean of the patch scores
    (``reduction="mean"`` or a callable's scores), the sum of the patch sums, or the max of the
    patch maxima; an image without patches scores ``-inf``.

    Parameters
    ----------
    values : ndarray of shape (n_patches,)
    owners : ndarray of shape (n_patches,) of int
        Image index of each patch.
    n_images : int
    reduction : {"mean", "sum", "max"}

    Returns
    -------
    ndarray of shape (n_images,), float64

    Examples
    --------
    >>> import numpy as np
    >>> aggregate_images(np.array([1.0, 3.0, 5.0]), np.array([0, 0, 2]), 3, "mean").tolist()
    [2.0, -inf, 5.0]
    """
    values = np.asarray(values, dtype=np.float64)
    owners = np.asarray(owners, dtype=np.intp)
    counts = np.bincount(owners, minlength=n_images)
    if reduction == "max":
        agg = np.full(n_images, -np.inf)
        np.maximum.at(agg, owners, values)
        return agg
    agg = np.zeros(n_images)
    np.add.at(agg, owners, values)
    if reduction == "sum":
        return np.where(counts > 0, agg, -np.inf)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, agg / np.maximum(counts, 1), -np.inf)


def _check_reduction(reduction):
    if not (callable(reduction) or reduction in _REDUCTIONS):
        raise ValueError(f"reduction must be one of {_REDUCTIONS} or a callable, got {reduction!r}")
