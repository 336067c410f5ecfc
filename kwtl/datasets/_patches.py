"""Patch extraction with provenance, lazy patch sets, and stitching back.

The grid is the authors': top-left offsets ``0, s, 2s, ...`` along each axis,
only windows that lie fully inside the image, row-major order. ``cover_border=True`` adds one
last window flush with the bottom/right edge so that every pixel is covered.
"""

import numbers

import numpy as np

__all__ = ["PatchSet", "extract_patches", "patch_coordinates", "stitch_patches"]


def _pair(value, name):
    if isinstance(value, numbers.Integral):
        value = (int(value), int(value))
    try:
        a, b = (int(v) for v in value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if a < 1 or b < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return a, b


def _axis_offsets(length, size, step, cover_border):
    offsets = list(range(0, length - size + 1, step))
    if cover_border and offsets and offsets[-1] != length - size:
        offsets.append(length - size)
    return offsets


def patch_coordinates(shapes, patch_size, stride, cover_border=False):
    """Top-left corners of the patch grid of several images.

    Parameters
    ----------
    shapes : list of (int, int)
        Image shapes ``(H, W)``.
    patch_size : int or (int, int)
        Window height and width.
    stride : int or (int, int)
        Step between windows along rows and columns.
    cover_border : bool, default=False
        Add a last window flush with the bottom/right border when the grid does not reach it.

    Returns
    -------
    coords : ndarray of shape (n_patches, 3), dtype int64
        Rows of ``(image_index, row, col)``, image by image, row-major.

    Raises
    ------
    ValueError
        If an image is smaller than the patch.

    Examples
    --------
    >>> patch_coordinates([(4, 6)], patch_size=4, stride=2)
    array([[0, 0, 0],
           [0, 0, 2]])
    """
    ph, pw = _pair(patch_size, "patch_size")
    sh, sw = _pair(stride, "stride")
    rows = []
    for i, shape in enumerate(shapes):
        h, w = shape[:2]
        if h < ph or w < pw:
            raise ValueError(
                f"image {i} of shape {(h, w)} is smaller than the patch size {(ph, pw)}; "
                "use a smaller patch_size"
            )
        rr = _axis_offsets(h, ph, sh, cover_border)
        cc = _axis_offsets(w, pw, sw, cover_border)
        grid = np.stack(np.meshgrid(rr, cc, indexing="ij"), axis=-1).reshape(-1, 2)
        rows.append(np.column_stack([np.full(len(grid), i), grid]))
    if not rows:
        return np.empty((0, 3), dtype=np.int64)
    return np.concatenate(rows).astype(np.int64)


class PatchSet:
    """A lazy set of patches: the images plus the provenance of every patch.

    Patches are cut on demand, so a pool of tens of thousands of 256² patches costs only
    its coordinates in memory. Indexing returns a stacked array of patches.

    Parameters
    ----------
    arrays : list of ndarray
        Source arrays (images or masks), each at least 2-D ``(H, W, ...)``.
    coords : array-like of shape (n_patches, 3)
        ``(array_index, row, col)`` of each patch's top-left corner.
    patch_size : int or (int, int)
        Patch height and width.

    Attributes
    ----------
    coords : ndarray of shape (n_patches, 3)
    patch_size : (int, int)

    Examples
    --------
    >>> import numpy as np
    >>> images = [np.arange(36, dtype=np.uint8).reshape(6, 6)]
    >>> patches = PatchSet.from_images(images, patch_size=4, stride=2)
    >>> len(patches), patches[[0, 3]].shape
    (4, (2, 4, 4))
    >>> patches.coords[3].tolist()
    [0, 2, 2]
    """

    def __init__(self, arrays, coords, patch_size):
        self.arrays = list(arrays)
        self.coords = np.asarray(coords, dtype=np.int64).reshape(-1, 3)
        self.patch_size = _pair(patch_size, "patch_size")
        ph, pw = self.patch_size
        for i, r, c in self.coords:
            if not 0 <= i < len(self.arrays):
                raise IndexError(f"patch coordinate names image {i} of {len(self.arrays)}")
            h, w = self.arrays[i].shape[:2]
            if r < 0 or c < 0 or r + ph > h or c + pw > w:
                raise ValueError(f"patch at {(i, r, c)} leaves image {i} of shape {(h, w)}")

    @classmethod
    def from_images(cls, arrays, patch_size, stride, cover_border=False):
        """Grid patches of a list of images (see :func:`patch_coordinates`)."""
        arrays = list(arrays)
        coords = patch_coordinates([a.shape for a in arrays], patch_size, stride, cover_border)
        return cls(arrays, coords, patch_size)

    @classmethod
    def from_stack(cls, stack):
        """Treat each item of an ``(n, H, W)`` stack as one whole patch."""
        stack = list(stack)
        if not stack:
            return cls([], np.empty((0, 3)), (1, 1))
        shape = stack[0].shape[:2]
        if any(a.shape[:2] != shape for a in stack):
            raise ValueError("all patches of a stack must have the same shape")
        coords = np.column_stack([np.arange(len(stack)), np.zeros((len(stack), 2))])
        return cls(stack, coords, shape)

    def __len__(self):
        return len(self.coords)

    def __getitem__(self, index):
        if isinstance(index, numbers.Integral):
            i, r, c = self.coords[index]
            ph, pw = self.patch_size
            return self.arrays[i][r : r + ph, c : c + pw]
        coords = self.coords[index]
        ph, pw = self.patch_size
        if len(coords) == 0:
            tail = self.arrays[0].shape[2:] if self.arrays else ()
            dtype = self.arrays[0].dtype if self.arrays else np.uint8
            return np.empty((0, ph, pw) + tail, dtype=dtype)
        # one slice per patch: coords are arbitrary (subsets, border-aligned last patches), so
        # skimage's view_as_windows, which needs a regular grid, does not do this job
        return np.stack([self.arrays[i][r : r + ph, c : c + pw] for i, r, c in coords])

    def subset(self, index):
        """A new :class:`PatchSet` with the selected patches (same source arrays)."""
        return PatchSet(self.arrays, self.coords[index], self.patch_size)

    def with_arrays(self, arrays):
        """The same patch coordinates over other arrays (e.g. the masks of the images)."""
        arrays = list(arrays)
        if len(arrays) != len(self.arrays):
            raise ValueError(f"expected {len(self.arrays)} arrays, got {len(arrays)}")
        for k, (a, b) in enumerate(zip(arrays, self.arrays)):
            if a.shape[:2] != b.shape[:2]:
                raise ValueError(f"array {k} has shape {a.shape[:2]}, expected {b.shape[:2]}")
        return PatchSet(arrays, self.coords, self.patch_size)

    def iter_batches(self, batch_size):
        """Yield ``(indices, patches)`` in order, ``batch_size`` patches at a time."""
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        for start in range(0, len(self), batch_size):
            idx = np.arange(start, min(start + batch_size, len(self)))
            yield idx, self[idx]

    def __repr__(self):
        return (
            f"PatchSet(n_patches={len(self)}, patch_size={self.patch_size}, "
            f"n_images={len(self.arrays)})"
        )


def extract_patches(images, patch_size, stride, cover_border=False):
    """Cut images into grid patches and return them with their provenance.

    Parameters
    ----------
    images : list of ndarray of shape (H_i, W_i)
    patch_size : int or (int, int)
    stride : int or (int, int)
    cover_border : bool, default=False
        See :func:`patch_coordinates`.

    Returns
    -------
    patches : ndarray of shape (n_patches, ph, pw)
    coords : ndarray of shape (n_patches, 3)
        ``(image_index, row, col)`` of each patch.

    Examples
    --------
    >>> import numpy as np
    >>> patches, coords = extract_patches([np.zeros((8, 8))], patch_size=4, stride=4)
    >>> patches.shape, coords.tolist()
    ((4, 4, 4), [[0, 0, 0], [0, 0, 4], [0, 4, 0], [0, 4, 4]])
    """
    patch_set = PatchSet.from_images(images, patch_size, stride, cover_border)
    return patch_set[np.arange(len(patch_set))], patch_set.coords


def stitch_patches(patches, coords, shapes, fill_value=np.nan):
    """Put patches back into images, averaging where they overlap.

    Parameters
    ----------
    patches : ndarray of shape (n_patches, ph, pw)
    coords : ndarray of shape (n_patches, 3)
        As returned by :func:`extract_patches`.
    shapes : list of (int, int)
        Output image shapes.
    fill_value : float, default=nan
        Value of pixels that no patch covers.

    Returns
    -------
    images : list of ndarray of shape (H_i, W_i), dtype float64

    Examples
    --------
    >>> import numpy as np
    >>> image = np.arange(16.0).reshape(4, 4)
    >>> patches, coords = extract_patches([image], patch_size=2, stride=1)
    >>> np.array_equal(stitch_patches(patches, coords, [image.shape])[0], image)
    True
    """
    patches = np.asarray(patches)
    coords = np.asarray(coords, dtype=np.int64).reshape(-1, 3)
    if len(patches) != len(coords):
        raise ValueError(f"{len(patches)} patches but {len(coords)} coordinates")
    ph, pw = patches.shape[1:3]
    sums = [np.zeros(tuple(s[:2]), dtype=np.float64) for s in shapes]
    counts = [np.zeros(tuple(s[:2]), dtype=np.int64) for s in shapes]
    for patch, (i, r, c) in zip(patches, coords):
        sums[i][r : r + ph, c : c + pw] += patch
        counts[i][r : r + ph, c : c + pw] += 1
    out = []
    for s, n in zip(sums, counts):
        with np.errstate(invalid="ignore", divide="ignore"):
            img = s / n
        img[n == 0] = fill_value
        out.append(img)
    return out
