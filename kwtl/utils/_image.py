"""Conversion of user images and masks to kwtl's canonical form.

kwtl works on 2-D 8-bit grey images because the paper's augmentations (auto-contrast,
brightness, sharpness) and pseudo-label thresholds are defined on 8-bit values. Every public
entry point converts its input with :func:`as_uint8_image` / :func:`check_images`.
"""
import numbers

import numpy as np

__all__ = [
    "as_uint8_image",
    "as_mask",
    "check_images",
    "check_masks",
    "normalize_uint8",
]

# ITU-R 601-2 luma, the conversion PIL's ``convert("L")`` uses.
_LUMA = np.array([0.299, 0.587, 0.114])


def as_uint8_image(image, name="image"):
    """Convert one image to a 2-D ``uint8`` grey image.

    Rules (documented so results do not depend on a library's defaults):

    * ``(H, W)`` grey, or ``(H, W, 3)`` / ``(H, W, 4)`` RGB(A) converted by ITU-R 601 luma
      ``0.299 R + 0.587 G + 0.114 B`` (alpha ignored), rounded.
    * ``uint8`` is kept; ``bool`` becomes 0/255.
    * Other integer types (e.g. 16-bit microscopy) are kept when their maximum is at most 255,
      otherwise rescaled linearly by ``255 / max`` (never clipped, unlike the authors' PIL
      loading, which saturates 16-bit nuclei at 255).
    * Floats must be finite: values within ``[0, 1]`` are scaled by 255, any other range is
      stretched linearly from ``[min, max]`` to ``[0, 255]``.

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
    """
    arr = np.asarray(image)
    if arr.dtype == object:
        raise TypeError(f"{name} has dtype object; expected a numeric 2-D array")
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
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0:
            raise ValueError(f"{name} has negative integer values (min {lo})")
        if hi <= 255:
            return arr.astype(np.uint8)
        return np.rint(arr.astype(np.float64) * (255.0 / hi)).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite values")
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= 0.0 and hi <= 1.0:
            scaled = arr * 255.0
        elif hi > lo:
            scaled = (arr - lo) * (255.0 / (hi - lo))
        else:
            scaled = np.zeros_like(arr)
        return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    raise TypeError(f"{name} has unsupported dtype {arr.dtype}")


def _luma(rgb, name):
    if np.issubdtype(rgb.dtype, np.floating) and not np.all(np.isfinite(rgb)):
        raise ValueError(f"{name} contains NaN or infinite values")
    grey = rgb.astype(np.float64) @ _LUMA
    if rgb.dtype == np.uint8:
        return np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    # keep the original dtype family so the integer/float rules below still apply
    return np.rint(grey).astype(rgb.dtype) if np.issubdtype(rgb.dtype, np.integer) else grey


def as_mask(mask, name="mask"):
    """Convert one mask to a 2-D boolean array (any non-zero value is foreground).

    Parameters
    ----------
    mask : array-like of shape (H, W)
        Binary or label mask; RGB(A) masks count a pixel as foreground when any channel is
        non-zero.
    name : str, default="mask"
        Used in error messages.

    Returns
    -------
    mask : ndarray of shape (H, W), dtype bool

    Examples
    --------
    >>> as_mask([[0, 255], [1, 0]])
    array([[False,  True],
           [ True, False]])
    """
    arr = np.asarray(mask)
    if arr.dtype == object:
        raise TypeError(f"{name} has dtype object; expected a numeric 2-D array")
    if np.issubdtype(arr.dtype, np.floating) and np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN values")
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        arr = (arr[..., :3] != 0).any(axis=-1)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (H, W) array, got shape {arr.shape}")
    return arr != 0


def _as_list(X, name):
    if isinstance(X, np.ndarray) and X.dtype != object:
        if X.ndim == 2:
            raise ValueError(
                f"{name} is a single 2-D array of shape {X.shape}; pass a list of images "
                f"(e.g. [{name}]) or a 3-D stack (n_images, H, W)"
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
    return items


def check_images(X, name="X", allow_empty=False):
    """Validate a collection of images and convert each to 2-D ``uint8``.

    Parameters
    ----------
    X : list of array-like, object array, or ndarray of shape (n, H, W) or (n, H, W, 3)
        The images; they may have different sizes.
    name : str, default="X"
        Used in error messages.
    allow_empty : bool, default=False
        Whether an empty collection is accepted.

    Returns
    -------
    images : list of ndarray of shape (H_i, W_i), dtype uint8

    Examples
    --------
    >>> import numpy as np
    >>> [im.shape for im in check_images([np.zeros((4, 6)), np.ones((8, 8), bool)])]
    [(4, 6), (8, 8)]
    """
    items = _as_list(X, name)
    if not items and not allow_empty:
        raise ValueError(f"{name} is empty: at least one image is needed")
    return [as_uint8_image(im, name=f"{name}[{i}]") for i, im in enumerate(items)]


def check_masks(y, images, name="y"):
    """Validate masks against already checked images (same count, same shapes).

    Parameters
    ----------
    y : list of array-like or ndarray of shape (n, H, W)
        One mask per image.
    images : list of ndarray
        The images, as returned by :func:`check_images`.
    name : str, default="y"
        Used in error messages.

    Returns
    -------
    masks : list of ndarray of shape (H_i, W_i), dtype bool
    """
    if y is None:
        raise ValueError(f"{name} is required: one mask per image")
    items = _as_list(y, name)
    if len(items) != len(images):
        raise ValueError(f"{name} has {len(items)} masks but there are {len(images)} images")
    masks = []
    for i, (m, im) in enumerate(zip(items, images)):
        m = as_mask(m, name=f"{name}[{i}]")
        if m.shape != im.shape:
            raise ValueError(
                f"{name}[{i}] has shape {m.shape} but its image has shape {im.shape}"
            )
        masks.append(m)
    return masks


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
