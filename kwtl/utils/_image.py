"""Conversion of user images and masks to kwtl's canonical form.

kwtl works on 2-D 8-bit grey images because the paper's augmentations (auto-contrast,
brightness, sharpness) and pseudo-label thresholds are defined on 8-bit values. Every public
entry point converts its images with :func:`check_images` (one image: :func:`as_uint8_image`)
and its masks with :func:`check_masks` (one mask: :func:`as_mask`); the rules are written
once, in the docstrings of :func:`check_images` and :func:`check_masks`.
"""
import numbers

import numpy as np

__all__ = [
    "PERCENTILES",
    "as_uint8_image",
    "as_mask",
    "check_images",
    "check_masks",
    "check_training_masks",
    "colour_labels",
    "mask_classes",
    "masks_to_foreground",
    "normalize_uint8",
    "patch_foreground_counts",
]

# ITU-R 601-2 luma, the conversion PIL's ``convert("L")`` uses.
_LUMA = np.array([0.299, 0.587, 0.114])

#: Percentiles mapped to 0 and 255 for images that are not 8-bit data (csbdeep/Cellpose style).
PERCENTILES = (1.0, 99.8)


def _asarray(value, name):
    """``np.asarray`` that names ragged nested lists instead of numpy's generic error."""
    try:
        arr = np.asarray(value)
    except ValueError as exc:
        if "inhomogeneous" in str(exc) or "sequence" in str(exc):
            raise ValueError(
                f"{name} is a ragged nested list (rows of different lengths); an image or "
                "mask must be a rectangular 2-D array"
            ) from None
        raise
    if arr.dtype == object:
        raise TypeError(
            f"{name} has dtype object (a ragged nested list or mixed items?); expected a "
            "numeric 2-D array"
        )
    return arr


def _is_8bit_data(arr):
    """Whether every value is an integer in 0..255 (8-bit data in a wider container)."""
    if arr.size == 0:
        return True
    lo, hi = arr.min(), arr.max()
    if lo < 0 or hi > 255:
        return False
    if np.issubdtype(arr.dtype, np.integer):
        return True
    return bool(np.all(arr == np.rint(arr)))


def _percentile_uint8(arr):
    """Per-image percentile normalisation to 0..255 (min/max when the percentiles tie)."""
    arr = arr.astype(np.float64)
    lo, hi = np.percentile(arr, PERCENTILES)
    if not hi > lo:  # e.g. sparse bright cells above the 99.8th percentile
        lo, hi = float(arr.min()), float(arr.max())
    if not hi > lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    scaled = (arr - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def as_uint8_image(image, name="image"):
    """Convert one image to a 2-D ``uint8`` grey image (rules: :func:`check_images`).

    Parameters
    ----------
    image : array-like
        The image.
    name : str, default="image"
        Used in error messages.

    Returns
    -------
    image : ndarray of shape (H, W), dtype uint8

    Examples
    --------
    >>> import numpy as np
    >>> as_uint8_image(np.array([[0.0, 0.5], [1.0, 0.25]]))
    array([[  0, 128],
           [255,  64]], dtype=uint8)
    >>> as_uint8_image(np.array([[25.0, 53.0]]))  # 8-bit values stored as float: kept
    array([[25, 53]], dtype=uint8)
    """
    arr = _asarray(image, name)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = _luma(arr[..., :3], name)
    if arr.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D (H, W) grey or (H, W, 3|4) colour, got shape {arr.shape}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.integer):
        if _is_8bit_data(arr):
            return arr.astype(np.uint8)
        return _percentile_uint8(arr)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= 0.0 and hi <= 1.0:
            return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
        if _is_8bit_data(arr):
            return np.rint(arr).astype(np.uint8)
        return _percentile_uint8(arr)
    raise TypeError(f"{name} has unsupported dtype {arr.dtype}")


def _luma(rgb, name):
    if np.issubdtype(rgb.dtype, np.floating) and not np.all(np.isfinite(rgb)):
        raise ValueError(f"{name} contains NaN or infinite values")
    grey = rgb.astype(np.float64) @ _LUMA
    if rgb.dtype == np.uint8 or rgb.dtype == bool:
        scale = 255.0 if rgb.dtype == bool else 1.0
        return np.clip(np.rint(grey * scale), 0, 255).astype(np.uint8)
    # keep the original dtype family so the integer/float rules still apply
    return np.rint(grey).astype(rgb.dtype) if np.issubdtype(rgb.dtype, np.integer) else grey


def as_mask(mask, name="mask", threshold=None, ignore_value=None):
    """Convert one mask to a 2-D boolean foreground array (rules: :func:`check_masks`).

    Parameters
    ----------
    mask : array-like of shape (H, W)
        Binary, 0/255 or instance-label mask; an RGB(A) mask is read as colour-coded
        instances (:func:`colour_labels`: black is background, each colour one label).
    name : str, default="mask"
        Used in error messages.
    threshold : float or None, default=None
        Foreground is ``mask >= threshold``; needed for probability masks.
    ignore_value : number or None, default=None
        Pixels with this value count as background (kwtl has no "ignore" class).

    Returns
    -------
    mask : ndarray of shape (H, W), dtype bool

    Examples
    --------
    >>> as_mask([[0, 255], [255, 0]])
    array([[False,  True],
           [ True, False]])
    >>> as_mask([[0.02, 0.9]], threshold=0.5)
    array([[False,  True]])
    """
    arr = _asarray(mask, name)
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = colour_labels(arr)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) array, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} has unsupported dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if ignore_value is not None:
        arr = np.where(arr == ignore_value, 0, arr)
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
            raise TypeError(f"threshold must be a number, got {threshold!r}")
        return arr >= threshold
    if arr.size and arr.min() < 0:
        raise ValueError(
            f"{name} has negative values (min {arr.min()}); masks are 0 = background and "
            "positive = foreground (or instance ids). If a negative value marks background "
            "or 'ignore', pass ignore_value=<that value>"
        )
    if np.issubdtype(arr.dtype, np.floating) and not np.all(arr == np.rint(arr)):
        fractional = arr[arr != np.rint(arr)]
        raise ValueError(
            f"{name} has fractional values (e.g. {float(fractional[0]):.3g}): it looks like "
            "a probability map, and kwtl never guesses a threshold; binarise it first "
            "(e.g. mask > 0.5) or pass threshold=0.5"
        )
    if arr.size and arr.max() == 255 and (arr == 1).any() and not ((arr > 1) & (arr < 255)).any():
        raise ValueError(
            f"{name} has the values 0, 1 and 255 only: 255 looks like an 'ignore' label, not "
            "a 0/255 foreground; pass ignore_value=255, or recode the mask"
        )
    if np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.int64)  # whole numbers, checked above
    return masks_to_foreground(arr)


def colour_labels(rgb):
    """Instance labels of a colour-coded mask: black is 0, each other colour one label.

    Labels ``1..k`` follow the sorted packed colour ``(R << 16) | (G << 8) | B``; alpha
    is ignored. A white-on-black mask becomes 0/1.

    Parameters
    ----------
    rgb : ndarray of shape (H, W, 3) or (H, W, 4), integer or bool

    Returns
    -------
    labels : ndarray of shape (H, W), unsigned integer

    Examples
    --------
    >>> import numpy as np
    >>> rgb = np.array([[[0, 0, 0], [255, 0, 0]], [[0, 0, 255], [255, 0, 0]]], np.uint8)
    >>> colour_labels(rgb)
    array([[0, 2],
           [1, 2]], dtype=uint8)
    """
    rgb = np.asarray(rgb)[..., :3]
    if rgb.dtype == bool:
        rgb = rgb.astype(np.uint8)
    if not np.issubdtype(rgb.dtype, np.integer) or (rgb.size and rgb.min() < 0):
        raise ValueError(
            f"a colour mask must hold non-negative integer colours, got dtype {rgb.dtype}")
    bits = 8 if rgb.dtype.itemsize == 1 else 16
    packed = np.zeros(rgb.shape[:2], dtype=np.uint64)
    for k in range(3):
        packed = (packed << np.uint64(bits)) | rgb[..., k].astype(np.uint64)
    colours, labels = np.unique(packed, return_inverse=True)
    labels = labels.reshape(packed.shape)
    if colours.size and colours[0] != 0:  # no black pixel: every colour is foreground
        labels = labels + 1
    return labels.astype(np.min_scalar_type(max(int(labels.max(initial=0)), 1)))


# each unordered pair of 8-connected neighbours once: right, down, down-right, down-left
_NEIGHBOUR_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


def masks_to_foreground(mask, separate_touching=True):
    """Foreground of an instance-label mask, keeping touching instances apart.

    ``mask != 0``, except that with ``separate_touching`` every foreground pixel that has
    an 8-connected neighbour with a *different* non-zero label becomes background. Two
    touching cells thus stay two connected components (a two-pixel gap where they meet),
    which is what a segmentation loss or metric on the binary foreground needs: merged
    cells would teach the network that the boundary between them is cell. Binary masks
    (``bool``, or a single non-zero value such as 0/1 or 0/255) are returned as
    ``mask != 0``, unchanged. :func:`as_mask` and :func:`check_masks` (so every kwtl
    entry point that takes masks) convert instance labels with this function.

    Parameters
    ----------
    mask : array-like of shape (H, W)
        Labels: 0 = background, positive integers = instances (bool accepted).
    separate_touching : bool, default=True
        Whether pixels on the border between two instances become background; ``False``
        is plain ``mask != 0``.

    Returns
    -------
    foreground : ndarray of shape (H, W), dtype bool

    Raises
    ------
    ValueError
        If ``mask`` is not 2-D, has negative or fractional values.

    Examples
    --------
    Two touching squares (labels 1 and 2) keep a gap where they meet:

    >>> import numpy as np
    >>> labels = np.array([[1, 1, 2, 2],
    ...                    [1, 1, 2, 2],
    ...                    [0, 0, 0, 0]])
    >>> masks_to_foreground(labels).astype(int)
    array([[1, 0, 0, 1],
           [1, 0, 0, 1],
           [0, 0, 0, 0]])
    >>> masks_to_foreground(labels, separate_touching=False).astype(int)
    array([[1, 1, 1, 1],
           [1, 1, 1, 1],
           [0, 0, 0, 0]])
    """
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"mask must be a 2-D (H, W) label array, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr.copy()
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.rint(arr)):
            raise ValueError("mask has fractional or non-finite values: not instance labels")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"mask has unsupported dtype {arr.dtype}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"mask has negative values (min {arr.min()}): not instance labels")
    foreground = arr != 0
    if not separate_touching or not foreground.any():
        return foreground
    positive = arr[foreground]
    if positive.min() == positive.max():  # binary: nothing touches anything else
        return foreground
    height, width = arr.shape
    border = np.zeros_like(foreground)
    for dy, dx in _NEIGHBOUR_SHIFTS:
        cols_a = slice(max(0, -dx), width - max(0, dx))
        cols_b = slice(max(0, dx), width - max(0, -dx))
        a, b = arr[: height - dy, cols_a], arr[dy:, cols_b]
        touching = (a != b) & (a != 0) & (b != 0)
        border[: height - dy, cols_a] |= touching
        border[dy:, cols_b] |= touching
    return foreground & ~border


def mask_classes(masks):
    """Whether the masks hold any foreground and any background pixel.

    Parameters
    ----------
    masks : list of ndarray of dtype bool

    Returns
    -------
    has_foreground, has_background : bool
    """
    has_fg = any(bool(m.any()) for m in masks)
    has_bg = any(not bool(m.all()) for m in masks)
    return has_fg, has_bg


def _as_list(X, name):
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
    items = _as_list(X, name)
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
    items = _as_list(y, name)
    if len(items) != len(images):
        raise ValueError(f"{name} has {len(items)} masks but there are {len(images)} images")
    masks = []
    for i, (m, im) in enumerate(zip(items, images)):
        m = as_mask(m, name=f"{name}[{i}]", threshold=threshold, ignore_value=ignore_value)
        if m.shape != im.shape:
            raise ValueError(
                f"{name}[{i}] has shape {m.shape} but its image has shape {im.shape}"
            )
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


def normalize_uint8(images):
    """Map 8-bit values to the network's input range, ``x / 127.5 - 1`` (i.e. [-1, 1]).

    This is the authors' ``(x / 255 - 0.5) / 0.5``.

    Parameters
    ----------
    images : ndarray of dtype uint8, or torch.Tensor of dtype uint8

    Returns
    -------
    normalized : same type, float32
    """
    try:
        import torch

        if isinstance(images, torch.Tensor):
            return images.to(torch.float32).div_(127.5).sub_(1.0)
    except ImportError:  # pragma: no cover - torch is a hard dependency
        pass
    return np.asarray(images, dtype=np.float32) / np.float32(127.5) - np.float32(1.0)


def patch_foreground_counts(mask_patches):
    """Foreground pixels under each patch of a mask patch set (integral images, no copies).

    Parameters
    ----------
    mask_patches : PatchSet
        Patches over boolean masks (``arrays``, ``coords``, ``patch_size``).

    Returns
    -------
    counts : ndarray of shape (n_patches,), dtype int64

    Examples
    --------
    >>> import numpy as np
    >>> from kwtl.datasets import PatchSet
    >>> mask = np.zeros((4, 4), bool); mask[0, 0] = mask[3, 3] = True
    >>> patch_foreground_counts(PatchSet.from_images([mask], 2, 2)).tolist()
    [1, 0, 0, 1]
    """
    ph, pw = mask_patches.patch_size
    coords = np.asarray(mask_patches.coords)
    counts = np.zeros(len(coords), dtype=np.int64)
    for i in np.unique(coords[:, 0]) if len(coords) else []:
        m = np.asarray(mask_patches.arrays[int(i)]) != 0
        table = np.zeros((m.shape[0] + 1, m.shape[1] + 1), dtype=np.int64)
        table[1:, 1:] = m.cumsum(0).cumsum(1)
        rows = np.flatnonzero(coords[:, 0] == i)
        r, c = coords[rows, 1], coords[rows, 2]
        counts[rows] = table[r + ph, c + pw] - table[r, c + pw] - table[r + ph, c] + table[r, c]
    return counts
