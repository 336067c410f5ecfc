"""The paper's selection score: prediction consistency under pixel-level augmentations."""
import numbers

import numpy as np
import torch
import torch.nn.functional as F

from ._augment import AUGMENTATIONS
from ._base import PixelSelector

__all__ = ["ConsistencySelector"]


class ConsistencySelector(PixelSelector):
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

    def __init__(self, magnitude=1.3, augmentations=("autocontrast", "brightness", "sharpness"),
                 threshold=0.5, *, unit="patch", reduction="mean", batch_size=None,
                 random_state=None):
        super().__init__(unit=unit, reduction=reduction, batch_size=batch_size,
                         random_state=random_state)
        self.magnitude = magnitude
        self.augmentations = augmentations
        self.threshold = threshold

    def _validate_params(self):
        if isinstance(self.magnitude, bool) or not isinstance(self.magnitude, numbers.Real) \
                or not np.isfinite(self.magnitude) or self.magnitude <= 0:
            raise ValueError(f"magnitude must be a positive finite number, got {self.magnitude!r}")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, numbers.Real) \
                or not 0.0 < self.threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold!r}")
        self._augmentation_functions()

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
