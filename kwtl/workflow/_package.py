"""The annotation package: what ``kwtl select`` writes for the annotator, and reading the
masks back for ``kwtl finetune``.

A package is a folder with ``images/`` (the chosen patches or images, for people: in
colour for colour files, contrast-stretched), ``model_input/`` (the same as the model sees
them, :data:`MODEL_INPUT`), ``masks/`` (where the annotator saves a mask per image),
``overview/`` (each source image holding a chosen region, the regions drawn),
``contact_sheet.png`` (every chosen item, by rank), ``selection.csv``
(:data:`SELECTION_COLUMNS`, one row per item, by rank), ``selection.json`` (how the choice
was made), ``README.txt`` (what the selector did, what to do) and :data:`PLFT_MODEL`.
"""

import json
import shlex
import textwrap
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..datasets import read_image, read_mask, write_image
from ..utils import masks_to_foreground
from ..utils._atomic import atomic_write_text
from ._describe import describe_selector
from ._display import _is_colour, contact_sheet, display_image, overview
from ._mask_checks import check_mask_labels, lossy_siblings
from ._readme import _README

__all__ = [
    "MODEL_INPUT",
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
#: Folder of the package holding the chosen items as the model sees them (8-bit grey);
#: ``finetune`` trains on these, the annotator draws on ``images/``.
MODEL_INPUT = "model_input"


def _item_name(name, row, col, unit):
    return name if unit == "image" else f"{name}_r{row:04d}_c{col:04d}"


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


def _intro(description, n_chosen, what, n_candidates, n_images, dense):
    how = (
        f"with the {description.name!r} selector"
        f"{' (fast whole-image scoring)' if dense else ''}: {description.summary}."
    )
    if description.score_meaning is None:
        order = (
            "They are a random sample: their order (column rank) is the order of the draw, "
            "and there is no score."
        )
    else:
        order = (
            f"selection.csv lists them by the selector's score, highest first (column rank): "
            f"{description.score_meaning}."
        )
    return textwrap.fill(
        f"kwtl chose the {n_chosen} {what} in images/ for you to annotate, out of "
        f"{n_candidates} candidates in {n_images} images, {how} {order} overview/ shows "
        "where each lies in its source image.",
        width=88,
    )


def write_package(
    out,
    arrays,
    names,
    chosen,
    scores,
    *,
    unit,
    size,
    n_candidates,
    selector_name,
    dense,
    version,
    selector=None,
    folder=None,
    channel=None,
    progress=False,
):
    """Write the annotator's files of a selection into the folder ``out``.

    Parameters
    ----------
    out : Path
    arrays, names : list
        The source images (as the model sees them) and their names.
    chosen : ndarray of shape (n, 3)
        ``(image, row, col)`` of the chosen items, by rank (row = col = 0 for images).
    scores : ndarray of shape (n,)
        Their selection scores (left out of the table when the selector's score means
        nothing, a random draw: :func:`~kwtl.workflow._describe.describe_selector`).
    unit : {"patch", "image"}
    size : int
        Patch side.
    n_candidates : int
    selector_name : str
    dense : bool or None
        Whether the selector scored in its whole-image mode.
    version : str
        kwtl's version, for the README.
    selector : BaseSelector or None
        The selector, described in the README (None: described by ``selector_name``).
    folder : Path or None
        The images folder (None for arrays): RGB files give colour pictures.
    channel : int or None
        The channel the model sees (then the pictures show that channel).
    progress : bool, default=False

    Returns
    -------
    table : pandas.DataFrame
        ``selection.csv``.
    """
    import pandas as pd

    if selector is None:
        from ..selection import make_selector

        selector = make_selector(selector_name)
    description = describe_selector(selector, selector_name)
    for sub in ("images", MODEL_INPUT, "overview"):  # only kwtl's files there: stale ones go
        for old in (out / sub).glob("*.png") if (out / sub).is_dir() else ():
            old.unlink()
    (out / "masks").mkdir(exist_ok=True)
    by_image = {}
    for rank, ((i, r, c), score) in enumerate(
        zip(np.asarray(chosen, dtype=np.int64), scores), start=1
    ):
        by_image.setdefault(int(i), []).append((rank, int(r), int(c), float(score)))
    rows, sheet = [], []
    for i in tqdm(sorted(by_image), desc="writing the package", unit="image", disable=not progress):
        picture = display_image(folder, names[i], arrays[i], channel)
        boxes = []
        for rank, r, c, score in by_image[i]:
            item = _item_name(names[i], r, c, unit)
            if unit == "image":
                window, (h, w) = (slice(None), slice(None)), arrays[i].shape
                size_text = f"{h}x{w}"
            else:
                window = (slice(r, r + size), slice(c, c + size))
                h = w = size_text = size
            write_image(out / "images" / f"{item}.png", picture[window], overwrite=True)
            write_image(out / MODEL_INPUT / f"{item}.png", arrays[i][window], overwrite=True)
            rows.append(
                {
                    "image_file": f"images/{item}.png",
                    "mask_file": f"masks/{item}.png",
                    "source_image": names[i],
                    "row": r,
                    "col": c,
                    "size": size_text,
                    "score": score if description.score_meaning is not None else None,
                    "rank": rank,
                }
            )
            boxes.append((rank, (r, c, h, w)))
            label = names[i] if unit == "image" else f"{names[i]}\nrow {r}, col {c}"
            sheet.append((rank, label, picture[window]))
        overview(picture, boxes, out / "overview" / f"{names[i]}.png")
    rows.sort(key=lambda row: row["rank"])
    sheet.sort(key=lambda entry: entry[0])
    contact_sheet(sheet, out / "contact_sheet.png")
    table = pd.DataFrame(rows, columns=list(SELECTION_COLUMNS))
    atomic_write_text(out / "selection.csv", table.to_csv(index=False))
    what = "whole images" if unit == "image" else f"{size}x{size} patches"
    look = (
        "in colour as in their files, contrast-stretched for viewing"
        if folder is not None and channel is None
        else "contrast-stretched for viewing"
    )
    atomic_write_text(
        out / "README.txt",
        _README.format(
            intro=_intro(description, len(rows), what, n_candidates, len(arrays), dense),
            what=what,
            example_image=rows[0]["image_file"],
            example_mask=rows[0]["mask_file"],
            size_text="height x width in column size"
            if unit == "image"
            else f"{size}x{size} pixels",
            todo=shlex.quote(str(out)),
            columns=", ".join(SELECTION_COLUMNS),
            version=version,
            look=look,
            n_overviews=len(by_image),
            score_text=description.score_meaning or "empty (a random draw has no score)",
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


def read_annotations(todo_dir, accept_masks=False):
    """The annotated items of a ``select`` folder: images, masks and the selection table.

    Every row of ``selection.csv`` must have its mask (at ``mask_file``, or the same name
    with ``.tif``/``.tiff``/``.png``), of the same size as its image; binary masks and
    instance labels are both read as foreground = non-zero. The images are the model's
    input (:data:`MODEL_INPUT`; packages of older kwtl versions: ``image_file``). A JPEG
    saved in a mask's place is named as such (lossy: save PNG or TIFF); a mask whose values
    are neither binary nor instance labels (a picture with cells painted on it, smoothed
    edges) is refused unless ``accept_masks``
    (:func:`kwtl.workflow._mask_checks.check_mask_labels`).

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
    images, masks, mask_files, missing, mismatched, lossy, painted = [], [], [], [], [], [], []
    for row in table.itertuples(index=False):
        model_input = todo / MODEL_INPUT / Path(row.image_file).name
        image = read_image(model_input if model_input.is_file() else todo / row.image_file)
        path = _mask_path(todo, row.mask_file)
        if path is None:
            jpeg = lossy_siblings(todo / row.mask_file)
            (lossy if jpeg else missing).append(
                str(jpeg[0].relative_to(todo)) if jpeg else row.mask_file
            )
            continue
        labels = read_mask(path)
        problem = check_mask_labels(labels, path.relative_to(todo), colour=_is_colour(path))
        if problem and not accept_masks:
            painted.append(problem)
            continue
        mask = masks_to_foreground(labels, separate_touching=True)
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
    if lossy:
        shown = ", ".join(lossy[:3]) + (f" and {len(lossy) - 3} more" if len(lossy) > 3 else "")
        problems.append(
            f"{len(lossy)} masks are saved as JPEG ({shown}): JPEG is lossy and changes the "
            "values at the cells' edges; save them as PNG or TIFF"
        )
    if painted:
        problems.append(
            painted[0]
            + (f" ({len(painted) - 1} more masks like it)" if len(painted) > 1 else "")
            + "; or pass accept_masks=True to train on them as they are"
        )
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
