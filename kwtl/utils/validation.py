"""Validation of what users pass to kwtl: images, masks and parameters.

* Images and masks: every public entry point converts its images with :func:`check_images`
  and its masks with :func:`check_masks` (one image: :func:`~kwtl.utils.as_uint8_image`, one
  mask: :func:`~kwtl.utils.as_mask`); the rules are written once, in their docstrings.
* Parameters: estimators list what each parameter may be in a class attribute
  ``_parameter_constraints`` (``{"name": [constraint, ...]}``) and check them in their one
  validation hook, ``_validate_params()``, with :func:`validate_params`; a value is valid when
  it satisfies at least one constraint. Functions (the lab workflow's steps) declare theirs
  with the :func:`validate_arguments` decorator. scikit-learn's own machinery
  (``sklearn.utils._param_validation``) is private, so this is a small public equivalent
  with the same error class semantics (:class:`InvalidParameterError` is both a
  ``ValueError`` and a ``TypeError``).
"""

import functools
import inspect
import numbers

import numpy as np

from ._intensity import as_uint8_image
from ._masks import as_mask, mask_classes

__all__ = [
    "NON_NEGATIVE_INT",
    "POSITIVE_INT",
    "HasMethods",
    "Interval",
    "InvalidParameterError",
    "Options",
    "Pair",
    "as_list",
    "check_images",
    "check_masks",
    "check_training_masks",
    "validate_arguments",
    "validate_params",
]


class InvalidParameterError(ValueError, TypeError):
    """A parameter has a wrong type or value (catchable as ValueError or TypeError)."""


def _is_number(value, kind):
    return isinstance(value, kind) and not isinstance(value, bool)


class Interval:
    """Numbers of type ``kind`` (``numbers.Integral`` or ``numbers.Real``) in a range.

    ``closed`` is ``"left"``, ``"right"``, ``"both"`` or ``"neither"``; None bounds are
    infinite (and then admit infinity unless ``finite``). Booleans and NaN never count as
    numbers.

    Examples
    --------
    >>> import numbers
    >>> Interval(numbers.Integral, 1, None, closed="left").is_satisfied_by(0)
    False
    >>> str(Interval(numbers.Real, 0, 1, closed="neither"))
    'a float in the range (0, 1)'
    """

    def __init__(self, kind, left, right, closed="both", *, finite=False):
        self.kind, self.left, self.right, self.closed = kind, left, right, closed
        self.finite = finite

    def is_satisfied_by(self, value):
        if not _is_number(value, self.kind):
            return False
        if isinstance(value, numbers.Real) and np.isnan(value):
            return False
        if not np.isfinite(value) and (self.finite or self.right is not None):
            return False
        if self.left is not None:
            if value < self.left or (value == self.left and self.closed in ("right", "neither")):
                return False
        if self.right is not None:
            if value > self.right or (value == self.right and self.closed in ("left", "neither")):
                return False
        return True

    def __str__(self):
        kind = (
            "an int"
            if self.kind is numbers.Integral
            else ("a finite float" if self.finite else "a float")
        )
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
        return (
            isinstance(value, (str, numbers.Number))
            and not isinstance(value, bool)
            and value in self.options
        )

    def __str__(self):
        return "one of " + ", ".join(repr(o) for o in self.options)


class Pair:
    """A pair (tuple or list of two) of values satisfying ``constraint``."""

    def __init__(self, constraint):
        self.constraint = constraint

    def is_satisfied_by(self, value):
        return (
            isinstance(value, (tuple, list))
            and len(value) == 2
            and all(self.constraint.is_satisfied_by(v) for v in value)
        )

    def __str__(self):
        return f"a pair of ({self.constraint})"


class HasMethods:
    """An object with all of the given methods (e.g. an estimator instance)."""

    def __init__(self, methods, example=None):
        self.methods, self.example = tuple(methods), example

    def is_satisfied_by(self, value):
        return not isinstance(value, (str, type)) and all(
            callable(getattr(value, m, None)) for m in self.methods
        )

    def __str__(self):
        text = f"an object with the methods {', '.join(self.methods)}"
        return f"{text} (e.g. {self.example})" if self.example else text


#: An int >= 1 (counts, sizes, batch sizes).
POSITIVE_INT = Interval(numbers.Integral, 1, None, closed="left")
#: An int >= 0 (epochs, iterations, seeds).
NON_NEGATIVE_INT = Interval(numbers.Integral, 0, None, closed="left")


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
    kwtl.utils.validation.InvalidParameterError: The 'max_epochs' parameter of Net must be an int in the range [0, inf); got -1 (int).
    """
    for name, allowed in constraints.items():
        if name not in params:
            continue
        value = params[name]
        if any(_satisfies(value, c) for c in allowed):
            continue
        expected = [_describe(c) for c in allowed]
        text = (
            expected[0] if len(expected) == 1 else ", ".join(expected[:-1]) + " or " + expected[-1]
        )
        hint = ""
        if isinstance(value, str) and any(isinstance(c, HasMethods) for c in allowed):
            hint = " Pass an instance, not its name."
        raise InvalidParameterError(
            f"The {name!r} parameter of {owner} must be {text}; got {value!r} "
            f"({type(value).__name__}).{hint}"
        )


def validate_arguments(constraints):
    """Decorator: check a function's arguments against ``constraints`` on every call.

    The function-level counterpart of ``_parameter_constraints``: arguments (given or
    default) are checked by :func:`validate_params` before the body runs, and a bad one
    raises :class:`InvalidParameterError` naming the argument and the function.

    Examples
    --------
    >>> @validate_arguments({"budget": [Interval(numbers.Integral, 1, None, closed="left")]})
    ... def choose(budget):
    ...     return budget
    >>> choose(0)
    Traceback (most recent call last):
    ...
    kwtl.utils.validation.InvalidParameterError: The 'budget' parameter of choose must be an int in the range [1, inf); got 0 (int).
    """

    def decorate(function):
        signature = inspect.signature(function)

        @functools.wraps(function)
        def checked(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            validate_params(function.__name__, bound.arguments, constraints)
            return function(*args, **kwargs)

        checked.__kwtl_constraints__ = constraints
        return checked

    return decorate


def as_list(X, name):
    """The items of a collection of images (or masks) as a list; a single image, a string,
    a number or None is refused with a message that says what to pass instead."""
    if isinstance(X, np.ndarray) and X.dtype != object:
        if X.ndim == 2:
            raise ValueError(
                f"{name} is a single 2-D array of shape {X.shape}; pass a list of images "
                f"(e.g. [{name}]) or a 3-D stack (n_images, H, W)"
            )
        if X.ndim == 3 and X.shape[-1] in (3, 4):
            raise ValueError(
                f"{name} is a single array of shape {X.shape}, i.e. one colour (RGB/RGBA) "
                f"image, where a list of images is expected; wrap it in a list ([{name}]). "
                "(A stack of grey images has shape (n_images, H, W) with H, W >= 8.)"
            )
        if X.ndim not in (3, 4):
            raise ValueError(
                f"{name} must be a list of 2-D images or a stack of shape (n, H, W), "
                f"got an array of shape {X.shape}"
            )
        return list(X)
    if isinstance(X, (str, bytes)) or isinstance(X, numbers.Number) or X is None:
        raise TypeError(f"{name} must be a list of images, got {type(X).__name__}")
    try:
        items = list(X)
    except TypeError:
        raise TypeError(f"{name} must be a list of images, got {type(X).__name__}") from None
    if items and all(isinstance(v, numbers.Number) for v in _first_row(items)):
        raise ValueError(
            f"{name} looks like one image given as nested lists of numbers; pass a list of "
            f"images, e.g. [np.asarray({name})]"
        )
    return items


def _first_row(items):
    first = items[0]
    if isinstance(first, (list, tuple)) and first:
        return first
    return [None]


def check_images(X, name="X", allow_empty=False, min_size=1):
    """Validate a collection of images and convert each to 2-D ``uint8``: kwtl's intensity policy.

    Every kwtl entry point that takes images (estimators, selectors, pseudo-labels, folder
    loaders) converts them with these rules, so that the same picture gives the same result
    whatever the container it arrives in:

    * **uint8** is kept unchanged (the paper's input; the network sees ``x / 127.5 - 1``).
    * **bool** becomes 0/255.
    * **8-bit data in another dtype** is kept as is: integers whose values all lie in
      0..255, and floats whose values are all whole numbers in 0..255 (an 8-bit image
      converted to float).
    * **floats within [0, 1]** are scaled by 255 and rounded (scikit-image's float
      convention).
    * **everything else** (16-bit or wider data above 255, negative values, other float
      ranges) is normalised per image by percentiles, as Cellpose and csbdeep/stardist do:
      the 1st percentile maps to 0 and the 99.8th to 255 (:data:`PERCENTILES`), clipped and
      rounded; so one hot pixel cannot compress the rest of the image into a few grey
      levels. When the two percentiles are equal (an image that is almost constant) the
      minimum and maximum are used; a constant image becomes 0.
    * **RGB(A)** ``(H, W, 3|4)`` items are converted to grey by ITU-R 601 luma
      ``0.299 R + 0.587 G + 0.114 B`` (alpha ignored) before the rules above.
    * NaN or infinite values, empty images and object/ragged arrays raise an error.

    The collection itself is a list (or object array) of images, or an ndarray stack
    ``(n, H, W)`` / ``(n, H, W, 3|4)``. A single ``(H, W)`` array, a single colour image
    ``(H, W, 3|4)`` or one image given as nested lists of numbers raises an error that
    asks for a list (``[image]``): it is never read as H images of one row.

    Parameters
    ----------
    X : list of array-like, object array, or ndarray of shape (n, H, W) or (n, H, W, 3)
        The images; they may have different sizes.
    name : str, default="X"
        Used in error messages.
    allow_empty : bool, default=False
        Whether an empty collection is accepted.
    min_size : int, default=1
        Smallest accepted height and width (the network needs at least 8 pixels).

    Returns
    -------
    images : list of ndarray of shape (H_i, W_i), dtype uint8

    Raises
    ------
    TypeError
        If ``X`` is not a collection of numeric arrays.
    ValueError
        If ``X`` is a single image, empty, ragged, non-finite, or an image is smaller than
        ``min_size``.

    Examples
    --------
    >>> import numpy as np
    >>> [im.shape for im in check_images([np.zeros((4, 6)), np.ones((8, 8), bool)])]
    [(4, 6), (8, 8)]
    >>> hot = np.full((100, 100), 1000, np.uint16); hot[:50] = 3000; hot[0, 0] = 65535
    >>> np.unique(check_images([hot])[0]).tolist()  # the hot pixel saturates, not the cells
    [0, 255]
    """
    items = as_list(X, name)
    if not items and not allow_empty:
        raise ValueError(f"{name} is empty: at least one image is needed")
    images = [as_uint8_image(im, name=f"{name}[{i}]") for i, im in enumerate(items)]
    for i, im in enumerate(images):
        if min(im.shape) < min_size:
            raise ValueError(
                f"{name}[{i}] has shape {im.shape}: images must be at least "
                f"{min_size} x {min_size} pixels here (the network pools three times)"
            )
    return images


def check_masks(y, images, name="y", threshold=None, ignore_value=None):
    """Validate masks against already checked images: kwtl's mask policy.

    Every kwtl entry point that takes masks converts them with these rules (one mask:
    :func:`as_mask`):

    * **bool** masks are used as they are; **0/1** and **0/255** masks become
      ``mask != 0``. **Instance label images** (0 = background, positive ids = cells)
      become their foreground by :func:`masks_to_foreground`: ``mask != 0`` except the
      pixels where two different labels touch, which become background, so touching cells
      are never merged into one blob.
    * **probabilities** (floats with fractional values) raise an error unless ``threshold``
      is given (then foreground is ``mask >= threshold``): kwtl never silently treats every
      non-zero probability as foreground.
    * **negative values** raise an error (e.g. a -1 background) unless they are the
      ``ignore_value``; a mask whose values are exactly 0, 1 and 255 raises an error too
      (255 looks like an "ignore" label). Pixels equal to ``ignore_value`` count as
      background: kwtl's loss and metric have no ignore class, so crop such regions out if
      background is wrong for them.
    * NaN or infinite values raise an error; RGB(A) masks are colour-coded instances
      (:func:`colour_labels`: black is background, each other colour one instance), so a
      white-on-black colour mask is binary.
    * Each mask must have the shape of its image.

    Whether masks that are all background or all foreground are an error depends on the
    use: :class:`~kwtl.models.FCRNSegmenter` ``fit``/``meta_fit`` and the sources of
    :class:`~kwtl.FewShotSegmentation` refuse them (the weighted BCE learns nothing from an
    all-foreground patch: its weight ``N_bg / N_fg`` is 0); a selected support set that
    happens to be all background only warns.

    Parameters
    ----------
    y : list of array-like or ndarray of shape (n, H, W)
        One mask per image.
    images : list of ndarray
        The images, as returned by :func:`check_images`.
    name : str, default="y"
        Used in error messages.
    threshold : float or None, default=None
        Threshold for probability masks.
    ignore_value : number or None, default=None
        Mask value that counts as background whatever else it might mean.

    Returns
    -------
    masks : list of ndarray of shape (H_i, W_i), dtype bool

    Examples
    --------
    >>> import numpy as np
    >>> images = check_images([np.zeros((2, 3), np.uint8)])
    >>> check_masks([np.array([[3, 0, 7], [3, 0, 0]])], images)[0].tolist()  # instance ids
    [[True, False, True], [True, False, False]]
    >>> check_masks([np.array([[3, 7, 0], [3, 7, 0]])], images)[0].tolist()  # touching
    [[False, False, False], [False, False, False]]
    >>> check_masks([np.array([[0.1, 0.8, 0.0], [0.6, 0.0, 0.0]])], images)
    Traceback (most recent call last):
    ...
    ValueError: y[0] has fractional values (e.g. 0.1): it looks like a probability map, ...
    """
    if y is None:
        raise ValueError(f"{name} is required: one mask per image")
    items = as_list(y, name)
    if len(items) != len(images):
        raise ValueError(f"{name} has {len(items)} masks but there are {len(images)} images")
    masks = []
    for i, (m, im) in enumerate(zip(items, images)):
        m = as_mask(m, name=f"{name}[{i}]", threshold=threshold, ignore_value=ignore_value)
        if m.shape != im.shape:
            raise ValueError(f"{name}[{i}] has shape {m.shape} but its image has shape {im.shape}")
        masks.append(m)
    return masks


def check_training_masks(masks, name="y"):
    """Refuse training masks from which the weighted BCE cannot learn.

    Parameters
    ----------
    masks : list of ndarray of dtype bool
    name : str, default="y"

    Raises
    ------
    ValueError
        If no pixel is foreground, or every pixel is.
    """
    has_fg, has_bg = mask_classes(masks)
    if not has_fg:
        raise ValueError(
            f"every mask of {name} is all background: there is no foreground to learn "
            "(masks must mark cells as non-zero)"
        )
    if not has_bg:
        raise ValueError(
            f"every pixel of {name} is foreground: the weighted BCE gives a loss of exactly 0 "
            "(weight N_bg / N_fg = 0) and nothing is learnt; check that the masks are not "
            "inverted or constant"
        )
