"""Selection strategies: which unlabelled patches (or images) to annotate first.

Every selector is a scikit-learn estimator following the contract of :class:`BaseSelector`:
``score(X, estimator)`` (one score per candidate, higher = annotate first),
``select(X, n, estimator)`` (the ``n`` best candidate indices) and
``select_support(X, estimator, n_shots, patches_per_shot)`` (the method's selection step:
budget, cached scores, choice — optionally without overlapping patches, see
:func:`choose_non_overlapping` — and image expansion). What a selector may ask of the model is the
:class:`SelectionModel` protocol. Pixel-scoring selectors (:class:`PixelSelector`) also give
``pixel_scores(X, estimator)`` (per-pixel score maps):

* :class:`ConsistencySelector` — the paper's augmentation-consistency score;
* :class:`EntropySelector` — mean pixel entropy of one deterministic pass;
* :class:`MCDropoutSelector` — entropy of the MC-dropout mean prediction;
* :class:`RandomSelector` — uniform, without replacement.

Label-free selectors beyond the paper (they read no label; the paper's gains come from a
ground-truth filter a lab does not have, see the user guide, "Knowing what to label without
labels"). They compose: a wrapper takes any selector as its ``selector`` parameter, and
nested parameters are grid-searchable (``selector__quantile``, ``selector__selector__beta``):

* :class:`PredictedForegroundSelector` — the model's predicted foreground of a candidate;
* :class:`ForegroundGate` — wraps any selector: candidates whose predicted foreground
  reaches a pool quantile (or an absolute threshold) first, ranked by the inner selector;
* :class:`RepresentativeSelector` — k-means on the model's encoder features, the candidate
  nearest each centre (or the most typical, TypiClust);
* :class:`StratifiedSelector` — strata by predicted foreground, draws ∝ score^β instead
  of a strict top-k, at most ``max_per_image`` candidates per image;
* :class:`SpreadSelector` — wraps any selector (random by default): at most
  ``max_per_image`` candidates per image first;
* :class:`ObjectRichnessSelector` — predicted object boundary (or object count) per
  candidate.

:data:`DEFAULT_SELECTOR` names the selector used when none is given. :data:`SELECTORS` maps
short names (``kwtl run --selectors``) to these classes and to
ready-made compositions (``gate_random``, ``gate_consistency``, ``gate_representative``,
``representative``, ``stratified_consistency``).
"""

from ._augment import AUGMENTATIONS, autocontrast, brightness, sharpness
from ._base import BaseSelector
from ._choice import Support, choose_non_overlapping
from ._consistency import ConsistencySelector
from ._gate import ForegroundGate, PredictedForegroundSelector
from ._pixel import PixelSelector
from ._protocol import SelectionModel
from ._random import RandomSelector
from ._registry import DEFAULT_SELECTOR, SELECTORS, make_selector
from ._representative import RepresentativeSelector
from ._richness import ObjectRichnessSelector
from ._spread import SpreadSelector
from ._stratified import StratifiedSelector
from ._uncertainty import EntropySelector, MCDropoutSelector

__all__ = [
    "AUGMENTATIONS",
    "BaseSelector",
    "ConsistencySelector",
    "DEFAULT_SELECTOR",
    "EntropySelector",
    "ForegroundGate",
    "MCDropoutSelector",
    "ObjectRichnessSelector",
    "PixelSelector",
    "PredictedForegroundSelector",
    "RandomSelector",
    "RepresentativeSelector",
    "SELECTORS",
    "SelectionModel",
    "SpreadSelector",
    "StratifiedSelector",
    "Support",
    "autocontrast",
    "brightness",
    "choose_non_overlapping",
    "make_selector",
    "sharpness",
]
