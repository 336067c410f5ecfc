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
}
_WRAPPERS = ("ForegroundGate", "SpreadSelector", "StratifiedSelector")


def _summary(obj):
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0].rstrip(".") if doc.strip() else type(obj).__name__


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
        registry's composition); ``score_meaning`` (None when the score is a random number
        with no meaning, then the ``score`` column is left empty); ``random`` (whether the
        choice is a random draw, possibly constrained: spread over images, gated).

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
    summary = _summary(source if source is not None and not isinstance(source, type)
                       else selector)
    innermost = _innermost(selector)
    inner_name = type(innermost).__name__
    random = inner_name == "RandomSelector"
    wrapped = type(selector).__name__ in _WRAPPERS
    if random and not wrapped:
        meaning = None
    elif inner_name in _SCORE_MEANING and _SCORE_MEANING[inner_name] is not None:
        meaning = _SCORE_MEANING[inner_name] + (
            f", ordered by {type(selector).__name__}" if wrapped else "")
    elif random:
        meaning = (f"the order of a random draw, arranged by {type(selector).__name__} "
                   f"({_summary(selector)})")
    else:
        meaning = f"the {_summary(innermost).lower()} (higher = chosen first)"
    return Bunch(name=name or type(selector).__name__, summary=summary,
                 score_meaning=meaning, random=random)
