"""Rounds of annotation: the regions earlier packages chose, and what overlaps them.

A lab annotates in rounds (select, draw, fine-tune, select more, ...). ``kwtl select
--exclude todo1/ todo2/`` must never ask to draw a pixel again: every candidate whose window
overlaps a region listed in those packages' ``selection.csv`` is removed before the choice.
Regions are matched by source image name (the file name without extension, as
``selection.csv`` records it) and position.
"""

import warnings
from pathlib import Path

import numpy as np

__all__ = ["excluded_regions", "overlaps_regions", "regions_record", "package_list"]


def package_list(packages, what="package"):
    """One folder or several, as a list of paths (a single str/path is one folder)."""
    if packages is None:
        return []
    if isinstance(packages, (str, Path)):
        return [Path(packages)]
    folders = [Path(p) for p in packages]
    if not folders:
        raise ValueError(f"no {what} given")
    return folders


def _size(text):
    """``selection.csv``'s size column: ``256`` (patches) or ``520x696`` (whole images)."""
    text = str(text)
    if "x" in text:
        h, w = text.split("x")
        return int(h), int(w)
    return int(float(text)), int(float(text))


def excluded_regions(packages, names=None):
    """``{source image name: [(row, col, height, width), ...]}`` chosen in ``packages``.

    Parameters
    ----------
    packages : list of path-like or None
        Folders written by :func:`kwtl.workflow.select`.
    names : list of str or None
        The names of the images being selected from; a warning says so when none of the
        packages' regions lie in them (a package of another folder?).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     p = pathlib.Path(tmp)
    ...     _ = (p / "selection.csv").write_text(
    ...         "image_file,mask_file,source_image,row,col,size,score,rank\\n"
    ...         "images/a_r0000_c0032.png,masks/a_r0000_c0032.png,a,0,32,64,0.5,1\\n")
    ...     excluded_regions([p])
    {'a': [(0, 32, 64, 64)]}
    """
    import pandas as pd

    regions = {}
    for folder in package_list(packages):
        csv = folder / "selection.csv"
        if not csv.is_file():
            raise ValueError(
                f"--exclude {folder}: not a kwtl select package (no "
                "selection.csv); give the folders earlier rounds wrote"
            )
        table = pd.read_csv(csv, dtype={"source_image": str})
        for row in table.itertuples(index=False):
            h, w = _size(row.size)
            regions.setdefault(str(row.source_image), []).append((int(row.row), int(row.col), h, w))
    if regions and names is not None and not set(regions) & {str(n) for n in names}:
        warnings.warn(
            "none of the excluded packages' regions lie in these images (their "
            f"source images are {', '.join(sorted(regions)[:3])} ...): were they "
            "made from another folder?",
            UserWarning,
            stacklevel=3,
        )
    return regions


def regions_record(regions):
    """A JSON-able, order-independent record of ``regions`` (for fingerprints)."""
    return {
        name: sorted(list(map(int, box)) for box in boxes)
        for name, boxes in sorted(regions.items())
    }


def overlaps_regions(coords, size, shapes, names, regions, unit="patch"):
    """Which candidates overlap an excluded region.

    Parameters
    ----------
    coords : ndarray of shape (n, 3)
        ``(image index, row, col)`` of each candidate.
    size : int
        Side of a patch candidate.
    shapes : list of (int, int)
        Image shapes (a whole-image candidate covers its image).
    names : list of str
        Image names, matched against the regions' source image names.
    regions : dict
        From :func:`excluded_regions`.
    unit : {"patch", "image"}

    Returns
    -------
    blocked : ndarray of bool, shape (n,)

    Examples
    --------
    >>> import numpy as np
    >>> coords = np.array([[0, 0, 0], [0, 0, 64], [0, 64, 64], [1, 0, 0]])
    >>> overlaps_regions(coords, 64, [(128, 128)] * 2, ["a", "b"], {"a": [(0, 32, 64, 64)]})
    array([ True,  True, False, False])
    """
    coords = np.asarray(coords)
    blocked = np.zeros(len(coords), dtype=bool)
    for i, name in enumerate(names):
        boxes = regions.get(str(name))
        if not boxes:
            continue
        mine = np.flatnonzero(coords[:, 0] == i)
        if unit == "image":
            blocked[mine] = True
            continue
        r, c = coords[mine, 1][:, None], coords[mine, 2][:, None]
        b = np.asarray(boxes, dtype=np.int64)
        hit = (
            (r < b[:, 0] + b[:, 2])
            & (b[:, 0] < r + size)
            & (c < b[:, 1] + b[:, 3])
            & (b[:, 1] < c + size)
        )
        blocked[mine] = hit.any(axis=1)
    return blocked
