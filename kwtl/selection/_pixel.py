"""Pixel-scoring selectors: stream the pool, score pixels, reduce each patch to a score."""

import abc
import contextlib

import numpy as np
import torch

from ..utils.validation import POSITIVE_INT, Options
from ._base import BaseSelector

__all__ = ["PixelSelector", "aggregate_images"]

_REDUCTIONS = ("mean", "sum", "max")
_DEFAULT_BATCH_SIZE = 16


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
    #: A candidate's score depends on its own image only (scores may be computed and cached
    #: image by image).
    separable = True
    _parameter_constraints = {
        **BaseSelector._parameter_constraints,
        "reduction": [Options(_REDUCTIONS), "callable"],
        "batch_size": [None, POSITIVE_INT],
    }

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
            values = np.asarray(
                self.reduction(maps.detach().to("cpu", torch.float32).numpy()), dtype=np.float64
            )
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
        return aggregate_images(
            patch_scores,
            pool.coords[:, 0],
            len(pool.arrays),
            "mean" if callable(self.reduction) else self.reduction,
        )


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
