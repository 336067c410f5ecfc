"""Pixel-level augmentations of the consistency score, vectorised over uint8 batches.

Each function takes a batch of 8-bit grey patches ``(k, h, w)`` and returns a new uint8
batch of the same shape that is **bit-identical** to the corresponding Pillow operation
applied patch by patch (verified against Pillow in ``tests/test_augment.py``):

* :func:`autocontrast` — ``PIL.ImageOps.autocontrast(img)`` (cut-off 0),
* :func:`brightness` — ``PIL.ImageEnhance.Brightness(img).enhance(factor)``,
* :func:`sharpness` — ``PIL.ImageEnhance.Sharpness(img).enhance(factor)``.

Pillow's C code computes in single precision and truncates toward zero when it stores an
8-bit result; the functions below do the same arithmetic in ``float32`` in the same order,
which is what makes them exact rather than off by one grey level here and there.
"""

import numpy as np

__all__ = ["AUGMENTATIONS", "autocontrast", "autocontrast_lut", "brightness", "sharpness"]

_SMOOTH_CENTER = np.float32(5.0 / 13.0)  # Pillow divides the kernel by its scale in float32
_SMOOTH_SIDE = np.float32(1.0 / 13.0)


def _check_batch(batch, name="batch"):
    batch = np.asarray(batch)
    if batch.dtype != np.uint8:
        raise ValueError(f"{name} must have dtype uint8, got {batch.dtype}")
    if batch.ndim == 2:
        raise ValueError(f"{name} must be a batch (k, h, w); wrap a single patch as batch[None]")
    if batch.ndim != 3:
        raise ValueError(f"{name} must have shape (k, h, w), got {batch.shape}")
    return batch


def _check_factor(factor):
    factor = float(factor)
    if not np.isfinite(factor):
        raise ValueError(f"the enhancement factor must be finite, got {factor}")
    return factor


def _blend(degenerate, image, factor):
    """Pillow's ``Image.blend(degenerate, image, factor)`` on uint8 arrays.

    ``out = trunc(float32(d) + float32(factor) * float32(x - d))``, clipped to [0, 255].
    """
    alpha = np.float32(factor)
    d = degenerate.astype(np.float32)
    diff = image.astype(np.int16) - degenerate.astype(np.int16)
    out = d + alpha * diff.astype(np.float32)
    # C casts a float to UINT8 by truncation toward zero; outside [0, 1] Pillow clips first.
    return np.clip(np.trunc(out), 0, 255).astype(np.uint8)


def autocontrast(batch):
    """Stretch each patch's grey range ``[min, max]`` linearly to ``[0, 255]``.

    Equals ``PIL.ImageOps.autocontrast(img)`` (no cut-off) on every patch: the lookup value
    of grey level ``v`` is ``int(v * scale + offset)`` with ``scale = 255 / (max - min)`` and
    ``offset = -min * scale`` in double precision (truncation, not rounding). A constant
    patch is returned unchanged.

    Parameters
    ----------
    batch : ndarray of shape (k, h, w), dtype uint8

    Returns
    -------
    out : ndarray of shape (k, h, w), dtype uint8

    Examples
    --------
    >>> import numpy as np
    >>> autocontrast(np.array([[[10, 20], [30, 40]]], dtype=np.uint8))
    array([[[  0,  85],
            [170, 255]]], dtype=uint8)
    """
    batch = _check_batch(batch)
    if batch.size == 0:
        return batch.copy()
    lut = autocontrast_lut(batch.min(axis=(1, 2)), batch.max(axis=(1, 2)))
    return np.take_along_axis(lut, batch.reshape(len(batch), -1).astype(np.intp), axis=1).reshape(
        batch.shape
    )


def autocontrast_lut(lo, hi):
    """Pillow's auto-contrast lookup tables for grey ranges ``[lo, hi]``.

    ``autocontrast`` of a patch is the pointwise map ``lut[v]`` of its pixels, with ``lo`` and
    ``hi`` the patch's minimum and maximum; applying the table of one patch to a whole image
    gives that patch's augmented pixels wherever the patch lies (what dense scoring uses).

    Parameters
    ----------
    lo, hi : array-like of int of shape (k,)
        Grey ranges; ``hi <= lo`` (a constant patch) gives the identity table.

    Returns
    -------
    lut : ndarray of shape (k, 256), dtype uint8

    Examples
    --------
    >>> autocontrast_lut([10], [40])[0, [10, 20, 40]]
    array([  0,  85, 255], dtype=uint8)
    """
    lo = np.atleast_1d(np.asarray(lo)).astype(np.float64)
    hi = np.atleast_1d(np.asarray(hi)).astype(np.float64)
    span = hi - lo
    flat = span <= 0
    scale = 255.0 / np.where(flat, 1.0, span)
    offset = -lo * scale
    # a 256-entry lookup table per patch, computed exactly like Pillow's Python loop
    levels = np.arange(256, dtype=np.float64)
    lut = np.clip(np.trunc(levels[None, :] * scale[:, None] + offset[:, None]), 0, 255)
    lut = lut.astype(np.uint8)
    lut[flat] = np.arange(256, dtype=np.uint8)
    return lut


def brightness(batch, factor):
    """Scale grey values by ``factor``: blend with a black image.

    Equals ``PIL.ImageEnhance.Brightness(img).enhance(factor)``:
    ``trunc(float32(factor) * x)`` clipped to [0, 255].

    Parameters
    ----------
    batch : ndarray of shape (k, h, w), dtype uint8
    factor : float
        1 returns a copy; 0 gives black; > 1 brightens (and saturates at 255).

    Returns
    -------
    out : ndarray of shape (k, h, w), dtype uint8

    Examples
    --------
    >>> import numpy as np
    >>> brightness(np.array([[[10, 100, 200]]], dtype=np.uint8), 1.3)
    array([[[ 13, 130, 255]]], dtype=uint8)
    """
    batch = _check_batch(batch)
    factor = _check_factor(factor)
    return _blend(np.zeros_like(batch), batch, factor)


def smooth(batch):
    """Pillow's ``ImageFilter.SMOOTH`` on each patch.

    3×3 kernel ``[[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13``; interior pixels are
    ``trunc(0.5 + Σ)`` with the sum accumulated in float32 row by row as Pillow does
    (i.e. rounded half up); the one-pixel border is copied unchanged. Patches narrower or
    shorter than 3 pixels are returned unchanged.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.zeros((1, 3, 3), np.uint8); x[0, 1, 1] = 130
    >>> smooth(x)[0]
    array([[ 0,  0,  0],
           [ 0, 50,  0],
           [ 0,  0,  0]], dtype=uint8)
    """
    batch = _check_batch(batch)
    out = batch.copy()
    k, h, w = batch.shape
    if h < 3 or w < 3 or k == 0:
        return out
    f = batch.astype(np.float32)
    side, center = _SMOOTH_SIDE, _SMOOTH_CENTER

    def row(r, mid):
        # Pillow's KERNEL1x3: in[x-1]*k0 + in[x]*k1 + in[x+1]*k2, evaluated left to right
        return (r[:, :, :-2] * side + r[:, :, 1:-1] * mid) + r[:, :, 2:] * side

    below, here, above = f[:, 2:, :], f[:, 1:-1, :], f[:, :-2, :]
    ss = np.float32(0.5) + row(below, side)
    ss = ss + row(here, center)
    ss = ss + row(above, side)
    out[:, 1:-1, 1:-1] = np.clip(np.trunc(ss), 0, 255).astype(np.uint8)
    return out


def sharpness(batch, factor):
    """Sharpen (``factor > 1``) or blur (``factor < 1``) each patch.

    Equals ``PIL.ImageEnhance.Sharpness(img).enhance(factor)``: a blend of the patch with its
    :func:`smooth`-ed version, ``trunc(S + factor · (x − S))`` in float32, clipped to
    [0, 255]. The one-pixel border is therefore unchanged.

    Parameters
    ----------
    batch : ndarray of shape (k, h, w), dtype uint8
    factor : float

    Returns
    -------
    out : ndarray of shape (k, h, w), dtype uint8

    Examples
    --------
    >>> import numpy as np
    >>> x = np.zeros((1, 3, 3), np.uint8); x[0, 1, 1] = 130
    >>> int(sharpness(x, 1.3)[0, 1, 1])  # 50 + 1.3 * (130 - 50)
    154
    """
    batch = _check_batch(batch)
    factor = _check_factor(factor)
    return _blend(smooth(batch), batch, factor)


def _autocontrast(batch, magnitude):
    return autocontrast(batch)


def _brightness(batch, magnitude):
    return brightness(batch, magnitude)


def _sharpness(batch, magnitude):
    return sharpness(batch, magnitude)


_autocontrast.__doc__ = "Auto-contrast; the magnitude is ignored (as in the authors' code)."
_brightness.__doc__ = "Brightness with factor ``magnitude``."
_sharpness.__doc__ = "Sharpness with factor ``magnitude``."

#: Name → ``function(batch_uint8, magnitude) -> batch_uint8`` of the consistency score.
AUGMENTATIONS = {
    "autocontrast": _autocontrast,
    "brightness": _brightness,
    "sharpness": _sharpness,
}
