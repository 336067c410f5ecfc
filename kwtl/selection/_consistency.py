"""The paper's selection score: prediction consistency under pixel-level augmentations."""

import numbers

import numpy as np
import torch
import torch.nn.functional as F

from ._augment import AUGMENTATIONS, autocontrast_lut
from ..utils.validation import Interval
from ._params import DENSE, OPEN_UNIT, POSITIVE_INT
from ._pixel import PixelSelector
from ._dense import DenseScoringMixin, box_reduce

__all__ = ["ConsistencySelector"]


class ConsistencySelector(DenseScoringMixin, PixelSelector):
    """Select the candidates whose predictions change most under augmentation.

    For a patch ``x`` with logit map ``z(x)`` (segmenter in eval mode: BatchNorm running
    statistics, no dropout), the reference mask is the thresholded clean prediction
    ``ŷ = 1[σ(z(x)) ≥ threshold]`` and the per-pixel score is

    ``s_ω(x) = Σ_a BCE(z(a(x))_ω, ŷ_ω)``,

    the unweighted binary cross-entropy (with logits) of each augmented prediction against
    ``ŷ``, summed over the augmentations ``a``. With the default ``reduction="mean"`` the
    candidate score is the mean over pixels — the paper's score; the least consistent
    candidates (largest scores) are selected first.

    Augmentations act on the 8-bit patch before normalisation, each separately, and
    reproduce Pillow exactly (see :mod:`kwtl.selection._augment`). The clean patch and its
    augmented copies go through one ``estimator.patch_logits`` call per chunk.

    Parameters
    ----------
    magnitude : float, default=1.3
        Enhancement factor of brightness and sharpness (the paper's 1.3 for TNBC, EM and
        ssTEM; the authors' code uses 1.7 for B5/B39). Auto-contrast ignores it.
    augmentations : sequence of str or callable, default=("autocontrast", "brightness", \
"sharpness")
        Names in :data:`~kwtl.selection.AUGMENTATIONS`, or callables
        ``f(batch_uint8 (k, h, w), magnitude) -> uint8 batch of the same shape``.
    threshold : float, default=0.5
        Probability threshold of the reference mask, in (0, 1).
    dense : bool or "auto", default=False
        ``False``: every candidate patch is scored on its own (the paper; exact).
        ``True``: dense scoring — the clean image and each augmented copy go through the
        network once per image (:meth:`~kwtl.models.FCRNSegmenter.image_logits`) and each
        candidate's score is read off the per-pixel map by box sums (see
        :mod:`kwtl.selection._dense`). ``"auto"``: dense when the candidates overlap (cover
        each pixel at least twice on average), per patch otherwise. In dense mode brightness
        is exact (pointwise), sharpness is exact except on the candidate's one-pixel border
        (Pillow leaves the border of a patch unsmoothed), and auto-contrast — a stretch of
        each patch's own grey range ``[lo, hi]`` — is applied to the whole image with the
        range of the candidate's group (below). A callable augmentation is applied to the
        whole image: exact if it is pointwise. :meth:`pixel_scores` always returns the exact
        per-patch maps.
    contrast_groups : int, default=4
        Dense mode only. The candidates of an image are grouped by their grey range
        ``(lo, hi)`` (k-means on the distinct ranges, weighted by their counts) into at most
        this many groups; each group costs one more forward pass per image, with the
        auto-contrast lookup table of the group's mean range (no pass when that table is the
        identity, e.g. for the range (0, 255)). When an image has no more distinct ranges
        than groups, every candidate's auto-contrast is exact.
    unit : {"patch", "image"}, default="patch"
    reduction : {"mean", "sum", "max"} or callable, default="mean"
    batch_size : int or None, default=None
    random_state : None, int or RandomState, default=None
        Unused (the score is deterministic); kept for a uniform API.
        See :class:`~kwtl.selection.PixelSelector` for the common parameters.

    Attributes
    ----------
    scores_ : ndarray of shape (n_candidates,)
        Scores of the last :meth:`select` call.

    Examples
    --------
    >>> import numpy as np
    >>> from kwtl.models import FCRNSegmenter
    >>> from kwtl.selection import ConsistencySelector
    >>> seg = FCRNSegmenter(module__width=4, patch_size=16, stride=16, precision="fp32",
    ...                     random_state=0).initialize()
    >>> images = [np.random.default_rng(0).integers(0, 256, (32, 48), dtype=np.uint8)]
    >>> selector = ConsistencySelector(magnitude=1.3)
    >>> selector.score(images, seg).shape
    (6,)
    >>> selector.select(images, 2, seg).shape
    (2,)
    """

    def __init__(
        self,
        magnitude=1.3,
        augmentations=("autocontrast", "brightness", "sharpness"),
        threshold=0.5,
        *,
        dense=False,
        contrast_groups=4,
        unit="patch",
        reduction="mean",
        batch_size=None,
        random_state=None,
    ):
        super().__init__(
            unit=unit, reduction=reduction, batch_size=batch_size, random_state=random_state
        )
        self.magnitude = magnitude
        self.augmentations = augmentations
        self.threshold = threshold
        self.dense = dense
        self.contrast_groups = contrast_groups

    _parameter_constraints = {
        **PixelSelector._parameter_constraints,
        "magnitude": [Interval(numbers.Real, 0, None, closed="neither", finite=True)],
        "threshold": [OPEN_UNIT],
        "dense": DENSE,
        "contrast_groups": [POSITIVE_INT],
    }

    def _validate_params(self):
        super()._validate_params()
        self._augmentation_functions()  # names or callables

    def _augmentation_functions(self):
        augmentations = self.augmentations
        if isinstance(augmentations, str) or callable(augmentations):
            augmentations = (augmentations,)
        try:
            augmentations = list(augmentations)
        except TypeError:
            raise ValueError(
                f"augmentations must be a sequence of names or callables, got {self.augmentations!r}"
            ) from None
        if not augmentations:
            raise ValueError("augmentations must name at least one augmentation")
        functions = []
        for aug in augmentations:
            if callable(aug):
                functions.append(aug)
            elif isinstance(aug, str) and aug in AUGMENTATIONS:
                functions.append(AUGMENTATIONS[aug])
            else:
                raise ValueError(
                    f"unknown augmentation {aug!r}; known augmentations are "
                    f"{sorted(AUGMENTATIONS)} (or pass a callable f(batch, magnitude))"
                )
        return functions

    def _pixel_scores(self, patches, estimator):
        k = len(patches)
        copies = [patches]
        for fn in self._augmentation_functions():
            out = np.asarray(fn(patches, float(self.magnitude)))
            if out.shape != patches.shape or out.dtype != np.uint8:
                raise ValueError(
                    f"augmentation {fn!r} must return a uint8 batch of shape {patches.shape}, "
                    f"got {out.dtype} {out.shape}"
                )
            copies.append(out)
        logits = estimator.patch_logits(np.concatenate(copies))
        clean = logits[:k]
        augmented = logits[k:].reshape((len(copies) - 1,) + tuple(clean.shape))
        reference = (torch.sigmoid(clean) >= float(self.threshold)).to(augmented.dtype)
        loss = F.binary_cross_entropy_with_logits(
            augmented, reference.expand_as(augmented), reduction="none"
        )
        return loss.sum(dim=0)

    # ------------------------------------------------------------------ dense mode
    def _dense_maps(self, image, corners, patch_size, estimator):
        functions = self._augmentation_functions()
        magnitude = float(self.magnitude)
        is_contrast = [fn is AUGMENTATIONS["autocontrast"] for fn in functions]
        copies = [image]
        for fn, contrast in zip(functions, is_contrast):
            if contrast:
                continue
            out = np.asarray(fn(image[None], magnitude))
            if out.shape != (1,) + image.shape or out.dtype != np.uint8:
                raise ValueError(
                    f"augmentation {fn!r} must return a uint8 batch of shape "
                    f"{(1,) + image.shape}, got {out.dtype} {out.shape}"
                )
            copies.append(out[0])
        n_plain = len(copies)
        groups = None
        identity = np.arange(256, dtype=np.uint8)
        contrast_copy = []  # row of each group's logits; 0 (the clean image) for an identity
        if any(is_contrast):
            groups, ranges = _contrast_groups(image, corners, patch_size, int(self.contrast_groups))
            for lut in autocontrast_lut(ranges[:, 0], ranges[:, 1]):
                if np.array_equal(lut, identity):  # e.g. range (0, 255): no forward pass
                    contrast_copy.append(0)
                else:
                    contrast_copy.append(len(copies))
                    copies.append(lut[image])
        logits = estimator.image_logits(np.stack(copies))
        reference = (torch.sigmoid(logits[0]) >= float(self.threshold)).to(logits.dtype)

        def bce(z):
            return F.binary_cross_entropy_with_logits(z, reference, reduction="none")

        shared = bce(logits[1]) if n_plain > 1 else torch.zeros_like(reference)
        for j in range(2, n_plain):
            shared = shared.add_(bce(logits[j]))
        if groups is None:
            yield shared, slice(None)
            return
        n_contrast = sum(is_contrast)  # the same augmentation listed twice counts twice
        for g, row in enumerate(contrast_copy):
            members = np.flatnonzero(groups == g)
            if members.size:
                yield shared + n_contrast * bce(logits[row]), members


def _contrast_groups(image, corners, patch_size, n_groups):
    """Group candidates by their grey range; returns (group of each candidate, ranges (g, 2))."""
    lo = -box_reduce(-image.astype(np.int16), corners, patch_size, "max")
    hi = box_reduce(image, corners, patch_size, "max")
    pairs = np.column_stack([lo, hi]).astype(np.int64)
    distinct, inverse, counts = np.unique(pairs, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    if len(distinct) <= n_groups:
        return inverse, distinct
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=n_groups, n_init=1, random_state=0)
    labels = km.fit(distinct.astype(np.float64), sample_weight=counts).labels_
    used = np.unique(labels)
    remap = np.full(n_groups, -1)
    remap[used] = np.arange(len(used))
    labels = remap[labels]
    ranges = np.empty((len(used), 2), dtype=np.int64)
    for g in range(len(used)):
        sel = labels == g
        ranges[g] = np.round(np.average(distinct[sel], axis=0, weights=counts[sel]))
    return labels[inverse], ranges
