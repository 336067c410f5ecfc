"""The annotation package that ``select`` writes: pictures for the annotator, the model's
input, the table, and a README that says what the selector did."""
import shlex
import textwrap

from tqdm.auto import tqdm

from .. import __version__
from ..datasets import write_image
from ..utils._atomic import atomic_write_text
from ._describe import describe_selector
from ._display import contact_sheet, display_image, overview
from ._readme import _README

__all__ = ["MODEL_INPUT", "write_package"]

#: Folder of the package holding the chosen items as the model sees them (8-bit grey);
#: ``finetune`` trains on these, the annotator draws on ``images/``.
MODEL_INPUT = "model_input"


def _intro(description, n_chosen, what, n_candidates, n_images, dense):
    how = (f"with the {description.name!r} selector"
           f"{' (fast whole-image scoring)' if dense else ''}: {description.summary}.")
    if description.score_meaning is None:
        order = ("They are a random sample: their order (column rank) is the order of the "
                 "draw, and there is no score.")
    elif description.random:
        order = f"The order (column rank) follows {description.score_meaning}."
    else:
        order = (f"selection.csv lists them by the selector's score, highest first (column "
                 f"rank): {description.score_meaning}.")
    return textwrap.fill(
        f"kwtl chose the {n_chosen} {what} in images/ for you to annotate, out of "
        f"{n_candidates} candidates in {n_images} images, {how} {order} overview/ shows where "
        "each lies in its source image.", width=88)


def write_package(out, chosen, coords, flat, arrays, names, *, size, unit, folder, channel,
                  selector, selector_name, columns, progress=True):
    """Write the package's pictures, ``selection.csv`` and ``README.txt``; return the rows.

    ``chosen`` indexes ``coords`` (image, row, col) and ``flat`` (scores); ``folder`` is the
    images folder (None for arrays), read again for the colour of RGB files.
    """
    import pandas as pd

    description = describe_selector(selector, selector_name)
    for sub in ("images", MODEL_INPUT, "overview"):  # hold only kwtl's files: stale ones go
        for old in (out / sub).glob("*.png") if (out / sub).is_dir() else ():
            old.unlink()
    (out / "masks").mkdir(exist_ok=True)
    by_image = {}
    for rank, k in enumerate(chosen, start=1):
        by_image.setdefault(int(coords[k][0]), []).append((rank, k))
    rows, sheet = [], []
    bar = tqdm(total=len(by_image), desc="writing the package", unit="image",
               disable=not progress)
    for i in sorted(by_image):
        picture = display_image(folder, names[i], arrays[i], channel)
        boxes = []
        for rank, k in by_image[i]:
            r, c = int(coords[k][1]), int(coords[k][2])
            if unit == "image":
                item, window = names[i], (slice(None), slice(None))
                h, w = arrays[i].shape
                size_text = f"{h}x{w}"
            else:
                item = f"{names[i]}_r{r:04d}_c{c:04d}"
                window, h, w, size_text = (slice(r, r + size), slice(c, c + size)), size, \
                    size, size
            write_image(out / "images" / f"{item}.png", picture[window], overwrite=True)
            write_image(out / MODEL_INPUT / f"{item}.png", arrays[i][window], overwrite=True)
            score = float(flat[k]) if description.score_meaning is not None else None
            rows.append({"image_file": f"images/{item}.png", "mask_file": f"masks/{item}.png",
                         "source_image": names[i], "row": r, "col": c, "size": size_text,
                         "score": score, "rank": rank})
            boxes.append((rank, (r, c, h, w)))
            sheet.append((rank, names[i] if unit == "image" else
                          f"{names[i]}\nrow {r}, col {c}", picture[window]))
        overview(picture, boxes, out / "overview" / f"{names[i]}.png")
        bar.update(1)
    bar.close()
    rows.sort(key=lambda row: row["rank"])
    sheet.sort(key=lambda entry: entry[0])
    contact_sheet(sheet, out / "contact_sheet.png")
    table = pd.DataFrame(rows, columns=list(columns))
    atomic_write_text(out / "selection.csv", table.to_csv(index=False))
    what = "whole images" if unit == "image" else f"{size}x{size} patches"
    look = ("in colour as in their files, contrast-stretched for viewing"
            if folder is not None and channel is None else
            "contrast-stretched for viewing")
    intro = _intro(description, len(rows), what, len(flat), len(arrays),
                   getattr(selector, "dense", False))
    atomic_write_text(out / "README.txt", _README.format(
        intro=intro, what=what, example_image=rows[0]["image_file"],
        example_mask=rows[0]["mask_file"],
        size_text="height x width in column size" if unit == "image"
        else f"{size}x{size} pixels",
        todo=shlex.quote(str(out)), columns=", ".join(columns), version=__version__,
        look=look, n_overviews=len(by_image),
        score_text=description.score_meaning or "empty (a random draw has no score)"))
    return table, description
