"""The annotation oracle: the only door to the target masks."""

import numpy as np

from ..datasets import PatchSet
from ..utils import as_mask

__all__ = ["Oracle"]


class Oracle:
    """Reveals target masks region by region and records every reveal.

    :class:`~kwtl.FewShotSegmentation` reads target labels only through an oracle, so the
    record shows exactly what an expert would have had to annotate.

    Parameters
    ----------
    masks : list of array-like
        The (hidden) true masks of the target pool, one per pool image.
    shapes : list of (int, int), optional
        Expected image shapes; a revealed mask of another shape is an error.

    Attributes
    ----------
    revealed_ : list of tuple
        ``(image_index, row, col, height, width)`` of every revealed region, in order.
    n_revealed_pixels_ : int
        Total revealed pixels (a region revealed twice counts twice).
    filter_reads_ : int
        Patches whose foreground was counted by :meth:`foreground_counts` (label reads that
        are not annotations; zero unless the authors' patch filter is used).

    Examples
    --------
    >>> import numpy as np
    >>> oracle = Oracle([np.eye(4)])
    >>> oracle.reveal(0, 1, 1, 2, 2).astype(int)
    array([[1, 0],
           [0, 1]])
    >>> oracle.revealed_
    [(0, 1, 1, 2, 2)]
    """

    def __init__(self, masks, shapes=None):
        self._masks = list(masks)
        self._shapes = None if shapes is None else [tuple(s) for s in shapes]
        if self._shapes is not None and len(self._shapes) != len(self._masks):
            raise ValueError(f"{len(self._masks)} masks but {len(self._shapes)} images")
        self._checked = {}
        self.revealed_ = []
        self.n_revealed_pixels_ = 0
        self.filter_reads_ = 0

    def __len__(self):
        return len(self._masks)

    def _mask(self, i):
        if i not in self._checked:
            m = as_mask(self._masks[i], name=f"target mask {i}")
            if self._shapes is not None and m.shape != self._shapes[i]:
                raise ValueError(
                    f"target mask {i} has shape {m.shape}, its image {self._shapes[i]}"
                )
            self._checked[i] = m
        return self._checked[i]

    def reveal(self, image, row=0, col=0, height=None, width=None):
        """The true mask of one region (default: the whole image), recorded."""
        image = int(image)
        if not 0 <= image < len(self._masks):
            raise IndexError(f"no target image {image} (there are {len(self._masks)})")
        m = self._mask(image)
        height = m.shape[0] - row if height is None else int(height)
        width = m.shape[1] - col if width is None else int(width)
        if row < 0 or col < 0 or row + height > m.shape[0] or col + width > m.shape[1]:
            raise ValueError(
                f"region {(row, col, height, width)} leaves mask {image} of shape {m.shape}"
            )
        self.revealed_.append((image, int(row), int(col), height, width))
        self.n_revealed_pixels_ += height * width
        return m[row : row + height, col : col + width].copy()

    def foreground_counts(self, patches):
        """Foreground pixel count under each patch, for the authors' patch filter.

        This reads labels of patches that are not revealed to the learner; every call adds
        the number of patches to ``filter_reads_`` so the leak is on record.
        """
        ph, pw = patches.patch_size
        counts = np.empty(len(patches), dtype=np.int64)
        for k, (i, r, c) in enumerate(patches.coords):
            counts[k] = np.count_nonzero(self._mask(int(i))[r : r + ph, c : c + pw])
        self.filter_reads_ += len(patches)
        return counts

    def reveal_patches(self, patches):
        """Reveal the masks under the patches of a :class:`~kwtl.datasets.PatchSet`.

        Returns a PatchSet with the same coordinates over per-image "annotation canvases"
        that hold the revealed pixels (unrevealed pixels are never read by it).
        """
        ph, pw = patches.patch_size
        canvases = {}
        for i, r, c in patches.coords:
            if i not in canvases:
                canvases[i] = np.zeros(patches.arrays[i].shape[:2], dtype=bool)
            canvases[i][r : r + ph, c : c + pw] = self.reveal(i, r, c, ph, pw)
        empty = np.zeros((0, 0), dtype=bool)
        # images without revealed patches get a placeholder of the right shape lazily
        arrays = [canvases.get(i, empty) for i in range(len(patches.arrays))]
        return _CanvasPatchSet(arrays, patches.coords, patches.patch_size, patches.arrays)


class _CanvasPatchSet(PatchSet):
    """A PatchSet over annotation canvases (skips shape checks of unrevealed images)."""

    def __init__(self, arrays, coords, patch_size, images):
        self.arrays = list(arrays)
        self.coords = np.asarray(coords, dtype=np.int64).reshape(-1, 3)
        self.patch_size = tuple(patch_size)
        self._images = images
