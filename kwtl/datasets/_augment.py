"""Random label-preserving transforms of training patches (the fine-tuning recipe's augmentation)."""

import numbers

import numpy as np
from sklearn.base import BaseEstimator

__all__ = ["PatchAugmenter", "dihedral"]


def dihedral(array, k):
    """The ``k``-th of the 8 symmetries of the square (``k`` in 0..7).

    ``k % 4`` quarter turns counter-clockwise (:func:`numpy.rot90`), then, for ``k >= 4``, a
    left-right flip. Non-square arrays allow only ``k`` in {0, 2, 4, 6} (the shape is kept).

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([[1, 2], [3, 4]])
    >>> dihedral(a, 1).tolist(), dihedral(a, 4).tolist()
    ([[2, 4], [1, 3]], [[2, 1], [4, 3]])
    """
    k = int(k)
    if not 0 <= k < 8:
        raise ValueError(f"k must be in 0..7, got {k}")
    if k % 2 and array.shape[0] != array.shape[1]:
        raise ValueError(
            f"a quarter turn changes the shape of a {array.shape[0]}x"
            f"{array.shape[1]} array; use k in (0, 2, 4, 6)"
        )
    out = np.rot90(array, k % 4)
    return np.fliplr(out) if k >= 4 else out


class PatchAugmenter(BaseEstimator):
    """Random label-preserving transforms of an (image patch, mask patch) pair.

    Each call draws, from the generator it is given and in this order: a zoom factor (if
    ``scale``), one of the 8 symmetries of the square (if ``flips``), a gamma (if ``gamma``),
    a contrast factor and a brightness offset (if ``intensity``). The geometry moves image
    and mask together (bilinear image, nearest-neighbour mask, mirrored at the borders);
    intensity changes touch the image only. Images stay 8-bit, as the network sees them.

    Parameters
    ----------
    flips : bool, default=True
        A uniformly drawn symmetry of the square (flips and quarter turns; only the
        shape-keeping half for non-square patches). Microscopy has no preferred orientation.
    intensity : float, default=0.0
        Contrast factor ``c ~ U(1 - intensity, 1 + intensity)`` about the patch mean and
        brightness offset ``b ~ U(-intensity, intensity) * 128`` grey levels (128 is half the
        network's input range): ``x -> mean + c * (x - mean) + b``. 0 disables.
    gamma : float, default=0.0
        ``x -> 255 * (x / 255) ** g`` with ``log g ~ U(-gamma, gamma)``. 0 disables.
    scale : float, default=0.0
        Zoom about the patch centre by ``s``, ``log s ~ U(-log(1 + scale), log(1 + scale))``
        (``s > 1`` magnifies). 0 disables.

    Examples
    --------
    >>> import numpy as np
    >>> from kwtl.datasets import PatchAugmenter
    >>> image = np.arange(16, dtype=np.uint8).reshape(4, 4)
    >>> mask = image > 7
    >>> aug = PatchAugmenter(flips=True, intensity=0.1)
    >>> x, y = aug.transform_pair(image, mask, np.random.default_rng(0))
    >>> x.dtype, y.dtype, x.shape, int(y.sum())
    (dtype('uint8'), dtype('bool'), (4, 4), 8)
    """

    def __init__(self, flips=True, intensity=0.0, gamma=0.0, scale=0.0):
        self.flips = flips
        self.intensity = intensity
        self.gamma = gamma
        self.scale = scale

    def _validate(self):
        if not isinstance(self.flips, (bool, np.bool_)):
            raise ValueError(f"flips must be True or False, got {self.flips!r}")
        for name in ("intensity", "gamma", "scale"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, numbers.Real)
                or not 0 <= value < (1 if name == "intensity" else np.inf)
            ):
                bound = "[0, 1)" if name == "intensity" else ">= 0"
                raise ValueError(f"{name} must be a number in {bound}, got {value!r}")

    @property
    def is_identity(self):
        """True when no transform is switched on."""
        return not (self.flips or self.intensity or self.gamma or self.scale)

    def transform_pair(self, image, mask, rng):
        """One random draw applied to a 2-D uint8 ``image`` and its ``mask``.

        Parameters
        ----------
        image : ndarray of shape (h, w), uint8
        mask : ndarray of shape (h, w)
            Foreground = non-zero.
        rng : numpy.random.Generator

        Returns
        -------
        image : ndarray of shape (h, w), uint8
        mask : ndarray of shape (h, w), bool
        """
        self._validate()
        image = np.asarray(image)
        mask = np.asarray(mask) != 0
        if image.ndim != 2 or image.dtype != np.uint8 or mask.shape != image.shape:
            raise ValueError(
                f"expected a 2-D uint8 image and a mask of its shape, got "
                f"{image.dtype} {image.shape} and {mask.shape}"
            )
        x = image.astype(np.float32)
        if self.scale:
            bound = np.log1p(float(self.scale))
            x, mask = zoom_pair(x, mask, float(np.exp(rng.uniform(-bound, bound))))
        if self.flips:
            square = image.shape[0] == image.shape[1]
            k = int(rng.integers(8)) if square else 2 * int(rng.integers(4))
            x, mask = dihedral(x, k), dihedral(mask, k)
        if self.gamma:
            g = float(np.exp(rng.uniform(-self.gamma, self.gamma)))
            x = 255.0 * (np.clip(x, 0, 255) / 255.0) ** g
        if self.intensity:
            c = rng.uniform(1 - self.intensity, 1 + self.intensity)
            b = rng.uniform(-self.intensity, self.intensity) * 128.0
            mean = x.mean()
            x = mean + c * (x - mean) + b
        out = np.clip(np.rint(x), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(out), np.ascontiguousarray(mask)


def _mirror(coords, n):
    """Fold coordinates into [0, n - 1] by reflection about the edge pixels' centres
    (scipy.ndimage's ``mode="mirror"``: ... c b | a b c d | c b ...)."""
    if n == 1:
        return np.zeros_like(coords)
    period = 2 * (n - 1)
    folded = np.mod(coords, period)
    return np.where(folded > n - 1, period - folded, folded)


def zoom_pair(image, mask, factor):
    """Zoom ``image`` (bilinear) and ``mask`` (nearest) by ``factor`` about the centre,
    keeping the shape; pixels from beyond the border are mirrored (as ``mode="mirror"`` of
    :func:`scipy.ndimage.affine_transform`).

    The output pixel ``(y, x)`` samples the input at ``c + (y - c) / factor`` per axis, with
    ``c = (n - 1) / 2`` the centre. A zoom is separable, so both interpolations run as two
    1-D passes (a few milliseconds for a 256² patch).
    """
    if factor == 1.0:
        return image, mask
    out, out_mask = np.asarray(image), np.asarray(mask)
    if not np.issubdtype(out.dtype, np.floating):
        out = out.astype(np.float32)
    for axis in (0, 1):
        n = out.shape[axis]
        centre = (n - 1) / 2.0
        src = _mirror(centre + (np.arange(n) - centre) / factor, n)
        low = np.minimum(np.floor(src).astype(np.intp), n - 1)
        high = np.minimum(low + 1, n - 1)
        w = src - low
        shape = [1, 1]
        shape[axis] = n
        w = w.reshape(shape)
        out = np.take(out, low, axis=axis) * (1 - w) + np.take(out, high, axis=axis) * w
        out_mask = np.take(out_mask, np.rint(src).astype(np.intp), axis=axis)
    return out, out_mask.astype(bool)
