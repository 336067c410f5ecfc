"""Selection strategies: which unlabelled patches (or images) to annotate first.

Every selector is a scikit-learn estimator following the contract of :class:`BaseSelector`:
``score(X, estimator)`` (one score per candidate, higher = annotate first),
``select(X, n, estimator)`` (the ``n`` best candidate indices) and
``select_support(X, estimator, n_shots, patches_per_shot)`` (the method's selection step:
budget, cached scores, choice, image expansion). What a selector may ask of the model is the
:class:`SelectionModel` protocol. Pixel-scoring selectors (:class:`PixelSelector`) also give
``pixel_scores(X, estimator)`` (per-pixel score maps):

* :class:`ConsistencySelector` — the paper's augmentation-consistency score;
* :class:`EntropySelector` — mean pixel entropy of one deterministic pass;
* :class:`MCDropoutSelector` — entropy of the MC-dropout mean prediction;
* :class:`RandomSelector` — uniform, without replacement.

:data:`DEFAULT_SELECTOR` names the selector used when none is given. :data:`SELECTORS` maps short names (``kwtl run --selectors``) to these classes, and to the
experimental label-free selectors (``gate_random``, ``gate_consistency``,
``gate_representative``, ``representative``, ``stratified_consistency``) of the private
modules ``_gate``, ``_representative`` and ``_stratified``: they lost to random in the
measured comparison (user guide) and become public once they pass the selector test template.
"""
from ._augment import AUGMENTATIONS, autocontrast, brightness, sharpness
from ._base import BaseSelector, PixelSelector, Support
from ._consistency import ConsistencySelector
from ._protocol import SelectionModel
from ._random import RandomSelector
from ._registry import DEFAULT_SELECTOR, SELECTORS, make_selector
from ._uncertainty import EntropySelector, MCDropoutSelector

__all__ = [
    "AUGMENTATIONS",
    "BaseSelector",
    "ConsistencySelector",
    "DEFAULT_SELECTOR",
    "EntropySelector",
    "MCDropoutSelector",
    "PixelSelector",
    "RandomSelector",
    "SELECTORS",
    "SelectionModel",
    "Support",
    "autocontrast",
    "brightness",
    "make_selector",
    "sharpness",
]
