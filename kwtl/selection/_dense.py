"""Dense scoring: per-pixel maps of whole images, candidate scores read off by box sums.

The paper scores every candidate patch separately, although neighbouring candidates on the
stride-30 grid share most of their pixels. FCRN is fully convolutional, so a pixel-scoring
selector can instead compute one per-pixel score map per image (one forward pass per
augmentation per image, see :meth:`~kwtl.models.FCRNSegmenter.image_logits`) and reduce each
candidate's window of that map:

* ``"sum"`` / ``"mean"``: box sums over a float64 integral image (summed-area table),
  O(1) per candidate;
* ``"max"``: a separable sliding-window maximum (:func:`scipy.ndimage.maximum_filter1d`);
* a callable: the candidates' windows are cropped from the map and passed to it in chunks,
  exactly as in per-patch scoring.

What differs from per-patch scoring (measured in ``benchmarks/RESULTS.md``): a patch scored
alone sees zero padding at its border and a max-pool grid anchored at its corner, a window of
a whole-image map sees the real neighbouring pixels and the image's pooling grid. Pixels
further than the receptive-field radius (23 px for FCRN) from the patch border are identical
when the patch offset is a multiple of 8; elsewhere values are close, not equal.
Patch-wise augmentations are discussed where they are implemented (auto-contrast in
:class:`~kwtl.selection.ConsistencySelector`).
"""

import numpy as np
import torch
from scipy.ndimage import maximum_filter1d

__all__ = ["box_reduce", "DenseScoringMixin"]

#: ``dense="auto"`` scores densely when the candidates cover each pixel at least this many
#: times on average: below it, per-patch scoring does no more work than whole images.
AUTO_MIN_COVERAGE = 2.0


def box_reduce(pixel_map, corners, patch_size, reduction):
    """Reduce the windows ``pixel_map[r:r+h, c:c+w]`` of several candidates.

    Parameters
    ----------
    pixel_map : ndarray of shape (H, W)
    corners : ndarray of shape (n, 2)
        Top-left ``(row, col)`` of each window; windows lie inside the map.
    patch_size : (int, int)
    reduction : {"mean", "sum", "max"} or callable
        A callable gets float32 windows ``(k, h, w)`` (chunks of at most 64) and returns
        ``k`` numbers.

    Returns
    -------
    values : ndarray of shape (n,), float64

    Examples
    --------
    >>> import numpy as np
    >>> m = np.arange(12, dtype=float).reshape(3, 4)
    >>> box_reduce(m, np.array([[0, 0], [1, 2]]), (2, 2), "sum").tolist()
    [10.0, 34.0]
    >>> box_reduce(m, np.array([[0, 0], [1, 2]]), (2, 2), "max").tolist()
    [5.0, 11.0]
    """
    pixel_map = np.asarray(pixel_map)
    corners = np.asarray(corners, dtype=np.intp).reshape(-1, 2)
    h, w = (int(v) for v in patch_size)
    rows, cols = corners[:, 0], corners[:, 1]
    if reduction in ("sum", "mean"):
        table = np.zeros((pixel_map.shape[0] + 1, pixel_map.shape[1] + 1), dtype=np.float64)
        np.cumsum(np.cumsum(pixel_map, axis=0, dtype=np.float64), axis=1, out=table[1:, 1:])
        sums = (
            table[rows + h, cols + w]
            - table[rows, cols + w]
            - table[rows + h, cols]
            + table[rows, cols]
        )
        return sums / (h * w) if reduction == "mean" else sums
    if reduction == "max":
        # window [i, i + size) at output i: origin -(size // 2) moves scipy's centred window
        m = maximum_filter1d(pixel_map, h, axis=0, origin=-(h // 2), mode="nearest")
        m = maximum_filter1d(m, w, axis=1, origin=-(w // 2), mode="nearest")
        return m[rows, cols].astype(np.float64)
    if callable(reduction):
        values = np.empty(len(corners), dtype=np.float64)
        for s in range(0, len(corners), 64):
            part = corners[s : s + 64]
            windows = np.stack([pixel_map[r : r + h, c : c + w] for r, c in part])
            out = np.asarray(reduction(windows.astype(np.float32, copy=False)), dtype=np.float64)
            if out.shape != (len(part),):
                raise ValueError(
                    f"the reduction callable must return one value per patch, shape "
                    f"({len(part)},), got shape {out.shape}"
                )
            values[s : s + len(part)] = out
        return values
    raise ValueError(f"unknown reduction {reduction!r}")


def check_dense(dense):
    if dense == "auto" or (isinstance(dense, (bool, np.bool_))):
        return dense
    raise ValueError(f"dense must be True, False or 'auto', got {dense!r}")


class DenseScoringMixin:
    """Adds ``dense`` scoring to a pixel-scoring selector (put it before BaseSelector).

    A selector implements :meth:`_dense_maps`; this mixin routes :meth:`_score_pool` to it
    when ``self.dense`` asks for it, and otherwise leaves per-patch scoring untouched.
    """

    def _use_dense(self, pool):
        dense = check_dense(self.dense)
        if dense != "auto":
            return bool(dense)
        owners = np.unique(pool.coords[:, 0])
        area = sum(int(np.prod(pool.arrays[i].shape[:2])) for i in owners)
        covered = len(pool) * pool.patch_size[0] * pool.patch_size[1]
        return covered >= AUTO_MIN_COVERAGE * area

    def _score_pool(self, pool, estimator):
        check_dense(self.dense)
        if not self._use_dense(pool):
            return super()._score_pool(pool, estimator)
        if not hasattr(estimator, "image_logits"):
            raise TypeError(
                f"dense scoring needs a segmenter with an image_logits method (e.g. "
                f"FCRNSegmenter), got {type(estimator).__name__}; use dense=False"
            )
        values = np.empty(len(pool), dtype=np.float64)
        owners = pool.coords[:, 0]
        with torch.no_grad(), self._scoring_context(estimator):
            for i in np.unique(owners):
                which = np.flatnonzero(owners == i)
                image = np.asarray(pool.arrays[i])
                if image.dtype != np.uint8 or image.ndim != 2:
                    raise ValueError(
                        f"dense scoring needs 2-D uint8 grey images, image {i} has dtype "
                        f"{image.dtype} and shape {image.shape}"
                    )
                corners = pool.coords[which, 1:]
                for pixel_map, part in self._dense_maps(image, corners, pool.patch_size, estimator):
                    if torch.is_tensor(pixel_map):
                        pixel_map = pixel_map.detach().to("cpu", torch.float32).numpy()
                    values[which[part]] = box_reduce(
                        pixel_map, corners[part], pool.patch_size, self.reduction
                    )
        return self._per_unit(values, pool)

    def _dense_maps(self, image, corners, patch_size, estimator):
        """Yield ``(pixel_map (H, W), candidates)`` pairs for one image (the hook).

        ``candidates`` selects the rows of ``corners`` whose score is read from that map
        (an index array or a slice); together the pairs must cover every candidate once.
        """
        raise NotImplementedError
