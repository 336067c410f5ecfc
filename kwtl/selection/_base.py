"""Common machinery of the selectors: candidates, streaming, reduction, top-n selection.

A selector *scores* every candidate of an unlabelled pool (higher = annotate first) and
*selects* the ``n`` best. Scoring and selecting are separate (as in scikit-activeml), so a
score vector can be inspected, plotted or combined before anything is chosen.

Subclasses implement one hook, :meth:`BaseSelector._pixel_scores`, which maps a chunk of
uint8 patches to per-pixel scores on the segmenter's device; the base class takes care of
validation, streaming the pool in chunks, reducing pixels to one score per candidate (on
the device), aggregating patches into images, and deterministic top-n selection.
"""
import contextlib
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from ..datasets import PatchSet
from ..utils import check_images

__all__ = ["BaseSelector"]

_UNITS = ("patch", "image")
_REDUCTIONS = ("mean", "sum", "max")
_DEFAULT_BATCH_SIZE = 16


class BaseSelector(BaseEstimator):
    """Base class of the selection strategies (not used directly).

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
        Seeds the stochastic selectors (random draws, dropout masks); deterministic selectors
        ignore it.

    Notes
    -----
    Candidates (argument ``X`` of :meth:`score`, :meth:`select`, :meth:`pixel_scores`):

    * a :class:`~kwtl.datasets.PatchSet` of uint8 patches: its patches, in order;
    * a list (or object array) of 2-D images: converted with
      :func:`~kwtl.utils.check_images` and cut into the segmenter's grid,
      ``PatchSet.from_images(images, estimator.patch_size, estimator.stride)``;
    * an ndarray stack ``(n, H, W)``: n images, like everywhere in kwtl (converted with
      :func:`~kwtl.utils.check_images` and cut into the segmenter's grid like a list); to
      score a stack of ready-made patches whole, pass ``PatchSet.from_stack(stack)``.

    Patch height and width must be divisible by 8 (the network's three poolings).

    Scoring streams the pool ``batch_size`` patches at a time: only the current chunk (and
    its augmented copies) is ever materialised, so memory does not grow with the pool beyond
    the score vector.
    """

    #: Whether scoring runs the segmenter (False for :class:`RandomSelector`).
    _uses_network = True
    #: Whether scores are random draws (then they are reproducible only with a seed).
    _stochastic = False

    def __init__(self, *, unit="patch", reduction="mean", batch_size=None, random_state=None):
        self.unit = unit
        self.reduction = reduction
        self.batch_size = batch_size
        self.random_state = random_state

    # ------------------------------------------------------------------ public API
    def score(self, X, estimator):
        """One score per candidate; higher means "annotate first".

        Parameters
        ----------
        X : PatchSet, list of 2-D images, or ndarray stack of images (n, H, W)
            The unlabelled pool (see the class notes).
        estimator : FCRNSegmenter
            A fitted (or at least initialised) segmenter.

        Returns
        -------
        scores : ndarray of shape (n_candidates,), dtype float64
            ``n_candidates`` is the number of patches (``unit="patch"``) or of source
            images (``unit="image"``; an image without any patch in the pool, possible only
            for a subset :class:`~kwtl.datasets.PatchSet`, scores ``-inf``).
        """
        self._validate_common()
        self._validate_params()
        estimator = self._check_estimator(estimator, X)
        pool = self._make_pool(X, estimator)
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
        estimator : FCRNSegmenter
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
        self._validate_common()
        self._validate_params()
        estimator = self._check_estimator(estimator, X)
        pool = self._make_pool(X, estimator)
        self._check_n(n, self._n_candidates(pool))
        scores = self._score_pool(pool, estimator)
        self.scores_ = scores
        return self.rank(scores, n)

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
        scores = np.asarray(scores, dtype=np.float64)
        self._check_n(n, len(scores))
        order = np.argsort(-np.where(np.isnan(scores), -np.inf, scores), kind="stable")
        return order[: int(n)].astype(np.intp)

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

    # ------------------------------------------------------------------ hooks
    def _pixel_scores(self, patches, estimator):
        """Per-pixel scores of a chunk (the one hook of a selector).

        Parameters
        ----------
        patches : ndarray of shape (k, h, w), dtype uint8
        estimator : fitted segmenter

        Returns
        -------
        torch.Tensor of shape (k, h, w), floating, on the segmenter's device
        """
        raise NotImplementedError

    def _validate_params(self):
        """Check the selector's own parameters (hook; called before every use)."""

    def _scoring_context(self, estimator):
        """Context around one streaming pass (hook; e.g. seeding of random draws)."""
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ internals
    def _validate_common(self):
        if self.unit not in _UNITS:
            raise ValueError(f"unit must be one of {_UNITS}, got {self.unit!r}")
        if not (callable(self.reduction) or self.reduction in _REDUCTIONS):
            raise ValueError(
                f"reduction must be one of {_REDUCTIONS} or a callable, got {self.reduction!r}"
            )
        if self.batch_size is not None:
            if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, numbers.Integral) \
                    or self.batch_size < 1:
                raise ValueError(f"batch_size must be None or a positive int, got {self.batch_size!r}")

    def _check_estimator(self, estimator, X):
        if not self._uses_network:
            if estimator is None and not isinstance(X, PatchSet):
                raise ValueError(
                    "an estimator (for its patch_size and stride) is needed to cut images "
                    "into candidate patches; pass the segmenter, or a PatchSet (e.g. "
                    "PatchSet.from_stack(patches) for ready-made patches)"
                )
            return estimator
        if estimator is None or not hasattr(estimator, "patch_logits"):
            raise TypeError(
                f"estimator must be a segmenter with a patch_logits method (e.g. "
                f"FCRNSegmenter), got {type(estimator).__name__}"
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
        if self.unit == "patch":
            scores = np.empty(len(pool), dtype=np.float64)
        else:
            n_images = len(pool.arrays)
            agg = np.full(n_images, -np.inf if self.reduction == "max" else 0.0)
            counts = np.zeros(n_images, dtype=np.int64)
        with torch.no_grad(), self._scoring_context(estimator):
            for idx, batch in pool.iter_batches(step):
                values = self._reduce(self._pixel_scores(self._as_batch(batch), estimator))
                if self.unit == "patch":
                    scores[idx] = values
                    continue
                owners = pool.coords[idx, 0]
                np.add.at(counts, owners, 1)
                if self.reduction == "max":
                    np.maximum.at(agg, owners, values)
                else:
                    np.add.at(agg, owners, values)
        if self.unit == "patch":
            return scores
        if self.reduction == "max":
            return agg
        if self.reduction == "sum":
            return np.where(counts > 0, agg, -np.inf)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, agg / np.maximum(counts, 1), -np.inf)
