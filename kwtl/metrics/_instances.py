"""Instance-level detection scores: objects matched one to one at IoU > 0.5."""

import numpy as np
from scipy import ndimage

__all__ = ["instance_labels", "match_instances"]


def instance_labels(mask):
    """Instance labels of a mask: kept when it holds several ids, else its 8-connected
    components (a binary mask has one value for all cells).

    Parameters
    ----------
    mask : array-like of shape (H, W), integer or bool

    Returns
    -------
    labels : ndarray of shape (H, W), int64
        0 is background, 1 … n one per object (consecutive).

    Examples
    --------
    >>> instance_labels([[255, 0, 255], [255, 0, 0]]).tolist()  # binary: components
    [[1, 0, 2], [1, 0, 0]]
    >>> instance_labels([[3, 3, 7], [0, 0, 7]]).tolist()  # touching ids stay apart
    [[1, 1, 2], [0, 0, 2]]
    """
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"a mask must be 2-D, got shape {arr.shape}")
    values = np.unique(arr[arr != 0])
    if len(values) <= 1:
        labels, _ = ndimage.label(arr != 0, structure=np.ones((3, 3), dtype=bool))
        return labels.astype(np.int64)
    _, inverse = np.unique(arr, return_inverse=True)
    labels = inverse.reshape(arr.shape).astype(np.int64)
    return labels if 0 in arr else labels + 1


def match_instances(y_true, y_pred, iou_threshold=0.5):
    """Match true and predicted objects one to one at IoU > ``iou_threshold``.

    With a threshold of 0.5 or more the matching is unique: an object can overlap another by
    more than half of their union only once. Both masks go through :func:`instance_labels`.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (H, W)
        Instance labels or binary masks.
    iou_threshold : float, default=0.5
        At least 0.5.

    Returns
    -------
    counts : dict
        ``true_objects``, ``found_objects``, ``matched``, and ``precision``
        (matched / found), ``recall`` (matched / true), ``f1`` (1.0 when both are empty).

    Examples
    --------
    >>> truth = [[1, 1, 0, 2], [1, 1, 0, 2]]
    >>> found = [[5, 5, 0, 0], [5, 0, 0, 0]]  # the first cell (IoU 0.75), not the second
    >>> match_instances(truth, found)["f1"]  # precision 1, recall 1/2
    0.666...
    """
    if not 0.5 <= float(iou_threshold) < 1.0:
        raise ValueError(f"iou_threshold must be in [0.5, 1), got {iou_threshold!r}")
    t = instance_labels(y_true)
    p = instance_labels(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true shape {t.shape} differs from y_pred shape {p.shape}")
    n_t, n_p = int(t.max(initial=0)), int(p.max(initial=0))
    both = (t > 0) & (p > 0)
    overlap = np.bincount(t[both] * (n_p + 1) + p[both], minlength=(n_t + 1) * (n_p + 1)).reshape(
        n_t + 1, n_p + 1
    )
    area_t = np.bincount(t.ravel(), minlength=n_t + 1)
    area_p = np.bincount(p.ravel(), minlength=n_p + 1)
    union = area_t[1:, None] + area_p[None, 1:] - overlap[1:, 1:]
    matched = int(np.sum(overlap[1:, 1:] > iou_threshold * union))
    precision = matched / n_p if n_p else float(n_t == 0)
    recall = matched / n_t if n_t else float(n_p == 0)
    f1 = 2 * matched / (n_t + n_p) if n_t + n_p else 1.0
    return {
        "true_objects": n_t,
        "found_objects": n_p,
        "matched": matched,
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
    }
