"""Foreground intersection-over-union, the paper's metric."""

import numpy as np
from sklearn.metrics import make_scorer

from ..utils import as_mask

__all__ = ["iou_score", "mean_iou", "mean_iou_scorer", "SMOOTH"]

#: Smoothing added to intersection and union, so empty-vs-empty scores 1 (authors' value).
SMOOTH = 1e-4


def iou_score(y_true, y_pred, smooth=SMOOTH):
    """Foreground IoU of one image: ``(|P ∩ G| + smooth) / (|P ∪ G| + smooth)``.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (H, W)
        Masks; any non-zero value is foreground.
    smooth : float, default=1e-4

    Returns
    -------
    iou : float

    Examples
    --------
    >>> iou_score([[1, 1], [0, 0]], [[1, 0], [1, 0]])  # 1 shared of 3 pixels
    0.33335555...
    >>> iou_score([[0, 0]], [[0, 0]])
    1.0
    """
    t = as_mask(y_true, name="y_true")
    p = as_mask(y_pred, name="y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true shape {t.shape} differs from y_pred shape {p.shape}")
    inter = np.count_nonzero(t & p)
    union = np.count_nonzero(t | p)
    return float((inter + smooth) / (union + smooth))


def _as_mask_list(masks, name):
    if isinstance(masks, np.ndarray) and masks.dtype != object:
        if masks.ndim == 2:
            raise ValueError(f"{name} must be a list of 2-D masks or a (n, H, W) stack")
        return list(masks)
    return list(masks)


def mean_iou(y_true, y_pred, smooth=SMOOTH):
    """Mean over images of the per-image foreground IoU (the paper's "mIoU").

    Parameters
    ----------
    y_true, y_pred : list of array-like of shape (H_i, W_i), or (n, H, W) stacks

    Returns
    -------
    miou : float

    Examples
    --------
    >>> import numpy as np
    >>> round(mean_iou([np.eye(2), np.ones((2, 2))], [np.eye(2), np.zeros((2, 2))]), 4)
    0.5
    """
    t = _as_mask_list(y_true, "y_true")
    p = _as_mask_list(y_pred, "y_pred")
    if len(t) != len(p):
        raise ValueError(f"{len(t)} true masks but {len(p)} predicted masks")
    if not t:
        raise ValueError("mean_iou needs at least one image")
    return float(np.mean([iou_score(a, b, smooth) for a, b in zip(t, p)]))


#: scikit-learn scorer: ``mean_iou(y, estimator.predict(X))``.
mean_iou_scorer = make_scorer(mean_iou)
