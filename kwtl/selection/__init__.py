"""Selection strategies: which unlabelled patches (or images) to annotate first.

Every selector is a scikit-learn ``BaseEstimator`` with ``score(X, estimator)`` (one score
per candidate, higher = annotate first), ``select(X, n, estimator)`` (the ``n`` best
candidate indices) and ``pixel_scores(X, estimator)`` (per-pixel score maps):

* :class:`ConsistencySelector` — the paper's augmentation-consistency score;
* :class:`EntropySelector` — mean pixel entropy of one deterministic pass;
* :class:`MCDropoutSelector` — entropy of the MC-dropout mean prediction;
* :class:`RandomSelector` — uniform, without replacement.
"""
from ._augment import AUGMENTATIONS, autocontrast, brightness, sharpness, smooth
from ._base import BaseSelector
from ._consistency import ConsistencySelector
from ._random import RandomSelector
from ._uncertainty import EntropySelector, MCDropoutSelector, binary_entropy
# label-free selectors (issue 13)
from ._gate import ForegroundGate, PredictedForegroundSelector, gate_mask, gate_scores
from ._representative import RepresentativeSelector, representative_order, typicality
from ._stratified import StratifiedSelector, stratified_order

__all__ = [
    "AUGMENTATIONS",
    "BaseSelector",
    "ConsistencySelector",
    "EntropySelector",
    "MCDropoutSelector",
    "RandomSelector",
    "autocontrast",
    "binary_entropy",
    "brightness",
    "sharpness",
    "smooth",
    # label-free selectors (issue 13)
    "ForegroundGate",
    "PredictedForegroundSelector",
    "RepresentativeSelector",
    "StratifiedSelector",
    "gate_mask",
    "gate_scores",
    "representative_order",
    "stratified_order",
    "typicality",
]
