"""Instance labels from a foreground probability map or binary mask.

The foreground is split into connected components, and touching objects inside a component
are split by a watershed on the distance transform (the classic scikit-image recipe), with
two guards against over-splitting: seeds are the *regional* maxima of the distance map
(a flat ridge, as in an elongated cell, is one seed, not one every few pixels) that rise at
least ``_MIN_DYNAMIC`` pixels above the saddle to any higher maximum, and of two seeds
closer than ``min_distance`` in one component the lower one is dropped (its pixels flood
from the other). The spacing is done here on the few seed points (a k-d tree) rather than
by :func:`skimage.feature.peak_local_max` with ``labels=``, which loops over every
component: the same greedy rule (highest first) in less time.
"""

import numbers

import numpy as np
from scipy import ndimage

__all__ = ["label_instances"]

# A seed must stand this many pixels (of distance to the background) above the saddle
# that joins it to a higher one: pixel-level wiggles of a cell's outline make maxima of
# height < 1 that are not separate cells.
_MIN_DYNAMIC = 1.0
_EIGHT = np.ones((3, 3), dtype=bool)


def _foreground(image, threshold):
    arr = np.asarray(image)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(
            f"expected one non-empty 2-D (H, W) probability map or mask, got shape {arr.shape}"
        )
    if arr.dtype == bool:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"unsupported dtype {arr.dtype}: expected bool, integers or floats")
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"threshold must be a number, got {threshold!r}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise ValueError("the probability map contains NaN or infinite values")
    return arr >= threshold


def _check_int(value, name, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def _spaced(rows, cols, heights, components, min_distance):
    """Indices of the seeds kept: from the highest down, a seed within ``min_distance``
    (Chebyshev) of a kept seed of the same component is dropped (ties: raster order)."""
    from scipy.spatial import cKDTree

    order = np.lexsort((cols, rows, -heights))
    points = np.column_stack([rows, cols])
    tree = cKDTree(points)
    component = components[rows, cols]
    dropped = np.zeros(len(rows), dtype=bool)
    kept = []
    for i in order:
        if dropped[i]:
            continue
        kept.append(i)
        near = tree.query_ball_point(points[i], r=min_distance - 0.5, p=np.inf)
        near = np.asarray(near, dtype=np.intp)
        dropped[near[component[near] == component[i]]] = True
    return np.sort(np.asarray(kept, dtype=np.intp))


def _seeds(distance, components, min_distance):
    """One marker per retained regional maximum of ``distance`` (labels 1..k)."""
    from skimage.morphology import h_maxima

    # per component (exact: the zero background separates them), on its bounding box only,
    # since the reconstruction inside h_maxima sorts every pixel it is given
    # A component whose deepest pixel is under 1 + _MIN_DYNAMIC has at most one seed (any
    # saddle inside is >= 1): the fallback below gives it that one, without a call.
    maxima = np.zeros(distance.shape, dtype=bool)
    n_components = int(components.max())
    deepest = ndimage.maximum(distance, components, np.arange(1, n_components + 1))
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None or deepest[index - 1] < 1.0 + _MIN_DYNAMIC:
            continue
        inside = components[box] == index
        maxima[box] |= (
            h_maxima(np.where(inside, distance[box], 0.0), _MIN_DYNAMIC).astype(bool) & inside
        )
    regions, n_regions = ndimage.label(maxima, structure=_EIGHT)
    markers = np.zeros(distance.shape, dtype=np.int32)
    n_seeds = 0
    if n_regions:
        # one representative pixel per maximum region, carrying the region's height
        index = np.arange(1, n_regions + 1)
        rows, cols = (
            np.array(ndimage.maximum_position(distance, regions, index), dtype=np.intp)
            .reshape(-1, 2)
            .T
        )
        keep = _spaced(rows, cols, distance[rows, cols], components, min_distance)
        n_seeds = len(keep)
        markers[rows[keep], cols[keep]] = np.arange(1, n_seeds + 1)
    # every component gets a seed, even one h_maxima saw nothing in
    seeded = np.zeros(n_components + 1, dtype=bool)
    seeded[components[markers > 0]] = True
    missing = np.flatnonzero(~seeded[1:]) + 1
    if missing.size:
        extra = ndimage.maximum_position(distance, components, missing)
        rows, cols = np.array(extra, dtype=np.intp).reshape(-1, 2).T
        markers[rows, cols] = np.arange(n_seeds + 1, n_seeds + 1 + missing.size)
    return markers


def label_instances(probability_or_binary, threshold=0.5, min_distance=5, min_size=16):
    """Split a foreground map into instance labels (connected components + watershed).

    The foreground (``probability_or_binary >= threshold``; a boolean mask as it is) is
    split into 8-connected components; components smaller than ``min_size`` pixels are
    removed; touching objects inside a component are separated by a watershed of the
    negated Euclidean distance transform (:func:`scipy.ndimage.distance_transform_edt`,
    :func:`skimage.segmentation.watershed`), seeded at the regional maxima of the
    distance (:func:`skimage.morphology.h_maxima`, height at least 1 pixel above the
    saddle to a higher maximum) kept at least ``min_distance`` pixels apart (from the
    highest down, as :func:`skimage.feature.peak_local_max` spaces its peaks). A flat ridge of the distance, as in an
    elongated cell, is one seed; two round cells that touch through a neck narrower than
    themselves become two labels.

    The result is a Cellpose-style mask (0 = background, 1..n = objects): it opens as a
    labels layer in napari (``viewer.add_labels(labels)``) and is written by
    :func:`kwtl.datasets.write_mask` as ``<image>_masks.png``/``.tif`` for Cellpose.

    Parameters
    ----------
    probability_or_binary : array-like of shape (H, W)
        A probability map (floats), a binary or 0/255 mask (numbers), or a boolean mask.
    threshold : float, default=0.5
        Foreground is ``probability_or_binary >= threshold`` (the rule of
        :meth:`FCRNSegmenter.predict <kwtl.models.FCRNSegmenter.predict>`); ignored for
        boolean input.
    min_distance : int, default=5
        Smallest distance in pixels (Chebyshev) between two seeds in one component, i.e.
        about the radius of the smallest cell that should be split from its neighbour.
    min_size : int, default=16
        Components with fewer pixels are removed as specks (before splitting); 0 keeps all.

    Returns
    -------
    labels : ndarray of shape (H, W), dtype uint16 (uint32 beyond 65535 objects)
        0 is background; objects are numbered ``1..n`` consecutively in raster order of
        their first pixel (top to bottom, left to right).

    Raises
    ------
    ValueError
        If the input is not a non-empty 2-D array, holds NaN/inf, or ``min_distance`` /
        ``min_size`` is not a non-negative int (``min_distance >= 1``).

    Examples
    --------
    Two touching discs become two objects, and a speck disappears:

    >>> import numpy as np
    >>> rows, cols = np.mgrid[:30, :50]
    >>> discs = ((rows - 15) ** 2 + (cols - 14) ** 2 <= 100) | (
    ...     (rows - 15) ** 2 + (cols - 32) ** 2 <= 100)
    >>> discs[0, 49] = True
    >>> labels = label_instances(discs)
    >>> labels.dtype, np.unique(labels).tolist()
    (dtype('uint16'), [0, 1, 2])
    >>> int(labels[15, 14]), int(labels[15, 32]), int(labels[0, 49])
    (1, 2, 0)
    """
    foreground = _foreground(probability_or_binary, threshold)
    min_distance = _check_int(min_distance, "min_distance", 1)
    min_size = _check_int(min_size, "min_size", 0)
    components, n_components = ndimage.label(foreground, structure=_EIGHT)
    if n_components and min_size > 1:
        sizes = np.bincount(components.ravel())
        small = sizes < min_size
        small[0] = False
        if small.any():
            foreground = foreground & ~small[components]
            components, n_components = ndimage.label(foreground, structure=_EIGHT)
    if n_components == 0:
        return np.zeros(foreground.shape, dtype=np.uint16)

    from skimage.segmentation import watershed

    distance = ndimage.distance_transform_edt(foreground)
    markers = _seeds(distance, components, min_distance)
    labels = watershed(-distance, markers, mask=foreground, connectivity=2)
    # number the objects 1..n in raster order of their first pixel
    values, first = np.unique(labels.ravel(), return_index=True)
    objects = values[values > 0]
    order = np.argsort(first[values > 0], kind="stable")
    lookup = np.zeros(int(values.max()) + 1, dtype=np.int64)
    lookup[objects[order]] = np.arange(1, len(objects) + 1)
    dtype = np.uint16 if len(objects) <= np.iinfo(np.uint16).max else np.uint32
    return lookup[labels].astype(dtype)
