"""describe_selector: what every registered selector did, from the selector itself."""

import inspect

import pytest

from kwtl.selection import SELECTORS, make_selector
from kwtl.workflow._describe import describe_selector

RANDOM_DRAWS = {"random", "spread_random", "gate_random"}


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_every_registered_selector_is_described(name):
    selector = make_selector(name, dense=True, random_state=0)
    description = describe_selector(selector, name)
    source = SELECTORS[name]
    first_words = " ".join(inspect.getdoc(source).split()[:3])
    assert description.summary.startswith(first_words)  # taken from the selector
    assert description.random == (name in RANDOM_DRAWS)
    assert (description.score_meaning is None) == (name in RANDOM_DRAWS)
    if description.score_meaning is not None:
        assert "higher" in description.score_meaning or "how" in description.score_meaning
