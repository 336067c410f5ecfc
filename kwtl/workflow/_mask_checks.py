"""Checks of the annotator's masks before fine-tuning: what trains silently otherwise.

Three mistakes a new user makes and that a model learns from without complaint:

* **inverted masks** (background drawn as cells): far more foreground than cells cover, and
  far more than the model predicts on the same pictures (:func:`check_foreground`);
* **painted pictures** saved as masks (cells painted red over the image): read as a colour
  mask, every grey level becomes an "instance" (:func:`check_mask_labels`);
* **JPEG masks**: lossy, they invent values at the cells' edges; kwtl reads masks only as
  PNG or TIFF and names a JPEG it finds in their place (:func:`lossy_siblings`).

Each check returns a one-line problem (or None) that names the file or the numbers and the
fix; the workflow refuses to fine-tune on them unless the user accepts the masks.
"""

from pathlib import Path

import numpy as np

__all__ = [
    "INVERTED_FOREGROUND",
    "FAR_ABOVE_PREDICTION",
    "check_foreground",
    "check_mask_labels",
    "lossy_siblings",
]

#: Annotated foreground above this fraction of the pixels: likely inverted masks.
INVERTED_FOREGROUND = 0.90
#: Annotated foreground over half of the pixels and this much above the model's predicted
#: foreground on the same items: likely inverted (cells are rarely the majority of pixels,
#: and a model that over-predicts errs the other way, as on EM where true foreground is ~5 %).
FAR_ABOVE_PREDICTION = 0.30
#: Masks with fewer distinct values are not checked for scattered values (binary masks, or
#: a few classes, hold many cells per value).
_FEW_VALUES = 8
#: Pieces of fewer pixels are specks; a mask is mostly made of cells, not specks (a picture
#: with many colours is mostly specks: every colour a pixel here and there).
_SPECK = 5
_MAX_SPECKS = 0.2
_JPEG = (".jpg", ".jpeg", ".JPG", ".JPEG", ".jpe")


def check_foreground(masks, predicted_fraction=None):
    """A problem line when the annotated foreground looks inverted, else None.

    Parameters
    ----------
    masks : list of ndarray of shape (H, W), bool
        The annotated foreground of every item.
    predicted_fraction : float or None, default=None
        The model's predicted foreground fraction on the same items (None: not compared).

    Returns
    -------
    problem : str or None

    Examples
    --------
    >>> import numpy as np
    >>> check_foreground([np.ones((10, 10), bool)]) is not None  # all foreground
    True
    >>> mask = np.zeros((10, 10), bool); mask[:2] = True  # 20 %
    >>> check_foreground([mask], predicted_fraction=0.7) is None  # fewer than predicted: fine
    True
    >>> check_foreground([~mask], predicted_fraction=0.2)  # doctest: +ELLIPSIS
    'the masks mark 80.0% of the pixels as cells, the model predicts 20.0% on the same ...
    """
    pixels = sum(m.size for m in masks)
    if not pixels:
        return None
    fraction = sum(int(np.count_nonzero(m)) for m in masks) / pixels
    if fraction > INVERTED_FOREGROUND:
        return (
            f"the masks mark {100 * fraction:.1f}% of the pixels as cells (more than "
            f"{100 * INVERTED_FOREGROUND:.0f}%): are they inverted (background drawn as "
            "cells)?"
        )
    if (
        predicted_fraction is not None
        and fraction > 0.5
        and fraction - predicted_fraction > FAR_ABOVE_PREDICTION
    ):
        return (
            f"the masks mark {100 * fraction:.1f}% of the pixels as cells, the model "
            f"predicts {100 * predicted_fraction:.1f}% on the same pictures: are they "
            "inverted (background drawn as cells)?"
        )
    return None


def check_mask_labels(labels, path, colour=False):
    """A problem line when a mask's values are neither binary nor instance labels.

    Instance labels (napari, Cellpose, colour-coded) have one connected piece per value
    (allowing a few cut in two), and the pieces are cells, not specks; a picture has many
    more pieces than values, or is mostly specks of under 5 pixels (more than 20 % of its
    foreground). Masks with fewer than 8 values are not checked. A picture with cells painted over it, or a mask saved with
    smoothed edges, has many values scattered in specks: many more pieces than values.

    Parameters
    ----------
    labels : ndarray of shape (H, W), integer
        As :func:`kwtl.datasets.read_mask` returns it (colours already made labels).
    path : str or path-like
        The file, named in the message.
    colour : bool, default=False
        Whether the file is a colour image (changes the advice).

    Returns
    -------
    problem : str or None

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((8, 8), int); labels[:3, :3] = 1; labels[5:, 5:] = 2
    >>> check_mask_labels(labels, "a.png") is None  # two cells, two ids
    True
    >>> noisy = np.random.default_rng(0).integers(0, 50, (32, 32))
    >>> check_mask_labels(noisy, "b.png")  # doctest: +ELLIPSIS
    'b.png holds 49 values in ... separate pieces (...% of its foreground in specks...
    """
    from skimage.measure import label as connected

    values = np.unique(labels)
    values = values[values != 0]
    if len(values) < _FEW_VALUES:  # binary, or a few classes: each value may hold many cells
        return None
    parts = connected(labels, background=0, connectivity=2)
    pieces = int(parts.max())
    sizes = np.bincount(parts.ravel())[1:]
    specks = float(sizes[sizes < _SPECK].sum() / max(1, sizes.sum()))
    if pieces <= 2 * len(values) + 2 and specks <= _MAX_SPECKS:
        return None
    if colour:
        fix = (
            "it looks like a picture with cells painted on it, not a mask; save the mask "
            "alone: cells in one colour (or one colour per cell) on black, as PNG or TIFF"
        )
    else:
        fix = (
            "it looks like a picture or a mask saved with smoothed edges, not a mask; "
            "save 0 for background and one value for all cells (or one value per cell), "
            "without anti-aliasing"
        )
    return (
        f"{Path(path)} holds {len(values)} values in {pieces} separate pieces "
        f"({100 * specks:.0f}% of its foreground in specks under {_SPECK} pixels): {fix}"
    )


def lossy_siblings(path):
    """JPEG files saved where the mask ``path`` should be (same stem, same folder).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = (pathlib.Path(tmp) / "x.jpg").write_bytes(b"")
    ...     [p.name for p in lossy_siblings(pathlib.Path(tmp) / "x.png")]
    ['x.jpg']
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(
        p
        for p in path.parent.iterdir()
        if p.stem == path.stem and p.suffix in _JPEG and p.is_file()
    )
