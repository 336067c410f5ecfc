"""What a selector did, in words, for the package's README, its ``score`` column and the
console: taken from the selector itself (its class and the selector it wraps), so that the
messages stay true whichever selector is the default."""

import inspect

from sklearn.utils import Bunch

__all__ = ["describe_selector"]

#: What the ``score`` column means, by selector class. A selector not listed is described by
#: the first line of its docstring and "higher = chosen first".
_SCORE_MEANING = {
    "RandomSelector": None,  # a random number: no meaning, the column is left empty
    "ConsistencySelector": "how much the model's prediction changes under three "
    "augmentations (binary cross-entropy; higher = less consistent)",
    "EntropySelector": "the mean binary entropy of the model's prediction (higher = more "
    "uncertain)",
    "MCDropoutSelector": "the entropy of the mean of 10 MC-dropout predictions (higher = "
    "more uncertain)",
    "PredictedForegroundSelector": "the foreground the model predicts in the item",
    "ObjectRichnessSelector": "how much object structure (cell boundaries) the model "
    "predicts in the item",
    "RepresentativeSelector": "how representative the item is of the pool in the model's "
    "encoder features (its cluster's size and its place in it)",
}
_WRAPPERS = ("ForegroundGate", "SpreadSelector", "StratifiedSelector")


def _summary(obj):
    """The first paragraph of ``obj``'s docstring, on one line."""
    doc = (inspect.getdoc(obj) or "").strip()
    if not doc:
        return type(obj).__name__
    return " ".join(doc.split("\n\n")[0].split()).rstrip(".")


def _innermost(selector):
    inner = getattr(selector, "selector", None)
    if type(selector).__name__ in _WRAPPERS:
        if inner is None:
            from ..selection import RandomSelector

            inner = RandomSelector()  # the wrappers' default inner selector
        return _innermost(inner)
    return selector


def describe_selector(selector, name=None):
    """Plain words for what ``selector`` does and what its scores mean.

    Parameters
    ----------
    selector : BaseSelector
    name : str or None, default=None
        The short name it was chosen by (``kwtl select --selector``), if any.

    Returns
    -------
    description : sklearn.utils.Bunch
        ``name``; ``summary`` (one sentence from the selector's own docstring, or from the
        registry's composition); ``score_meaning`` (None for a random draw, however it is
        arranged — spread over images, gated: then the ``score`` column is left empty);
        ``random`` (whether the choice is such a draw).

    Examples
    --------
    >>> from kwtl.selection import RandomSelector, ConsistencySelector
    >>> describe_selector(RandomSelector(), "random").score_meaning is None
    True
    >>> describe_selector(ConsistencySelector()).random
    False
    """
    from ..selection import SELECTORS

    source = SELECTORS.get(name) if name else None
    summary = _summary(source if source is not None and not isinstance(source, type) else selector)
    innermost = _innermost(selector)
    inner_name = type(innermost).__name__
    random = inner_name == "RandomSelector"
    wrapped = type(selector).__name__ in _WRAPPERS
    if random:  # a random draw, however arranged (spread over images, gated): no score
        meaning = None
    elif inner_name in _SCORE_MEANING:
        meaning = _SCORE_MEANING[inner_name] + (", arranged as the summary says" if wrapped else "")
    else:
        meaning = f"the selector's score ({_summary(innermost)}; higher = chosen first)"
    return Bunch(
        name=name or type(selector).__name__, summary=summary, score_meaning=meaning, random=random
    )
