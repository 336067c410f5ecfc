"""Checks of everything :meth:`FewShotSegmentation.fit` can check before any training.

Source pre-training and PLFT take minutes to hours, so a budget larger than the pool, a
wrong target mask on an image that is never selected, a selector given by name or a
negative epoch count must fail at once, not after them. The checks read the target masks'
shapes and values (never which pixels are foreground, except for the documented
``min_foreground`` filter, which counts them anyway).
"""
import numbers
import os

import numpy as np

from .utils import as_mask, check_images, check_masks, check_training_masks, validate_params
from .utils._validation import HasMethods, Interval, Options

__all__ = ["FEW_SHOT_CONSTRAINTS", "check_before_training"]

_positive_int = Interval(numbers.Integral, 1, None, closed="left")
_non_negative_int = Interval(numbers.Integral, 0, None, closed="left")

#: ``FewShotSegmentation._parameter_constraints``.
FEW_SHOT_CONSTRAINTS = {
    "segmenter": [None, HasMethods(["meta_fit", "partial_fit", "predict_proba", "patch_logits"],
                                   example="FCRNSegmenter()")],
    "pseudo_labeler": [None, Options(("default",)),
                       HasMethods(["fit_transform"], example="PseudoLabeler()")],
    "selector": [None, HasMethods(["score", "rank"], example="ConsistencySelector()")],
    "n_shots": [_positive_int],
    "patches_per_shot": [Options(("auto",)), _positive_int],
    "pl_epochs": [_non_negative_int],
    "pl_batch_size": [_positive_int],
    "finetune_epochs": [_non_negative_int],
    "switch_affine": ["boolean"],
    "recalibrate_batchnorm": ["boolean"],
    "min_foreground": [None, _non_negative_int],
    "memory": [None, str, HasMethods(["cache"], example="joblib.Memory(path)"),
               os.PathLike],
    "random_state": [None, numbers.Integral, np.random.RandomState],
}


def _check_target_masks(masks, pool):
    """Shapes and values of the target masks given as arrays (results discarded: nothing
    reaches the learner). Other objects (placeholders, lazy loaders of masks that an
    annotator has not drawn yet) are left alone; the oracle checks them if it reveals them."""
    for i, (mask, image) in enumerate(zip(masks, pool)):
        if isinstance(mask, (np.ndarray, list, tuple)):
            checked = as_mask(mask, name=f"target masks[{i}]")
            if checked.shape != image.shape:
                raise ValueError(f"target masks[{i}] has shape {checked.shape} but its image "
                                 f"has shape {image.shape}")


def check_before_training(estimator, X, y, sample_domain=None, unlabelled=None):
    """Validate parameters, components, images, masks and the budget of a ``fit`` call.

    Raises
    ------
    kwtl.utils.InvalidParameterError
        For a parameter of the wrong type or range (both a ValueError and a TypeError).
    ValueError
        For bad images or masks, or a budget larger than the candidate pool.
    """
    validate_params(type(estimator).__name__, estimator.get_params(deep=False),
                    FEW_SHOT_CONSTRAINTS)
    segmenter, _, selector = estimator._components()
    if hasattr(segmenter, "_check_params"):
        segmenter._check_params()
    for hook in ("_validate_common", "_validate_params"):
        if hasattr(selector, hook):
            getattr(selector, hook)()
    if X is not None and not isinstance(X, (str, bytes)) and hasattr(X, "__len__") \
            and len(X) == 0:
        raise ValueError("X is empty: at least one source or target image is needed")
    roles = estimator._roles(X, y, sample_domain)
    if len(roles["X_src"]):
        src = check_images(roles["X_src"], name="source images", min_size=8)
        check_training_masks(check_masks(roles["y_src"], src, name="source masks"),
                             name="the source masks")
    pool = check_images(roles["pool"], name="target images", min_size=8)
    if unlabelled is not None:
        check_images(unlabelled, name="unlabelled", min_size=8)
    _check_target_masks(roles["y_pool"], pool)
    candidates, _ = estimator._candidates(dict(roles, pool=pool), segmenter)
    # the selector's own budget rule; the check against the pool is here, for a message
    # that names the parameters and the min_foreground filter
    n_select = selector._budget_size(len(candidates), len(pool), estimator.n_shots,
                                     estimator.patches_per_shot)
    image_unit = getattr(selector, "unit", "patch") == "image"
    available = len(pool) if image_unit else len(candidates)
    if n_select > available:
        what = "pool images" if image_unit else "candidate patches"
        budget = (f"n_shots={estimator.n_shots}" if image_unit else
                  f"n_shots={estimator.n_shots} x patches_per_shot="
                  f"{estimator.patches_per_shot} = {n_select}")
        raise ValueError(
            f"more shots than candidates: the budget {budget} is larger than the pool, "
            f"which has only {available} "
            f"{what}" + (" after the min_foreground filter" if estimator.min_foreground
                         is not None and not image_unit else "")
            + "; lower n_shots or patches_per_shot, or use a smaller stride")
    return roles
