"""Checks of everything :meth:`FewShotSegmentation.fit` can check before any training.

Source pre-training and PLFT take minutes to hours, so a budget larger than the pool, a
wrong target mask on an image that is never selected, a selector given by name or a
negative epoch count must fail at once, not after them. The checks read the target masks'
shapes and values (never which pixels are foreground, except for the documented
``min_foreground`` filter, which counts them anyway).

Everything here is a function of explicit arguments (the estimator's parameters are
checked by its own ``_validate_params``); :func:`check_before_training` returns the checked
data, so nothing is converted or checked twice.
"""

import numbers

import numpy as np
from sklearn.utils import Bunch

from ..datasets import PatchSet
from ..utils import as_mask, check_images, check_masks, check_training_masks
from ..utils.validation import as_list
from ._oracle import Oracle

__all__ = ["as_object_array", "candidate_pool", "check_before_training", "split_by_domain"]


def as_object_array(X, name):
    """A 1-D object array of the items of ``X`` (the items themselves, never converted)."""
    if (
        X is None
        or isinstance(X, (str, bytes, numbers.Number))
        or (isinstance(X, np.ndarray) and X.dtype != object)
    ):
        X = as_list(X, name)  # the shared errors for a single image, a string, None ...
    items = list(X)
    out = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):  # element-wise: never converts (or reads) the items
        out[i] = item
    return out


def split_by_domain(X, y, sample_domain):
    """Sources and the target pool of a ``fit`` call (``sample_domain``: positive = source
    dataset id, negative = target; None: all target).

    Returns
    -------
    roles : Bunch
        ``X_src``, ``y_src``, ``groups`` (source ids), ``pool`` (target images, checked),
        ``y_pool`` (their masks, unread), ``target`` (the target's domain label).
    """
    X = as_object_array(X, "X")
    y = as_object_array(y, "y")
    if len(y) != len(X):
        raise ValueError(f"X has {len(X)} images but y has {len(y)} masks")
    if sample_domain is None:
        sample_domain = -np.ones(len(X), dtype=int)
    sample_domain = np.asarray(sample_domain)
    if sample_domain.shape != (len(X),) or not np.issubdtype(sample_domain.dtype, np.integer):
        raise ValueError(f"sample_domain must be {len(X)} integers, got {sample_domain!r}")
    if np.any(sample_domain == 0):
        raise ValueError("sample_domain must be non-zero (positive = source, negative = target)")
    targets = np.unique(sample_domain[sample_domain < 0])
    if len(targets) != 1:
        raise ValueError(
            "FewShotSegmentation adapts to one target dataset per fit; got target domains "
            f"{targets.tolist()}. With GridSearchCV and LeaveOneDatasetOut use refit=False."
        )
    src, tgt = sample_domain > 0, sample_domain < 0
    return Bunch(
        X_src=X[src],
        y_src=y[src],
        groups=sample_domain[src],
        pool=check_images(X[tgt], name="target images", min_size=8),
        y_pool=y[tgt],
        target=int(targets[0]),
    )


def candidate_pool(pool, y_pool, patch_size, stride, min_foreground=None):
    """The candidate patches of the target pool and the oracle over its masks.

    Reads no mask unless ``min_foreground`` (the authors' documented filter) is set.

    Returns
    -------
    candidates : PatchSet
    oracle : Oracle
    """
    candidates = PatchSet.from_images(pool, patch_size, stride)
    oracle = Oracle(y_pool, shapes=[im.shape for im in pool])
    if min_foreground is not None:
        counts = oracle.foreground_counts(candidates)
        candidates = candidates.subset(np.flatnonzero(counts >= int(min_foreground)))
        if len(candidates) == 0:
            raise ValueError(
                f"no candidate patch has {min_foreground} foreground pixels (min_foreground)"
            )
    return candidates, oracle


def _check_target_masks(masks, pool):
    """Shapes and values of the target masks given as arrays (results discarded: nothing
    reaches the learner). Other objects (placeholders, lazy loaders of masks that an
    annotator has not drawn yet) are left alone; the oracle checks them if it reveals them."""
    for i, (mask, image) in enumerate(zip(masks, pool)):
        if isinstance(mask, (np.ndarray, list, tuple)):
            checked = as_mask(mask, name=f"target masks[{i}]")
            if checked.shape != image.shape:
                raise ValueError(
                    f"target masks[{i}] has shape {checked.shape} but its image "
                    f"has shape {image.shape}"
                )


def check_before_training(
    segmenter,
    selector,
    X,
    y,
    sample_domain=None,
    unlabelled=None,
    *,
    n_shots=1,
    patches_per_shot="auto",
    min_foreground=None,
):
    """Validate the components, images, masks and the budget of a ``fit`` call.

    Parameters
    ----------
    segmenter, selector
        The estimator's components (their own parameters are checked here).
    X, y, sample_domain, unlabelled
        As :meth:`FewShotSegmentation.fit`.
    n_shots, patches_per_shot, min_foreground
        The estimator's budget and filter.

    Returns
    -------
    data : Bunch
        :func:`split_by_domain`'s roles with the source images and masks checked
        (``X_src``, ``y_src``), plus ``unlabelled`` (checked or None), ``candidates`` and
        ``oracle`` (:func:`candidate_pool`).

    Raises
    ------
    kwtl.utils.InvalidParameterError
        For a parameter of the wrong type or range (both a ValueError and a TypeError).
    ValueError
        For bad images or masks, or a budget larger than the candidate pool.
    """
    for component in (segmenter, selector):
        if hasattr(component, "_validate_params"):
            component._validate_params()
    if X is not None and not isinstance(X, (str, bytes)) and hasattr(X, "__len__") and len(X) == 0:
        raise ValueError("X is empty: at least one source or target image is needed")
    data = split_by_domain(X, y, sample_domain)
    if len(data.X_src):
        data.X_src = check_images(data.X_src, name="source images", min_size=8)
        data.y_src = check_masks(data.y_src, data.X_src, name="source masks")
        check_training_masks(data.y_src, name="the source masks")
    data.unlabelled = (
        None if unlabelled is None else check_images(unlabelled, name="unlabelled", min_size=8)
    )
    _check_target_masks(data.y_pool, data.pool)
    data.candidates, data.oracle = candidate_pool(
        data.pool, data.y_pool, segmenter.patch_size, segmenter.stride, min_foreground
    )
    try:  # the selector's own budget rule, checked here before any training
        selector.budget(data.candidates, n_shots, patches_per_shot)
    except ValueError as err:
        if min_foreground is None or getattr(selector, "unit", "patch") == "image":
            raise
        raise type(err)(
            str(err).replace(
                "candidate patches;", "candidate patches after the min_foreground filter;"
            )
        ) from None
    return data
