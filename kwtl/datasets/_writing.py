"""Writing image and mask files (PNG, TIFF), atomically and never over a user's file silently."""

import io
from pathlib import Path

import numpy as np

from ..utils._atomic import atomic_write
from ._formats import _JPEG, _TIFF, IMAGE_EXTENSIONS, MASK_EXTENSIONS

__all__ = ["write_image", "write_mask"]


def _check_target(path, overwrite, extensions, what):
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in extensions:
        raise ValueError(
            f"cannot write {what} {path}: unsupported extension {path.suffix!r} "
            f"(supported: {', '.join(extensions)})"
        )
    if path.is_dir():
        raise IsADirectoryError(f"cannot write {what} {path}: it is a folder")
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists; kwtl does not overwrite files unless overwrite=True"
        )
    return path, suffix


def _encode(path, suffix, arr):
    """Write ``arr`` atomically in the format of ``suffix``."""
    buffer = io.BytesIO()  # encoded in memory, so a failed encoding leaves no file
    if suffix in _TIFF:
        import tifffile

        photometric = "rgb" if arr.ndim == 3 else "minisblack"
        tifffile.imwrite(buffer, arr, photometric=photometric, compression="zlib")
    else:
        from PIL import Image

        # uint16 grey becomes Pillow mode I;16, written as a 16-bit PNG
        if suffix == ".png":
            Image.fromarray(arr).save(buffer, format="PNG")
        else:
            Image.fromarray(arr).save(buffer, format="JPEG", quality=95)
    data = buffer.getvalue()
    return atomic_write(path, lambda f: f.write(data))


def write_mask(path, labels, overwrite=False, *, dtype=None):
    """Write a binary or instance-label mask as PNG or TIFF (by extension), atomically.

    The values are written as they are, in the smallest unsigned type that holds them:
    PNG as 8-bit when the largest label is below 256, else 16-bit (at most 65535 labels:
    use TIFF beyond); TIFF as 8-, 16- or 32-bit. A boolean mask is written 0/255 (8-bit),
    which every viewer shows and :func:`read_mask` reads back as binary. Integer labels
    written this way open as a napari labels layer and as Cellpose masks
    (``x_masks.png``/``x_masks.tif``). The file is written to a temporary name beside
    ``path`` and renamed over it, so a reader never sees half a file.

    Parameters
    ----------
    path : str or path-like
        ``.png``, ``.tif`` or ``.tiff``; parent folders are created.
    labels : array-like of shape (H, W)
        Bool, or non-negative integers (floats that are whole numbers are accepted).
    overwrite : bool, default=False
        Whether an existing file may be replaced.
    dtype : numpy unsigned integer type or None, default=None
        Write at least this type (e.g. ``np.uint16``, so that every instance-label file of
        a folder has the same depth, whatever its number of cells); None: the smallest.

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    ValueError
        If the extension is not PNG/TIFF, ``labels`` is not 2-D, has negative or
        fractional values, or more than 65535 labels for a PNG.

    Examples
    --------
    >>> import tempfile, os
    >>> import numpy as np
    >>> from kwtl.datasets import read_mask
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = write_mask(os.path.join(tmp, "a_masks.png"), np.array([[0, 1], [300, 2]]))
    ...     back = read_mask(path)
    >>> back, back.dtype
    (array([[  0,   1],
           [300,   2]], dtype=uint16), dtype('uint16'))
    """
    path, suffix = _check_target(path, overwrite, MASK_EXTENSIONS, "mask")
    arr = np.asarray(labels)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"a mask must be a non-empty 2-D (H, W) array, got shape {arr.shape}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * np.uint8(255)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.rint(arr)):
            raise ValueError(
                "mask labels must be whole numbers (got fractional or non-finite values; "
                "for a probability map use write_image)"
            )
    elif not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"mask labels must be bool or integers, got dtype {arr.dtype}")
    if arr.min() < 0:
        raise ValueError(f"mask labels must be non-negative, got min {arr.min()}")
    top = int(arr.max())
    if suffix == ".png" and top > 65535:
        raise ValueError(
            f"{path}: a PNG mask holds labels up to 65535, the largest here is {top}; "
            "write a .tif instead"
        )
    smallest = np.uint8 if top < 256 else np.uint16 if top < 65536 else np.uint32
    if dtype is not None:
        if np.dtype(dtype) not in (np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.uint32)):
            raise ValueError(f"dtype must be uint8, uint16 or uint32, got {dtype!r}")
        if suffix == ".png" and np.dtype(dtype) == np.dtype(np.uint32):
            raise ValueError("a PNG mask is at most 16-bit; write a .tif for uint32")
        smallest = np.promote_types(smallest, dtype).type
    return _encode(path, suffix, arr.astype(smallest))


def write_image(path, image, overwrite=False):
    """Write an image, overlay or probability map as PNG, TIFF or JPEG, atomically.

    ``uint8`` grey ``(H, W)`` or colour ``(H, W, 3|4)`` images are written as they are
    (JPEG: quality 95, no alpha); ``uint16`` as 16-bit PNG or TIFF; ``bool`` as 0/255.
    **Float** images must lie in [0, 1] (a probability map): a TIFF gets them as 16-bit,
    ``round(p * 65535)``, and a PNG or JPEG as 8-bit, ``round(p * 255)``; read back with
    ``tifffile.imread(path) / 65535`` (or ``/ 255``). The file is written to a temporary
    name beside ``path`` and renamed over it.

    Parameters
    ----------
    path : str or path-like
        ``.png``, ``.tif``, ``.tiff``, ``.jpg`` or ``.jpeg``; parent folders are created.
    image : array-like of shape (H, W) or (H, W, 3|4)
    overwrite : bool, default=False
        Whether an existing file may be replaced.

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    FileExistsError
        If ``path`` exists and ``overwrite`` is False.
    ValueError
        If the extension, shape, dtype or value range is not supported.

    Examples
    --------
    >>> import tempfile, os
    >>> import numpy as np
    >>> import tifffile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = write_image(os.path.join(tmp, "proba.tif"), np.array([[0.0, 0.5, 1.0]]))
    ...     stored = tifffile.imread(path)
    >>> stored, stored.dtype
    (array([[    0, 32768, 65535]], dtype=uint16), dtype('uint16'))
    """
    path, suffix = _check_target(path, overwrite, IMAGE_EXTENSIONS, "image")
    arr = np.asarray(image)
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4))) or arr.size == 0:
        raise ValueError(
            f"an image must be (H, W) grey or (H, W, 3|4) colour, got shape {arr.shape}"
        )
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * np.uint8(255)
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or arr.min() < 0 or arr.max() > 1:
            raise ValueError(
                "float images are written as probability maps and must lie in [0, 1]; "
                "convert other data to uint8 or uint16 first"
            )
        scale, dtype = (65535, np.uint16) if suffix in _TIFF else (255, np.uint8)
        arr = np.rint(arr * scale).astype(dtype)
    elif arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(
            f"images are written from uint8, uint16, bool or float in [0, 1], got dtype {arr.dtype}"
        )
    if suffix in _JPEG:
        if arr.dtype != np.uint8:
            raise ValueError(f"{path}: JPEG holds 8-bit data only; write a .png or .tif")
        if arr.ndim == 3 and arr.shape[-1] == 4:
            raise ValueError(f"{path}: JPEG has no alpha channel; write a .png")
    if suffix == ".png" and arr.dtype == np.uint16 and arr.ndim == 3:
        raise ValueError(f"{path}: 16-bit colour PNG is not supported; write a .tif")
    return _encode(path, suffix, arr)
