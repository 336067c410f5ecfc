"""Reading image and mask files: PNG, TIFF (stacks, channels), JPEG (writing: ``_writing.py``).

Files are decoded to their raw pixel array (PNG and JPEG with Pillow, TIFF with tifffile)
and then converted with kwtl's written rules (:func:`kwtl.utils.check_images` for
intensities, :func:`kwtl.utils.check_masks` for masks), never through a decoder's lossy
mode conversions.

The rules that decide which axis of a file is a channel and which a stack are in the
Notes of :func:`read_image`. :func:`read_image` returns one 2-D image: a file with planes
is an error that points to :func:`read_stack`. RGB(A) files become grey by luma unless
``channel`` picks one colour; other multi-channel files need ``channel``. Cellpose's ``_seg.npy`` files are not read (they
are Python pickles, which can run code): export masks as PNG or TIFF instead.
"""

from pathlib import Path

import numpy as np

from ..utils import as_uint8_image, colour_labels

__all__ = ["IMAGE_EXTENSIONS", "MASK_EXTENSIONS", "read_image", "read_mask", "read_stack"]

#: File name extensions (lower case) that the readers accept.
IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
#: Extensions accepted for masks: lossless formats only (JPEG invents values at edges).
MASK_EXTENSIONS = (".png", ".tif", ".tiff")
_TIFF = (".tif", ".tiff")
_JPEG = (".jpg", ".jpeg")

_CHANNEL_AXES = "SCE"
_UNNAMED_AXES = "QI"
_MAX_CHANNELS_LAST = 4


class _Decoded:
    """A decoded file: ``array`` with ``axes`` over 'P' (plane), 'U' (unnamed, 2..4
    entries), 'Y', 'X', 'C' (channel); ``colour`` when the channel axis is RGB(A);
    ``alpha`` when it is grey + alpha; ``source_axes`` for messages."""

    def __init__(self, array, axes, colour=False, alpha=False, source_axes=None):
        self.array, self.axes = array, axes
        self.colour, self.alpha = colour, alpha
        self.source_axes = source_axes or axes


# --------------------------------------------------------------------------------------------
# decoders
# --------------------------------------------------------------------------------------------
def _decode_pillow(path):
    from PIL import Image

    with Image.open(path) as img:
        img.load()  # decode now so that truncated files fail here
        mode = img.mode
        if mode in ("1", "L", "I", "F") or mode.startswith("I;16"):
            return _Decoded(np.asarray(img), "YX")
        if mode in ("RGB", "RGBA"):
            return _Decoded(np.asarray(img), "YXC", colour=True)
        if mode == "LA":
            return _Decoded(np.asarray(img), "YXC", alpha=True)
        if mode == "P" and "transparency" in img.info:
            return _Decoded(np.asarray(img.convert("RGBA")), "YXC", colour=True)
        # palette, CMYK, YCbCr...: the palette lookup / colour conversion is exact
        return _Decoded(np.asarray(img.convert("RGB")), "YXC", colour=True)


def _decode_tiff(path):
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise ValueError("the file holds no image")
        series = tif.series[0]
        page = tif.pages[0]
        arr = series.asarray()
        source_axes = series.axes
        photometric = int(page.photometric)
        colormap = page.colormap
        extrasamples = tuple(int(e) for e in (page.extrasamples or ()))

    keep = [i for i, size in enumerate(arr.shape) if size != 1 or source_axes[i] in "YX"]
    arr = arr.reshape([arr.shape[i] for i in keep])
    named = "".join(source_axes[i] for i in keep)
    if "Y" not in named or "X" not in named:
        raise ValueError(f"unsupported TIFF layout: axes {source_axes!r}, shape {arr.shape}")

    if photometric == 3 and colormap is not None and named == "YX":  # PALETTE
        colormap = np.asarray(colormap)
        if colormap.max() > 255:  # TIFF colour maps are 16-bit
            colormap = colormap // 257
        rgb = np.moveaxis(colormap.astype(np.uint8)[:, arr], 0, -1)
        return _Decoded(rgb, "YXC", colour=True, source_axes=source_axes)
    # MINISWHITE is not inverted: like tifffile and scikit-image, the stored values are
    # the data (ImageJ's inverted-LUT masks and tifffile's bilevel files rely on this)

    # an unnamed 3-D array that looks like (H, W, C): channels-last
    if (
        len(named) == 3
        and named[0] in _UNNAMED_AXES
        and arr.shape[2] <= _MAX_CHANNELS_LAST
        and min(arr.shape[:2]) > _MAX_CHANNELS_LAST
    ):
        return _Decoded(arr, "YXC", source_axes=source_axes)

    axes = ""
    for letter, size in zip(named, arr.shape):
        if letter in "YX":
            axes += letter
        elif letter in _CHANNEL_AXES:
            axes += "C"
        elif letter in _UNNAMED_AXES:
            axes += "U" if size <= _MAX_CHANNELS_LAST else "P"
        else:
            axes += "P"
    if axes.count("C") > 1:
        raise ValueError(
            f"unsupported TIFF layout: more than one channel axis (axes {source_axes!r}, "
            f"shape {arr.shape})"
        )
    colour = alpha = False
    if "C" in axes:
        n_channels = arr.shape[axes.index("C")]
        colour = photometric in (2, 6) and n_channels in (3, 4)  # RGB, YCbCr
        alpha = (
            photometric in (0, 1)
            and n_channels == 2
            and bool(extrasamples)
            and extrasamples[0] in (1, 2)
        )
    return _Decoded(arr, axes, colour=colour, alpha=alpha, source_axes=source_axes)


def _decode(path, extensions=IMAGE_EXTENSIONS):
    """Decode one file; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in extensions:
        hint = ""
        if suffix in _JPEG:
            hint = " (JPEG is lossy: its compression invents values at the edges of a mask)"
        elif path.name.endswith("_seg.npy"):
            hint = (
                " (Cellpose's _seg.npy files are Python pickles and are not read: "
                "export the masks as PNG or TIFF)"
            )
        raise ValueError(
            f"cannot read {path}: unsupported extension {path.suffix!r} "
            f"(supported: {', '.join(extensions)}){hint}"
        )
    decoder = _decode_tiff if suffix in _TIFF else _decode_pillow
    try:
        return decoder(path)
    except MemoryError:
        raise
    except Exception as exc:  # Pillow and tifffile raise many unrelated types on bad data
        raise ValueError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc


def _check_channel(channel):
    if channel is None:
        return None
    if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) or channel < 0:
        raise ValueError(f"channel must be None or a non-negative int, got {channel!r}")
    return int(channel)


def _describe(decoded):
    return f"shape {decoded.array.shape}, axes {decoded.source_axes!r}"


def _planes(decoded, path, channel, as_stack):
    """Split a decoded file into 2-D planes (or colour planes for luma), pick the channel.

    Returns an array of shape (n_planes, H, W) or (n_planes, H, W, 3|4) (colour, no
    channel picked). ``as_stack``: True reads unnamed axes as planes (read_stack); False
    allows one plane only (read_image); "auto" allows planes but resolves an unnamed axis
    like read_image (load_images).
    """
    arr, axes = decoded.array, decoded.axes
    if "U" in axes:
        if as_stack is True or "C" in axes:
            axes = axes.replace("U", "P")
        elif channel is not None and axes.count("U") == 1:
            axes = axes.replace("U", "C")
        else:
            n = arr.shape[axes.index("U")]
            raise ValueError(
                f"{path} holds {n} planes of {arr.shape[-2]} x {arr.shape[-1]} pixels "
                f"({_describe(decoded)}) and does not say whether they are channels or a "
                f"Z/T stack: pass channel=0..{n - 1} to read one channel, or read the planes "
                "with read_stack"
            )
    if "P" in axes and as_stack is False:
        n = int(np.prod([s for a, s in zip(axes, arr.shape) if a == "P"]))
        raise ValueError(
            f"{path} is a stack of {n} planes ({_describe(decoded)}), not one image: read it "
            "with kwtl.datasets.read_stack (or load_images, which names the planes "
            "<name>_z000, <name>_z001, ...)"
        )
    # order: planes, Y, X, channel
    order = (
        [i for i, a in enumerate(axes) if a == "P"]
        + [axes.index("Y"), axes.index("X")]
        + [i for i, a in enumerate(axes) if a == "C"]
    )
    arr = np.transpose(arr, order)
    n_planes = int(np.prod(arr.shape[: axes.count("P")], dtype=np.int64))
    arr = arr.reshape((n_planes,) + arr.shape[axes.count("P") :])
    if "C" not in axes:
        if channel not in (None, 0):
            raise ValueError(
                f"{path} has a single channel ({_describe(decoded)}): channel={channel} "
                "does not exist (use channel=None or 0)"
            )
        return arr
    n_channels = arr.shape[-1]
    if channel is not None:
        if channel >= n_channels:
            raise ValueError(
                f"{path} has {n_channels} channels ({_describe(decoded)}): channel="
                f"{channel} does not exist (use 0..{n_channels - 1})"
            )
        return arr[..., channel]
    if decoded.colour:
        return arr  # luma later (alpha ignored)
    if decoded.alpha:
        return arr[..., 0]  # grey + alpha
    raise ValueError(
        f"{path} has {n_channels} channels ({_describe(decoded)}): pass channel=0.."
        f"{n_channels - 1} to choose the one to segment"
    )


# --------------------------------------------------------------------------------------------
# public readers
# --------------------------------------------------------------------------------------------
def read_image(path, channel=None):
    """Read one PNG, TIFF or JPEG image as a 2-D 8-bit grey image.

    RGB(A) and palette images are converted to grey by ITU-R 601 luma (alpha ignored),
    unless ``channel`` picks one colour; 16-bit, 32-bit and float images become 8-bit by
    the intensity policy of :func:`kwtl.utils.check_images` (8-bit data kept, floats in
    [0, 1] scaled by 255, anything else percentile-normalised). The axis rules (which axis
    is a channel, which a stack) are in the Notes below.

    Parameters
    ----------
    path : str or path-like
        A ``.png``, ``.tif``, ``.tiff``, ``.jpg`` or ``.jpeg`` file.
    channel : int or None, default=None
        The channel to read from a multi-channel file (``0`` is the first; for RGB, 0, 1,
        2 are red, green, blue). Required for multi-channel files that are not RGB(A),
        and for TIFFs with 2 to 4 unnamed planes (channels or a stack?).

    Returns
    -------
    image : ndarray of shape (H, W), dtype uint8

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file cannot be decoded, is a stack (use :func:`read_stack`), has several
        channels and ``channel`` is None, or ``channel`` does not exist.

    Notes
    -----
    A file holds one or more 2-D planes ``(Y, X)`` plus, possibly, a
    *channel* axis (colour samples or fluorescence channels) and *plane* axes (Z slices, time
    points, pages of a stack). The axes are decided as follows:

    * PNG and JPEG are channels-last: ``(H, W)`` grey, ``(H, W, 2)`` grey + alpha,
      ``(H, W, 3|4)`` RGB(A) (palette and CMYK files are converted to RGB exactly).
    * TIFF axes come from tifffile's metadata (ImageJ hyperstacks, OME-TIFF, tifffile's own
      ``axes``): ``S`` (samples), ``C`` (channels) and ``E`` (wavelengths) are channel axes;
      ``Z``, ``T`` and the other named axes are plane axes. An axis the file does not name
      (tifffile's ``Q`` or ``I``, e.g. a multi-page TIFF without metadata) is judged by its
      size: a 3-D ``(H, W, C)`` array with ``C <= 4`` and ``H, W > 4`` is channels-last; any
      other unnamed axis with more than 4 entries is a stack; an unnamed axis with 2 to 4
      entries is **ambiguous** (channels or planes?): :func:`read_image` asks for
      ``channel=``, :func:`read_stack` reads it as planes.

    ``channel`` counts within the channel axis; a file with one channel accepts
    ``channel=0`` (so one ``--channel`` can serve a folder of mixed files).

    Examples
    --------
    >>> import tempfile, os
    >>> import numpy as np
    >>> import tifffile
    >>> from PIL import Image
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "cell.png")
    ...     Image.fromarray(np.full((4, 6, 3), (255, 0, 0), np.uint8)).save(path)
    ...     grey, red = read_image(path)[0, :3], read_image(path, channel=0)[0, :3]
    ...     two = np.stack([np.zeros((8, 8), np.uint16), np.full((8, 8), 200, np.uint16)])
    ...     tifffile.imwrite(os.path.join(tmp, "two.tif"), two, photometric="minisblack",
    ...                      metadata={"axes": "CYX"})
    ...     second = read_image(os.path.join(tmp, "two.tif"), channel=1)[0, :3]
    >>> grey.tolist(), red.tolist(), second.tolist()
    ([76, 76, 76], [255, 255, 255], [200, 200, 200])
    """
    channel = _check_channel(channel)
    planes = _planes(_decode(path), path, channel, as_stack=False)
    return as_uint8_image(planes[0], name=str(path))


def read_stack(path, channel=None):
    """Read every 2-D plane of a (TIFF) stack as 8-bit grey images.

    Z slices, time points and pages (all plane axes, in file order, the last axis
    fastest) each give one image; a single 2-D image gives a list of one. Each plane is
    converted on its own, exactly like :func:`read_image` (luma for RGB, the intensity
    policy of :func:`kwtl.utils.check_images`, so a 16-bit plane is percentile-normalised
    by its own percentiles). Unnamed planes are read as planes, never as channels.

    Parameters
    ----------
    path : str or path-like
        A ``.tif``/``.tiff`` stack, or any file :func:`read_image` reads.
    channel : int or None, default=None
        The channel to read when the stack also has a channel axis (e.g. an ImageJ
        ``ZCYX`` hyperstack); required then, unless the channels are RGB(A).

    Returns
    -------
    planes : list of ndarray of shape (H, W), dtype uint8

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file cannot be decoded, or has several channels and ``channel`` is None.

    Examples
    --------
    >>> import tempfile, os
    >>> import numpy as np
    >>> import tifffile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "z.tif")
    ...     stack = np.stack([np.full((8, 8), z, np.uint8) for z in (10, 20, 30)])
    ...     tifffile.imwrite(path, stack, photometric="minisblack", metadata={"axes": "ZYX"})
    ...     planes = read_stack(path)
    >>> [int(p[0, 0]) for p in planes]
    [10, 20, 30]
    """
    channel = _check_channel(channel)
    planes = _planes(_decode(path), path, channel, as_stack=True)
    return [as_uint8_image(p, name=f"{path} plane {i}") for i, p in enumerate(planes)]


def read_mask(path):
    """Read one PNG or TIFF mask as integer labels, without binarising it.

    Grey masks keep their stored values (0/1, 0/255 or instance labels 0, 1..n); a 1-bit
    mask becomes 0/1 ``uint8``; a colour or palette mask becomes instance labels by colour
    (:func:`kwtl.utils.colour_labels`: black is 0); a float TIFF of whole numbers becomes
    integers. Convert labels to kwtl's foreground with :func:`kwtl.utils.as_mask` (which
    keeps touching instances apart, :func:`kwtl.utils.masks_to_foreground`); the checks
    of :func:`kwtl.utils.check_masks` (e.g. the 0/1/255 "ignore label" ambiguity) apply
    then. JPEG masks are refused: lossy compression invents values at edges.

    Parameters
    ----------
    path : str or path-like
        A ``.png``, ``.tif`` or ``.tiff`` file holding one 2-D mask.

    Returns
    -------
    labels : ndarray of shape (H, W), integer dtype
        0 is background.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file cannot be decoded, is not a single 2-D mask, or holds negative,
        fractional or non-finite values (a probability map is not a mask).

    Examples
    --------
    >>> import tempfile, os
    >>> import numpy as np
    >>> from PIL import Image
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "mask.png")
    ...     Image.fromarray(np.array([[0, 2], [1, 1]], np.uint8)).save(path)
    ...     read_mask(path)
    array([[0, 2],
           [1, 1]], dtype=uint8)
    """
    decoded = _decode(path, MASK_EXTENSIONS)
    if decoded.colour or decoded.alpha:
        arr = decoded.array
        if "P" in decoded.axes or "U" in decoded.axes or arr.ndim != 3:
            raise ValueError(f"{path} is not a single 2-D mask ({_describe(decoded)})")
        if decoded.alpha:
            arr = arr[..., 0]
        else:
            return colour_labels(arr)
    else:
        arr = decoded.array
        if decoded.axes != "YX":
            raise ValueError(
                f"{path} is not a single 2-D mask ({_describe(decoded)}): masks are one "
                "grey or colour image per file"
            )
    if arr.dtype == bool:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{path} contains NaN or infinite values: not a mask")
        if not np.all(arr == np.rint(arr)):
            raise ValueError(
                f"{path} has fractional values: it looks like a probability map, not a "
                "mask; threshold it first (e.g. p >= 0.5)"
            )
        if arr.size and arr.min() < 0:
            raise ValueError(f"{path} has negative values (min {arr.min()}): not a mask")
        return arr.astype(np.min_scalar_type(max(int(arr.max(initial=0)), 1)))
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{path} has unsupported dtype {arr.dtype} for a mask")
    if arr.size and arr.min() < 0:
        raise ValueError(
            f"{path} has negative values (min {arr.min()}): masks are 0 = background and "
            "positive = foreground or instance ids"
        )
    return arr


# --------------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------------
