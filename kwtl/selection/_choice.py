"""What a selector chose, and the choice rules that do not depend on the scores' meaning."""

import dataclasses

import numpy as np

from ..datasets import PatchSet

__all__ = ["Support", "choose_non_overlapping"]


@dataclasses.dataclass(frozen=True)
class Support:
    """What a selector chose: the candidates to annotate, best first.

    Attributes
    ----------
    indices : ndarray of int, shape (n,)
        Candidate indices: positions in the pool's patches (``unit="patch"``) or image
        indices (``unit="image"``).
    coords : ndarray of int, shape (n, 3)
        Their ``(pool_image_index, row, col)``; with ``unit="image"`` row = col = 0.
    scores : ndarray, shape (n, ...)
        Their rows of the selector's ``scores_``.
    patches : PatchSet
        The patches whose masks the oracle reveals: the chosen patches, or every pool patch
        of the chosen images (``unit="image"``).
    """

    indices: np.ndarray
    coords: np.ndarray
    scores: np.ndarray
    patches: PatchSet


def choose_non_overlapping(order, coords, size, budget):
    """The first ``budget`` candidates of ``order`` whose windows overlap no better one's.

    Greedy over a ranking (best first): a candidate is kept when its ``size`` window
    overlaps none of the windows already kept in the same image, so an annotator never
    draws the same pixel twice. Fewer than ``budget`` come back when the ranking runs out.

    Parameters
    ----------
    order : array-like of int
        Candidate indices, best first (e.g. ``selector.rank(scores, len(scores))``).
    coords : array-like of shape (n_candidates, 3)
        ``(image, row, col)`` of every candidate (e.g. ``PatchSet.coords``).
    size : int or (int, int)
        Window height and width (the patch size).
    budget : int
        How many to keep.

    Returns
    -------
    chosen : ndarray of intp, at most ``budget`` long, in ``order``'s order

    Examples
    --------
    >>> coords = [[0, 0, 0], [0, 0, 8], [0, 0, 16], [1, 0, 0]]
    >>> choose_non_overlapping([1, 0, 2, 3], coords, 16, 3).tolist()
    [1, 3]
    >>> choose_non_overlapping([0, 2, 1, 3], coords, 16, 3).tolist()
    [0, 2, 3]
    """
    height, width = (size, size) if np.isscalar(size) else size
    coords = np.asarray(coords)
    chosen, boxes = [], {}
    for k in order:
        i, r, c = (int(v) for v in coords[k])
        if any(abs(r - r2) < height and abs(c - c2) < width for r2, c2 in boxes.get(i, ())):
            continue
        chosen.append(int(k))
        boxes.setdefault(i, []).append((r, c))
        if len(chosen) == budget:
            break
    return np.asarray(chosen, dtype=np.intp)
