"""kwtl's mask policy: any mask becomes a 2-D boolean foreground (rules: :func:`check_masks`)."""

import numbers

import numpy as np

from ._intensity import _asarray

__all__ = [
    "as_mask",
    "colour_labels",
    "mask_classes",
    "masks_to_foreground",
    "patch_foreground_counts",
]


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
    if np.issubdtype(rgb.dtype, np.floating):
        if not np.all(np.isfinite(rgb)) or not np.all(rgb == np.rint(rgb)):
            raise ValueError(
                "a colour mask must hold whole-number colours (got fractions "
                "or NaN/inf: a probability map is not a mask)"
            )
        rgb = rgb.astype(np.int64)
    if not np.issubdtype(rgb.dtype, np.integer) or (rgb.size and rgb.min() < 0):
        raise ValueError(
            f"a colour mask must hold non-negative integer colours, got dtype {rgb.dtype}"
        )
    if rgb.size and rgb.max() > 65535:
        raise ValueError("a colour mask's channels must fit 16 bits (0..65535)")
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
