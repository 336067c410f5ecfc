"""Pictures for people: the annotator's crops, overviews and contact sheet, and overlays.

The model sees 8-bit grey images (RGB converted by ITU-R 601 luma, or the chosen channel).
People should not have to: a pathologist annotates H&E in colour, and a dim fluorescence
image needs its contrast stretched to be seen at all. These pictures keep the source's
colour (RGB files, unless a channel was chosen) and stretch the contrast of each source image
(0.5th to 99.5th percentile to 0-255, the same stretch for every crop of one image); the
model's input is never changed by them.
"""

from pathlib import Path

import numpy as np

__all__ = ["colour_files", "contact_sheet", "display_image", "stretch"]

#: Percentiles of a source image mapped to 0 and 255 for viewing.
STRETCH_PERCENTILES = (0.5, 99.5)


def stretch(image, percentiles=STRETCH_PERCENTILES):
    """Contrast-stretch an image for viewing: percentiles to 0 and 255, as uint8.

    Colour images are stretched with one range for all channels (hues are kept).

    Examples
    --------
    >>> import numpy as np
    >>> dim = np.array([[10, 12], [14, 20]], np.uint8)
    >>> stretch(dim, (0, 100)).tolist()
    [[0, 51], [102, 255]]
    """
    arr = np.asarray(image, dtype=np.float64)
    lo, hi = np.percentile(arr, percentiles)
    if hi <= lo:  # flat image: nothing to stretch
        return (
            np.clip(arr, 0, 255).astype(np.uint8)
            if arr.max(initial=0) <= 255
            else np.zeros(arr.shape, np.uint8)
        )
    return np.clip(np.rint((arr - lo) * 255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def _files(folder):
    from ..datasets import MASK_SUFFIX
    from ..datasets._folder import _unlabelled_files

    return _unlabelled_files(Path(folder), False, MASK_SUFFIX)


def _is_colour(path):
    """Whether an image file holds RGB(A) colour (read from its header only)."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                page = tif.pages[0]
                return page.photometric == tifffile.PHOTOMETRIC.RGB
        except Exception:  # unreadable here: loading reports it
            return False
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.mode not in ("1", "L", "LA", "I", "F") and not img.mode.startswith("I;")
    except Exception:
        return False


def colour_files(folder, channel=None):
    """Names of the colour (RGB) images of a folder, which the model sees in grey; empty
    when a ``channel`` is chosen (then that channel is the model's input)."""
    if channel is not None or folder is None:
        return []
    return [name for name, path in _files(folder).items() if _is_colour(path)]


def display_image(folder, name, grey, channel=None):
    """The picture of image ``name`` for people: the source's colour when its file is RGB
    (and no channel was chosen), else the model's grey image; contrast-stretched."""
    if folder is not None and channel is None:
        path = _files(folder).get(name)
        if path is not None and _is_colour(path):
            from ..datasets._formats import _decode

            decoded = _decode(path)
            rgb = np.asarray(decoded.array)
            if decoded.colour and rgb.ndim == 3 and rgb.shape[:2] == grey.shape:
                return stretch(rgb[..., :3])
    return stretch(grey)


def _font(size):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def overview(picture, boxes, path):
    """A source picture with the chosen regions outlined and their ranks in large print.

    ``boxes``: ``(rank, (row, col, height, width))`` pairs.
    """
    from PIL import Image, ImageDraw

    from ..datasets import write_image

    image = Image.fromarray(picture).convert("RGB")
    draw = ImageDraw.Draw(image)
    side = min(picture.shape[:2])
    width = max(2, side // 200)
    font = _font(max(16, side // 24))
    for rank, (r, c, h, w) in boxes:
        draw.rectangle([c, r, c + w - 1, r + h - 1], outline=(255, 40, 40), width=width)
        draw.text(
            (c + 2 * width + 2, r + 2 * width),
            f"#{rank}",
            fill=(255, 255, 0),
            font=font,
            stroke_width=max(1, width // 2),
            stroke_fill=(0, 0, 0),
        )
    write_image(path, np.asarray(image), overwrite=True)


def contact_sheet(items, path, thumb=192, columns=5):
    """All chosen items on one picture, best first, each labelled with its rank and name.

    Parameters
    ----------
    items : list of (rank, label, picture)
        ``label`` is one or two lines; ``picture`` a uint8 grey or RGB crop, scaled to fit
        ``thumb`` pixels.
    path : str or path-like
    thumb : int, default=192
    columns : int, default=5

    Examples
    --------
    >>> import tempfile, os
    >>> import numpy as np
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     out = contact_sheet([(1, "a", np.zeros((32, 32), np.uint8))],
    ...                         os.path.join(tmp, "sheet.png"))
    ...     os.path.isfile(out)
    True
    """
    from PIL import Image, ImageDraw

    from ..datasets import write_image

    label_h, pad = 48, 8
    columns = max(1, min(columns, len(items)))
    rows = -(-len(items) // columns)
    sheet = Image.new(
        "RGB",
        (columns * (thumb + pad) + pad, rows * (thumb + label_h + pad) + pad),
        (255, 255, 255),
    )
    draw = ImageDraw.Draw(sheet)
    font = _font(18)
    for k, (rank, label, picture) in enumerate(items):
        tile = Image.fromarray(picture).convert("RGB")
        tile.thumbnail(
            (thumb, thumb),
            Image.Resampling.LANCZOS if max(tile.size) > thumb else Image.Resampling.NEAREST,
        )
        if max(tile.size) < thumb:  # small crops are enlarged by whole pixels
            factor = thumb // max(tile.size)
            tile = tile.resize(
                (tile.size[0] * factor, tile.size[1] * factor), Image.Resampling.NEAREST
            )
        x = pad + (k % columns) * (thumb + pad)
        y = pad + (k // columns) * (thumb + label_h + pad)
        sheet.paste(tile, (x, y))
        lines = f"#{rank} {label}".splitlines()[:2]
        for n, text in enumerate(lines):
            while len(text) > 4 and draw.textlength(text, font=font) > thumb:
                text = text[:-2] + "…"
            draw.text((x, y + thumb + 2 + 21 * n), text, fill=(0, 0, 0), font=font)
    write_image(path, np.asarray(sheet), overwrite=True)
    return Path(path)
