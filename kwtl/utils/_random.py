"""Seeding helpers: every estimator derives its torch/numpy seeds from ``random_state``."""

import numbers

import numpy as np

__all__ = ["derive_seed"]


def derive_seed(random_state, *keys):
    """A 32-bit seed derived from ``random_state`` and labels, or None when unseeded.

    The same ``(random_state, keys)`` always gives the same seed, and different keys give
    independent seeds, so separate stages (initialisation, each training call, selection)
    draw from separate streams.

    Parameters
    ----------
    random_state : None, int or numpy.random.RandomState
        None means "do not seed" (returns None). A RandomState instance is consumed.
    *keys : int or str
        Labels of the stream.

    Examples
    --------
    >>> derive_seed(0, "init") == derive_seed(0, "init")
    True
    >>> derive_seed(0, "init") != derive_seed(0, "train", 1)
    True
    >>> derive_seed(None, "init") is None
    True
    """
    if random_state is None:
        return None
    if isinstance(random_state, np.random.RandomState):
        base = int(random_state.randint(0, 2**31 - 1))
    elif isinstance(random_state, numbers.Integral):
        base = int(random_state)
        if base < 0:
            raise ValueError(f"random_state must be non-negative, got {random_state}")
    else:
        raise TypeError(
            f"random_state must be None, an int or a RandomState, got {type(random_state).__name__}"
        )
    entropy = [base] + [_key_to_int(k) for k in keys]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _key_to_int(key):
    if isinstance(key, numbers.Integral):
        return int(key)
    return int.from_bytes(str(key).encode("utf-8")[:16].ljust(16, b"\0"), "little")
