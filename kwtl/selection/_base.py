"""The selector contract: everything about choosing candidates lives here.

A selector *scores* every candidate of an unlabelled pool (higher = annotate first) and
*chooses* the ``n`` best. Scoring and choosing are separate (as in scikit-activeml), so a
score vector can be inspected, plotted, cached or combined before anything is chosen.

* :class:`BaseSelector` (an ABC) owns the budget rule (:meth:`~BaseSelector.budget`), the
  image-unit expansion, score caching (allowed when :attr:`~BaseSelector.deterministic`;
  image by image for :attr:`~BaseSelector.separable` selectors, so an interrupted run
  resumes), the tied-score warning, ``scores_`` and the final choice, optionally without
  overlapping windows (:meth:`~BaseSelector.choose`; :meth:`~BaseSelector.select_support`
  is the one call of :class:`~kwtl.FewShotSegmentation` and ``kwtl select``).
  A subclass implements one hook, ``_score_pool(pool, estimator)``: whole-pool selectors
  (clustering, coverage) and wrappers (a gate, a mixture) implement it directly.
* :class:`~kwtl.selection.PixelSelector` implements ``_score_pool`` by streaming the pool in chunks through
  one per-pixel hook, ``_pixel_scores(patches, estimator)``, and reducing each patch's
  pixels to one score on the segmenter's device.

What a selector may ask of the model is the :class:`~kwtl.selection.SelectionModel`
protocol; a selector lists the entry points it calls in ``required_methods``.
"""

import abc
import numbers
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator

from ..utils.validation import Options, validate_params
from ._choice import Support, choose_non_overlapping
from ._inputs import PoolInputs
from ._scoring import score_candidates

__all__ = ["BaseSelector"]

_UNITS = ("patch", "image")


class BaseSelector(PoolInputs, abc.ABC, BaseEstimator):
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
        groups, coverage) override it and declare ``budget_dependent = True``; it must not
        call the model.

    Parameters are declared, scikit-learn style, in the class attribute
    ``_parameter_constraints`` (extend the parent's dict); the one validation hook,
    ``_validate_params(self)``, checks them before every use, and a subclass overrides it
    (calling ``super()``) only for rules that span parameters or nested selectors.

    Class attributes (declarations read by the base class):

    ``required_methods`` : tuple of str, default ``()``
        The :class:`~kwtl.selection.SelectionModel` entry points the selector calls
        (e.g. ``("patch_logits",)``). Empty means the model is optional (needed only for
        its ``patch_size``/``stride`` to cut images into candidates). May be a property.
    ``stochastic`` : bool, default False
        True when the scores are random draws (reproducible only with a seed). Wrappers
        make it a property of their inner selector.
    ``budget_dependent`` : bool, default False
        True when ``_choose`` picks for a budget ``n`` something other than the first ``n``
        of one ranking; then :meth:`choose` keeps that choice as it is (no non-overlap
        filtering of a ranking).
    ``separable`` : bool, default False
        True when a candidate's score depends only on its own source image (the pixel
        selectors); then cached scores are kept image by image.

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
    #: Whether ``_choose`` depends on the budget (not the first n of one ranking).
    budget_dependent = False
    #: Whether a candidate's score depends on its own source image only.
    separable = False
    _parameter_constraints = {
        "unit": [Options(_UNITS)],
        "random_state": [None, numbers.Integral, np.random.RandomState],
    }

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
                "than one number per candidate need a _choose of the selector's own"
            )
        order = np.argsort(-np.where(np.isnan(scores), -np.inf, scores), kind="stable")
        return order[: int(n)].astype(np.intp)

    def _validate_params(self):
        """The one validation hook: the parameters against ``_parameter_constraints``.

        Subclasses extend the constraints and override this only for rules that span
        parameters, calling ``super()._validate_params()`` first.
        """
        validate_params(
            type(self).__name__, self.get_params(deep=False), self._parameter_constraints
        )

    # ------------------------------------------------------------------ public API
    def score(self, X, estimator, *, memory=None, progress=None, executor=None):
        """One score per candidate; higher means "annotate first".

        Parameters
        ----------
        X : PatchSet, list of 2-D images, or ndarray stack of images (n, H, W)
            The unlabelled pool (see the class notes).
        estimator : SelectionModel
            A fitted (or at least initialised) segmenter, e.g. an
            :class:`~kwtl.models.FCRNSegmenter`.
        memory : None, str, path-like or joblib.Memory, default=None
            Cache of the scores, keyed by the selector's parameters, the model's weights
            and the pool (image by image for a :attr:`separable` selector, so a killed run
            keeps the images it scored). Used only when the selector is
            :attr:`deterministic`.
        progress : bool, callable or None, default=None
            Progress by image (a :attr:`separable` selector scores image by image then):
            True for a tqdm bar, or ``progress(done, total)``.
        executor : object or None, default=None
            Scores the images of a :attr:`separable` selector elsewhere: an object with
            ``submit(function, *args)`` returning a future with ``result()`` (e.g. the lab
            workflow's wrapper of a Dask client); the scores are those of a plain run.

        Returns
        -------
        scores : ndarray of shape (n_candidates,), dtype float64
            ``n_candidates`` is the number of patches (``unit="patch"``) or of source
            images (``unit="image"``; an image without any patch in the pool, possible only
            for a subset :class:`~kwtl.datasets.PatchSet`, scores ``-inf``).
        """
        pool, estimator = self._prepare(X, estimator)
        return self._scores(pool, estimator, memory, progress, executor)

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

    def choose(self, scores, n, pool=None, *, non_overlapping=False, exclude=None):
        """The ``n`` candidates to annotate, best first, from the scores of ``pool``.

        Parameters
        ----------
        scores : ndarray
            What :meth:`score` returned for ``pool``.
        n : int
        pool : PatchSet or None, default=None
            The candidates (needed with ``non_overlapping``).
        non_overlapping : bool, default=False
            No two chosen patches overlap: the best candidates of the ranking whose windows
            overlap no better chosen one (:func:`~kwtl.selection.choose_non_overlapping`),
            so an annotator never draws the same pixel twice. It applies to patches of a
            selector that ranks (not :attr:`budget_dependent`); fewer than ``n`` come back
            when the candidates run out.
        exclude : array-like of bool or None, default=None
            Candidates that must not be chosen (e.g. annotated in an earlier round).

        Returns
        -------
        indices : ndarray of intp
        """
        allowed = (
            np.arange(len(scores))
            if exclude is None
            else np.flatnonzero(~np.asarray(exclude, dtype=bool))
        )
        if non_overlapping and self.unit == "patch" and not self.budget_dependent:
            if pool is None:
                raise ValueError("non_overlapping needs the pool (the candidates' positions)")
            order = self.rank(scores, len(scores))
            if exclude is not None:
                order = order[np.isin(order, allowed)]
            return choose_non_overlapping(order, pool.coords, pool.patch_size, int(n))
        if exclude is None:
            return self.rank(scores, n)
        return allowed[self.rank(np.asarray(scores)[allowed], n)]

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
        self._validate_params()
        if isinstance(n_shots, bool) or not isinstance(n_shots, numbers.Integral) or n_shots < 1:
            raise ValueError(f"n_shots must be a positive integer, got {n_shots!r}")
        pps = patches_per_shot
        if not (
            pps == "auto"
            or (isinstance(pps, numbers.Integral) and not isinstance(pps, bool) and pps >= 1)
        ):
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
            raise ValueError(
                f"more shots than candidates: the budget {budget} is larger than "
                f"the pool, which has only {available} {what}; {fix}"
            )
        return n

    def _budget_size(self, n_candidates, n_images, n_shots, patches_per_shot):
        """The budget rule alone (validated inputs, no check against the pool)."""
        if self.unit == "image":
            return int(n_shots)
        if patches_per_shot == "auto":
            return int(n_shots) * max(1, int(round(n_candidates / max(1, n_images))))
        return int(n_shots) * int(patches_per_shot)

    def select_support(
        self,
        X,
        estimator,
        n_shots,
        patches_per_shot="auto",
        memory=None,
        *,
        non_overlapping=False,
        exclude=None,
        progress=None,
        executor=None,
    ):
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
        memory : None, str, path-like or joblib.Memory, default=None
            Cache of the scores (see :meth:`score`).
        non_overlapping : bool, default=False
            Chosen patches do not overlap (see :meth:`choose`).
        exclude : array-like of bool or None, default=None
            Candidates never chosen (see :meth:`choose`).
        progress, executor : default=None
            Progress and place of the scoring (see :meth:`score`).

        Returns
        -------
        support : Support
        """
        pool, estimator = self._prepare(X, estimator)
        n = self.budget(pool, n_shots, patches_per_shot)
        scores = self._scores(pool, estimator, memory, progress, executor)
        self._warn_if_tied(scores)
        self.scores_ = scores
        chosen = self.choose(scores, n, pool, non_overlapping=non_overlapping, exclude=exclude)
        if self.unit == "image":
            patches = pool.subset(np.flatnonzero(np.isin(pool.coords[:, 0], chosen)))
            coords = np.column_stack([chosen, np.zeros((len(chosen), 2), dtype=np.int64)])
        else:
            patches = pool.subset(chosen)
            coords = pool.coords[chosen]
        return Support(
            indices=chosen,
            coords=np.asarray(coords, dtype=np.int64),
            scores=np.asarray(scores)[chosen],
            patches=patches,
        )

    # ------------------------------------------------------------------ internals
    def _scores(self, pool, estimator, memory=None, progress=None, executor=None):
        """Scores of every candidate: one pass, or image by image (a separable selector
        with a cache, a progress report or an executor), from ``memory`` when allowed."""
        with torch.no_grad():
            return score_candidates(self, pool, estimator, memory, progress, executor)

    def _warn_if_tied(self, scores):
        scores = np.asarray(scores)
        if self.stochastic or scores.ndim != 1 or len(scores) < 2:
            return
        if np.ptp(scores) <= 1e-12 * max(1.0, float(np.max(np.abs(scores)))):
            warnings.warn(
                f"all {len(scores)} candidates have the same {type(self).__name__} score, "
                "so the selection is just the first candidates; the PLFT model is probably "
                "untrained (more PLFT steps, e.g. more pl_epochs or a smaller pl_batch_size)",
                RuntimeWarning,
                stacklevel=3,
            )
