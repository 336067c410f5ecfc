"""Short names of the selectors, shared by the command line, profiles, runner and report."""
from ._consistency import ConsistencySelector
from ._random import RandomSelector
from ._uncertainty import EntropySelector, MCDropoutSelector

__all__ = ["PAPER_SELECTORS", "SELECTORS", "make_selector"]

#: Selector classes by the short name used on the command line and in result files, in the
#: order reports list them. A new selector becomes available to ``kwtl run --selectors``,
#: the profiles and the report by one entry here.
SELECTORS = {
    "consistency": ConsistencySelector,
    "entropy": EntropySelector,
    "mc_dropout": MCDropoutSelector,
    "random": RandomSelector,
}

#: The paper's four selectors (Dawoud et al. 2023, Tab. 2), by short name.
PAPER_SELECTORS = ("consistency", "entropy", "mc_dropout", "random")


def make_selector(name, **params):
    """A selector by its short name, with ``params`` (those it does not take are ignored).

    Parameters shared by a run (``random_state``, the augmentation ``magnitude``) are
    passed to every selector; each takes those of its own ``get_params()``.

    Examples
    --------
    >>> from kwtl.selection import make_selector
    >>> make_selector("consistency", magnitude=1.7, random_state=0)
    ConsistencySelector(magnitude=1.7, random_state=0)
    >>> make_selector("random", magnitude=1.7)
    RandomSelector()
    """
    try:
        cls = SELECTORS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown selector {name!r}; choose from {list(SELECTORS)}") from None
    accepted = cls._get_param_names()
    return cls(**{k: v for k, v in params.items() if k in accepted})
