"""kwtl's intensity policy: any image becomes 2-D 8-bit grey (rules: :func:`check_images`).

kwtl works on 2-D 8-bit grey images because the paper's augmentations (auto-contrast,
brightness, sharpness) and pseudo-label thresholds are defined on 8-bit values.
"""

import numpy as np

__all__ = ["PERCENTILES", "as_uint8_image", "normalize_uint8"]

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
