"""The annotation package: what ``kwtl select`` writes for the annotator, and reading the
masks back for ``kwtl finetune``.

A package is a folder with ``images/`` (the chosen patches or images), ``masks/`` (where the
annotator saves a mask per image), ``overview/`` (each source image with the chosen regions
drawn), ``selection.csv`` (:data:`SELECTION_COLUMNS`, one row per item, best first),
``selection.json`` (how the choice was made), ``README.txt`` and :data:`PLFT_MODEL`.
"""

import json
import textwrap
from pathlib import Path

import numpy as np

from ..datasets import read_image, write_image
from ..utils._atomic import atomic_write_text
from ._files import read_foreground
from ._readme import _README

__all__ = [
    "PLFT_MODEL",
    "SELECTION_COLUMNS",
    "drawn_area",
    "read_annotations",
    "read_selection",
    "write_package",
]

#: Columns of ``selection.csv``, one row per item to annotate.
SELECTION_COLUMNS = (
    "image_file",
    "mask_file",
    "source_image",
    "row",
    "col",
    "size",
    "score",
    "rank",
)
#: The model the selection was scored with (after PLFT), the starting point of ``finetune``.
PLFT_MODEL = "model_plft.kwtl"


def _item_name(name, row, col, unit):
    return name if unit == "image" else f"{name}_r{row:04d}_c{col:04d}"


def _overview(image, boxes, path):
    """The source image with the chosen regions drawn and numbered by rank."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(picture)
    width = max(2, min(image.shape) // 200)
    for rank, (r, c, h, w) in boxes:
        draw.rectangle([c, r, c + w - 1, r + h - 1], outline=(255, 40, 40), width=width)
        draw.text((c + 2 * width + 2, r + 2 * width + 2), f"#{rank}", fill=(255, 255, 0))
    write_image(path, np.asarray(picture), overwrite=True)


def drawn_area(chosen, shapes, size, unit="patch"):
    """What the annotator will draw: the pixels of the union of the chosen regions, in
    image-equivalents of the folder (its mean image area) and as a share of its area.

    A lab pays for drawn area, not for a number of patches (``benchmarks/results/effort``).

    Parameters
    ----------
    chosen : array-like of shape (n, 3)
        ``(image, row, col)`` of every chosen item (row = col = 0 for whole images).
    shapes : list of (int, int)
        The folder's image shapes.
    size : int
        Patch side (``unit="patch"``).
    unit : {"patch", "image"}

    Returns
    -------
    area : dict
        ``pixels``, ``image_equivalents``, ``fraction`` (of the folder's pixels).

    Examples
    --------
    >>> drawn_area([[0, 0, 0], [0, 4, 4], [1, 0, 4]], [(8, 8), (4, 8)], size=4)
    {'pixels': 48, 'image_equivalents': 1.0, 'fraction': 0.5}
    >>> drawn_area([[0, 0, 0], [0, 2, 2]], [(8, 8)], size=4)["pixels"]  # overlap counted once
    28
    """
    covered = {}
    for i, r, c in np.asarray(chosen, dtype=np.int64).reshape(-1, 3):
        mask = covered.setdefault(int(i), np.zeros(shapes[int(i)][:2], dtype=bool))
        if unit == "image":
            mask[:] = True
        else:
            mask[r : r + size, c : c + size] = True
    pixels = int(sum(m.sum() for m in covered.values()))
    areas = [int(h) * int(w) for h, w in (s[:2] for s in shapes)]
    return {
        "pixels": pixels,
        "image_equivalents": round(pixels / float(np.mean(areas)), 3),
        "fraction": round(pixels / float(sum(areas)), 3),
    }


def write_package(
    out, arrays, names, chosen, scores, *, unit, size, n_candidates, selector_name, dense, version
):
    """Write the annotator's files of a selection into the folder ``out``.

    Parameters
    ----------
    out : Path
    arrays, names : list
        The source images and their names.
    chosen : ndarray of shape (n, 3)
        ``(image, row, col)`` of the chosen items, best first (row = col = 0 for images).
    scores : ndarray of shape (n,)
        Their selection scores.
    unit : {"patch", "image"}
    size : int
        Patch side.
    n_candidates : int
    selector_name : str
    dense : bool or None
        Whether the selector scored in its whole-image mode.
    version : str
        kwtl's version, for the README.

    Returns
    -------
    table : pandas.DataFrame
        ``selection.csv``.
    """
    import pandas as pd

    for folder in ("images", "overview"):  # they hold only kwtl's files: stale ones go
        for old in (out / folder).glob("*.png") if (out / folder).is_dir() else ():
            old.unlink()
    rows, boxes = [], {}
    for rank, ((i, r, c), score) in enumerate(
        zip(np.asarray(chosen, dtype=np.int64), scores), start=1
    ):
        i, r, c = int(i), int(r), int(c)
        item = _item_name(names[i], r, c, unit)
        shape = arrays[i].shape
        if unit == "image":
            pixels, (h, w), size_text = arrays[i], shape, f"{shape[0]}x{shape[1]}"
        else:
            pixels, (h, w), size_text = arrays[i][r : r + size, c : c + size], (size, size), size
        write_image(out / "images" / f"{item}.png", pixels, overwrite=True)
        rows.append(
            {
                "image_file": f"images/{item}.png",
                "mask_file": f"masks/{item}.png",
                "source_image": names[i],
                "row": r,
                "col": c,
                "size": size_text,
                "score": float(score),
                "rank": rank,
            }
        )
        boxes.setdefault(i, []).append((rank, (r, c, h, w)))
    (out / "masks").mkdir(exist_ok=True)
    for i, name in enumerate(names):
        _overview(arrays[i], boxes.get(i, []), out / "overview" / f"{name}.png")
    table = pd.DataFrame(rows, columns=list(SELECTION_COLUMNS))
    atomic_write_text(out / "selection.csv", table.to_csv(index=False))
    what = "whole images" if unit == "image" else f"{size}x{size} patches"
    intro = textwrap.fill(
        f"kwtl chose the {len(rows)} {what} in images/ for you to annotate, out of "
        f"{n_candidates} candidates in {len(arrays)} images: with the {selector_name!r} "
        f"selector{' (fast whole-image scoring)' if dense else ''}, "
        "these are the ones whose masks should teach the model most. selection.csv lists "
        "them best first (column rank); overview/ shows where each lies in its source "
        "image.",
        width=88,
    )
    atomic_write_text(
        out / "README.txt",
        _README.format(
            intro=intro,
            what=what,
            example_image=rows[0]["image_file"],
            example_mask=rows[0]["mask_file"],
            size_text="height x width in column size"
            if unit == "image"
            else f"{size}x{size} pixels",
            todo=out,
            columns=", ".join(SELECTION_COLUMNS),
            version=version,
        ),
    )
    return table


def read_selection(todo_dir):
    """``selection.csv`` of an annotation package as a DataFrame (names kept as text:
    a source image named ``00`` stays ``"00"``)."""
    import pandas as pd

    return pd.read_csv(
        Path(todo_dir) / "selection.csv",
        dtype={"image_file": str, "mask_file": str, "source_image": str},
    )


_MASK_SUFFIXES = (".png", ".tif", ".tiff")


def _mask_path(todo, mask_file):
    """The annotator's mask for ``mask_file``: that path, or the same name as TIFF/PNG."""
    path = todo / mask_file
    for suffix in (path.suffix,) + _MASK_SUFFIXES:
        candidate = path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


def read_annotations(todo_dir):
    """The annotated items of a ``select`` folder: images, masks and the selection table.

    Every row of ``selection.csv`` must have its mask (at ``mask_file``, or the same name
    with ``.tif``/``.tiff``/``.png``), of the same size as its image; binary masks and
    instance labels are both read as foreground = non-zero.

    Returns
    -------
    data : dict
        ``images``, ``masks`` (bool), ``table`` (DataFrame), ``metadata``
        (``selection.json``), ``mask_files`` (paths).

    Raises
    ------
    ValueError
        Not a ``kwtl select`` folder, or masks missing / of the wrong size (all listed).
    """
    todo = Path(todo_dir)
    if not todo.is_dir():
        raise FileNotFoundError(f"annotation folder not found: {todo}")
    meta_file, csv_file = todo / "selection.json", todo / "selection.csv"
    if not meta_file.is_file() or not csv_file.is_file():
        raise ValueError(
            f"{todo} is not a finished kwtl select folder (no selection.json / "
            "selection.csv); run kwtl select first"
        )
    metadata = json.loads(meta_file.read_text())
    table = read_selection(todo)
    absent = [c for c in SELECTION_COLUMNS if c not in table.columns]
    if absent:
        raise ValueError(f"{csv_file} lacks the column(s) {', '.join(absent)}")
    if len(table) == 0:
        raise ValueError(f"{csv_file} lists no item to annotate")
    images, masks, mask_files, missing, mismatched = [], [], [], [], []
    for row in table.itertuples(index=False):
        image = read_image(todo / row.image_file)
        path = _mask_path(todo, row.mask_file)
        if path is None:
            missing.append(row.mask_file)
            continue
        mask = read_foreground(path)
        if mask.shape != image.shape:
            mismatched.append(
                f"{path.relative_to(todo)} is {mask.shape[0]}x{mask.shape[1]}, "
                f"its image {image.shape[0]}x{image.shape[1]}"
            )
            continue
        images.append(image)
        masks.append(mask)
        mask_files.append(path)
    problems = []
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        problems.append(f"{len(missing)} of {len(table)} masks are missing: {shown}")
    if mismatched:
        shown = "; ".join(mismatched[:3]) + (
            f" and {len(mismatched) - 3} more" if len(mismatched) > 3 else ""
        )
        problems.append(f"{len(mismatched)} masks have the wrong size: {shown}")
    if problems:
        raise ValueError(f"{todo}: " + "; ".join(problems) + " (see README.txt there)")
    return {
        "images": images,
        "masks": masks,
        "table": table,
        "metadata": metadata,
        "mask_files": mask_files,
    }
