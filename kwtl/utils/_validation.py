"""Declarative parameter constraints in the scikit-learn style.

Estimators list what each parameter may be in a class attribute ``_parameter_constraints``
(``{"name": [constraint, ...]}``) and call :func:`validate_params` at the start of ``fit``;
a value is valid when it satisfies at least one constraint. scikit-learn's own machinery
(``sklearn.utils._param_validation``) is private, so this is a small public equivalent with
the same error class semantics (:class:`InvalidParameterError` is both a ``ValueError`` and
a ``TypeError``).
"""
import numbers

import numpy as np

__all__ = ["HasMethods", "Interval", "InvalidParameterError", "Options", "Pair",
           "validate_params"]


class InvalidParameterError(ValueError, TypeError):
    """A parameter has a wrong type or value (catchable as ValueError or TypeError)."""


def _is_number(value, kind):
    return isinstance(value, kind) and not isinstance(value, bool)


class Interval:
    """Numbers of type ``kind`` (``numbers.Integral`` or ``numbers.Real``) in a range.

    ``closed`` is ``"left"``, ``"right"``, ``"both"`` or ``"neither"``; None bounds are
    infinite. Booleans never count as numbers.

    Examples
    --------
    >>> import numbers
    >>> Interval(numbers.Integral, 1, None, closed="left").is_satisfied_by(0)
    False
    >>> str(Interval(numbers.Real, 0, 1, closed="neither"))
    'a float in the range (0, 1)'
    """

    def __init__(self, kind, left, right, closed="both"):
        self.kind, self.left, self.right, self.closed = kind, left, right, closed

    def is_satisfied_by(self, value):
        if not _is_number(value, self.kind):
            return False
        if isinstance(value, float) and not np.isfinite(value) and self.right is not None:
            return False
        if self.left is not None:
            if value < self.left or (value == self.left and self.closed in ("right", "neither")):
                return False
        if self.right is not None:
            if value > self.right or (value == self.right and self.closed in ("left", "neither")):
                return False
        return True

    def __str__(self):
        kind = "an int" if self.kind is numbers.Integral else "a float"
        lb = "[" if self.closed in ("left", "both") and self.left is not None else "("
        rb = "]" if self.closed in ("right", "both") and self.right is not None else ")"
        left = "-inf" if self.left is None else self.left
        right = "inf" if self.right is None else self.right
        return f"{kind} in the range {lb}{left}, {right}{rb}"


class Options:
    """One of a set of values (e.g. strings)."""

    def __init__(self, options):
        self.options = tuple(options)

    def is_satisfied_by(self, value):
        return isinstance(value, (str, numbers.Number)) and not isinstance(value, bool) \
            and value in self.options

    def __str__(self):
        return "one of " + ", ".join(repr(o) for o in self.options)


class Pair:
    """A pair (tuple or list of two) of values satisfying ``constraint``."""

    def __init__(self, constraint):
        self.constraint = constraint

    def is_satisfied_by(self, value):
        return isinstance(value, (tuple, list)) and len(value) == 2 \
            and all(self.constraint.is_satisfied_by(v) for v in value)

    def __str__(self):
        return f"a pair of ({self.constraint})"


class HasMethods:
    """An object with all of the given methods (e.g. an estimator instance)."""

    def __init__(self, methods, example=None):
        self.methods, self.example = tuple(methods), example

    def is_satisfied_by(self, value):
        return not isinstance(value, (str, type)) \
            and all(callable(getattr(value, m, None)) for m in self.methods)

    def __str__(self):
        text = f"an object with the methods {', '.join(self.methods)}"
        return f"{text} (e.g. {self.example})" if self.example else text


def _satisfies(value, constraint):
    if constraint is None:
        return value is None
    if constraint == "callable":
        return callable(value) and not isinstance(value, type)
    if constraint == "boolean":
        return isinstance(value, (bool, np.bool_))
    if isinstance(constraint, type):
        if constraint in (numbers.Integral, numbers.Real, int, float):
            return _is_number(value, constraint)
        return isinstance(value, constraint)
    return constraint.is_satisfied_by(value)


def _describe(constraint):
    if constraint is None:
        return "None"
    if constraint == "boolean":
        return "a bool"
    if constraint == "callable":
        return "a callable"
    if isinstance(constraint, type):
        return f"an instance of {constraint.__name__}"
    return str(constraint)


def validate_params(owner, params, constraints):
    """Check ``params`` against ``constraints``; raise :class:`InvalidParameterError`.

    Parameters
    ----------
    owner : str
        Name used in messages (e.g. the class name).
    params : dict
        Parameter values; keys without a constraint are not checked.
    constraints : dict
        ``{name: [constraint, ...]}``: a value must satisfy at least one. A constraint is
        None, ``"boolean"``, ``"callable"``, a type, or an object with ``is_satisfied_by``
        (:class:`Interval`, :class:`Options`, :class:`Pair`, :class:`HasMethods`).

    Examples
    --------
    >>> import numbers
    >>> rules = {"max_epochs": [Interval(numbers.Integral, 0, None, closed="left")]}
    >>> validate_params("Net", {"max_epochs": -1}, rules)
    Traceback (most recent call last):
    ...
    kwtl.utils._validation.InvalidParameterError: The 'max_epochs' parameter of Net must be an int in the range [0, inf); got -1 (int).
    """
    for name, allowed in constraints.items():
        if name not in params:
            continue
        value = params[name]
        if any(_satisfies(value, c) for c in allowed):
            continue
        expected = [_describe(c) for c in allowed]
        text = expected[0] if len(expected) == 1 else ", ".join(expected[:-1]) + " or " + expected[-1]
        hint = ""
        if isinstance(value, str) and any(isinstance(c, HasMethods) for c in allowed):
            hint = " Pass an instance, not its name."
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be {text}; got {value!r} "
            f"({type(value).__name__}).{hint}"
        )
