"""Reading microscopy images and masks from folders, and the five benchmark datasets.

A dataset folder holds ``images/`` and ``masks/`` with one mask per image, paired by file stem
(``images/a.tif`` pairs with ``masks/a.png``). PNG files are decoded with Pillow and TIFF files
with tifffile; the raw pixel array is then converted with
the rules of :func:`kwtl.utils.check_images` (RGB to ITU-R 601 luma, 16-bit
percentile-normalised) and :func:`kwtl.utils.check_masks` (binary, 0/255 or instance labels;
probabilities and negative values refused), never through Pillow's lossy mode conversions.
"""
from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from ..utils import as_mask, as_uint8_image

__all__ = [
    "BENCHMARK_FOLDERS",
    "IMAGE_EXTENSIONS",
    "load_benchmark",
    "load_folder",
    "read_image",
    "read_mask",
]

#: File name extensions (lower case) that :func:`load_folder` reads.
IMAGE_EXTENSIONS = (".png", ".tif", ".tiff")

#: The paper's benchmark names and the folders of ``shared/data`` that hold them.
BENCHMARK_FOLDERS = {
    "ssTEM": "ssTEM",
    "EM": "EM",
    "B39": "B39_sub_DSB2018_U2OS",
    "B5": "B5_sub_DSB2018_fluo360",
    "TNBC": "TNBC_sub_NuInsSeg",
}

_MAX_LISTED = 10


# --------------------------------------------------------------------------------------------
# single files
# --------------------------------------------------------------------------------------------
def _read_png(path):
    from PIL import Image

    with Image.open(path) as img:
        img.load()  # decode now so that truncated files fail here
        mode = img.mode
        if mode in ("1", "L", "I", "F", "RGB", "RGBA") or mode.startswith("I;16"):
            return np.asarray(img)
        if mode == "LA":
            return np.asarray(img)[..., 0]
        # palette and other colour spaces: the palette lookup / colour conversion is exact
        return np.asarray(img.convert("RGB"))


def _read_tiff(path):
    import tifffile

    with tifffile.TiffFile(path) as tif:
        if not tif.series:
            raise ValueError("the file holds no image")
        series = tif.series[0]
        page = tif.pages[0]
        arr = series.asarray()
        axes = series.axes
        photometric = int(page.photometric)
        colormap = page.colormap

    keep = [i for i, size in enumerate(arr.shape) if size != 1 or axes[i] in "YX"]
    arr = arr.reshape([arr.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    if axes == "SYX":
        arr, axes = np.moveaxis(arr, 0, -1), "YXS"
    if axes == "YXS" and arr.shape[-1] == 2:  # grey + alpha
        arr, axes = arr[..., 0], "YX"
    if axes not in ("YX", "YXS") or (axes == "YXS" and arr.shape[-1] not in (3, 4)):
        raise ValueError(
            f"expected one 2-D grey or RGB(A) image, got a series of shape {arr.shape} "
            f"(axes {series.axes!r}); split stacks into one file per image"
        )

    if photometric == 3 and colormap is not None:  # PALETTE
        colormap = np.asarray(colormap)
        if colormap.max() > 255:  # TIFF colour maps are 16-bit
            colormap = colormap // 257
        arr = np.moveaxis(colormap.astype(np.uint8)[:, arr], 0, -1)
    # MINISWHITE is not inverted: like tifffile and scikit-image, the stored values are
    # the data (ImageJ's inverted-LUT masks and tifffile's bilevel files rely on this)
    return arr


def _read_array(path):
    """Decode one PNG or TIFF file to its raw pixel array."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_EXTENSIONS:
        raise ValueError(
            f"cannot read {path}: unsupported extension {path.suffix!r} "
            f"(supported: {', '.join(IMAGE_EXTENSIONS)})"
        )
    reader = _read_tiff if suffix in (".tif", ".tiff") else _read_png
    try:
        return reader(path)
    except MemoryError:
        raise
    except Exception as exc:  # Pillow and tifffile raise many unrelated types on bad data
        raise ValueError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc


def read_image(path):
    """Read one PNG or TIFF image as a 2-D 8-bit grey image.

    RGB(A) and palette images are converted to grey by ITU-R 601 luma (alpha ignored);
    16-bit (or wider) images with values above 255 are normalised by percentiles (the
    intensity policy of :func:`kwtl.utils.check_images`).

    Parameters
    ----------
    path : str or path-like
        A ``.png``, ``.tif`` or ``.tiff`` file.

    Returns
    -------
    image : ndarray of shape (H, W), dtype uint8

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file cannot be decoded or is not a single 2-D image.

    Examples
    --------
    >>> import tempfile, os
    >>> import numpy as np
    >>> from PIL import Image
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "cell.png")
    ...     Image.fromarray(np.full((4, 6, 3), (255, 0, 0), np.uint8)).save(path)
    ...     read_image(path)[0, :3]
    array([76, 76, 76], dtype=uint8)
    """
    return as_uint8_image(_read_array(path), name=str(path))


def read_mask(path):
    """Read one PNG or TIFF mask as a 2-D boolean array (non-zero is foreground).

    Colour and palette masks count a pixel as foreground when its colour is not black.

    Parameters
    ----------
    path : str or path-like
        A ``.png``, ``.tif`` or ``.tiff`` file.

    Returns
    -------
    mask : ndarray of shape (H, W), dtype bool

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file cannot be decoded or is not a single 2-D image.

    Examples
    --------
    >>> import tempfile, os
    >>> import numpy as np
    >>> from PIL import Image
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "mask.png")
    ...     Image.fromarray(np.array([[0, 255], [0, 0]], np.uint8)).save(path)
    ...     read_mask(path)
    array([[False,  True],
           [False, False]])
    """
    return as_mask(_read_array(path), name=str(path))


# --------------------------------------------------------------------------------------------
# folders
# --------------------------------------------------------------------------------------------
def _short_list(names):
    names = list(names)
    shown = ", ".join(names[:_MAX_LISTED])
    if len(names) > _MAX_LISTED:
        shown += f", ... ({len(names) - _MAX_LISTED} more)"
    return shown


def _list_image_files(folder, what):
    """Supported files of ``folder`` in sorted file-name order, keyed by unique stem."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{what} folder not found: {folder}")
    files = sorted(
        (p for p in folder.iterdir()
         if p.is_file() and not p.name.startswith(".")
         and p.suffix.lower() in IMAGE_EXTENSIONS),
        key=lambda p: p.name,
    )
    by_stem = {}
    for file in files:
        if file.stem in by_stem:
            raise ValueError(
                f"{what} folder {folder} has two files with the stem {file.stem!r}: "
                f"{by_stem[file.stem].name} and {file.name}"
            )
        by_stem[file.stem] = file
    return by_stem


def _strip_suffix(files, suffix):
    """Mask files keyed by their image's stem (``a_masks.tif`` -> ``a``)."""
    out = {}
    for stem, file in files.items():
        if stem.endswith(suffix) and len(stem) > len(suffix):
            out[stem[: -len(suffix)]] = file
    return out


def load_folder(path, images_dir="images", masks_dir="masks", mask_suffix=None):
    """Load a dataset folder of images and their masks.

    Images and masks are paired by file stem (``images/a.tif`` pairs with ``masks/a.png``;
    with a ``mask_suffix`` such as ``"_masks"``, ``a.tif`` pairs with ``a_masks.tif``, the
    Cellpose convention) and returned in sorted image file-name order, the order in which the authors' split
    indices (``reference/splits.json``) number the images. Files with other extensions and
    hidden files are ignored.

    Parameters
    ----------
    path : str or path-like
        The dataset folder.
    images_dir : str or None, default="images"
        Sub-folder of ``path`` holding the images; ``None`` reads the images from ``path``.
    masks_dir : str or None, default="masks"
        Sub-folder of ``path`` holding the masks; ``None`` loads the images only. It may be
        the images' folder (e.g. ``masks_dir="."`` with ``images_dir=None``): then files
        whose stem ends with ``mask_suffix`` are masks, never images.
    mask_suffix : str or None, default=None
        Stem suffix that marks mask files (``"_masks"``: ``a_masks.tif`` is the mask of
        ``a.tif``). None means ``""`` for separate folders and ``"_masks"`` when images and
        masks share one folder (a file is never paired with itself).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With keys

        - ``images``: list of ndarray of shape (H, W), dtype uint8 (see :func:`read_image`);
        - ``masks``: list of ndarray of shape (H, W), dtype bool, or ``None`` when
          ``masks_dir=None``;
        - ``names``: list of str, the image file stems;
        - ``path``: str, the dataset folder.

    Raises
    ------
    FileNotFoundError
        If the folder or one of its sub-folders does not exist.
    ValueError
        If there are no images, an image has no mask or a mask no image, two files share a
        stem, a file cannot be decoded, or a mask's shape differs from its image's.

    Examples
    --------
    >>> import tempfile, os
    >>> import numpy as np
    >>> from PIL import Image
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     for sub in ("images", "masks"):
    ...         os.mkdir(os.path.join(tmp, sub))
    ...     for name in ("b", "a"):
    ...         Image.fromarray(np.zeros((4, 6), np.uint8)).save(f"{tmp}/images/{name}.png")
    ...         Image.fromarray(np.ones((4, 6), np.uint8)).save(f"{tmp}/masks/{name}.png")
    ...     data = load_folder(tmp)
    >>> data.names, data.images[0].shape, data.masks[0].dtype
    (['a', 'b'], (4, 6), dtype('bool'))
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    image_folder = root / images_dir if images_dir is not None else root
    image_files = _list_image_files(image_folder, "images")
    same_folder = masks_dir is not None and (root / masks_dir).resolve() == image_folder.resolve()
    if mask_suffix is None:
        mask_suffix = "_masks" if same_folder else ""
    if not isinstance(mask_suffix, str):
        raise TypeError(f"mask_suffix must be a str or None, got {mask_suffix!r}")
    if same_folder and not mask_suffix:
        raise ValueError(
            f"images and masks are both read from {image_folder}: give a mask_suffix "
            "(e.g. '_masks') so that no file is paired with itself")
    if same_folder:
        image_files = {s: f for s, f in image_files.items() if not s.endswith(mask_suffix)}
    if not image_files:
        raise ValueError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {image_folder}"
        )

    mask_files = None
    if masks_dir is not None:
        mask_folder = root / masks_dir
        if not mask_folder.is_dir():
            raise FileNotFoundError(
                f"masks folder not found: {mask_folder} (pass masks_dir=None to load the "
                "images only)"
            )
        mask_files = _list_image_files(mask_folder, "masks")
        if mask_suffix:
            mask_files = _strip_suffix(mask_files, mask_suffix)
        no_mask = [f.name for s, f in image_files.items() if s not in mask_files]
        no_image = [f.name for s, f in mask_files.items() if s not in image_files]
        if no_mask or no_image:
            problems = []
            if no_mask:
                problems.append(
                    f"{len(no_mask)} image(s) in {image_folder} have no mask in "
                    f"{mask_folder}: {_short_list(no_mask)}"
                )
            if no_image:
                problems.append(
                    f"{len(no_image)} mask(s) in {mask_folder} have no image in "
                    f"{image_folder}: {_short_list(no_image)}"
                )
            raise ValueError("; ".join(problems))

    names, images, masks = [], [], None if mask_files is None else []
    for stem, image_file in image_files.items():
        image = read_image(image_file)
        if mask_files is not None:
            mask_file = mask_files[stem]
            mask = read_mask(mask_file)
            if mask.shape != image.shape:
                raise ValueError(
                    f"mask {mask_file} has shape {mask.shape} but its image {image_file} "
                    f"has shape {image.shape}"
                )
            masks.append(mask)
        names.append(stem)
        images.append(image)
    return Bunch(images=images, masks=masks, names=names, path=str(root))


def _resolve_benchmark_name(name, root):
    """Map a benchmark or folder name to ``(dataset_name, folder_name)``."""
    if not isinstance(name, str):
        raise TypeError(f"dataset names must be str, got {name!r}")
    for bench, folder in BENCHMARK_FOLDERS.items():
        if name.lower() in (bench.lower(), folder.lower()):
            return bench, folder
    if (root / name).is_dir():
        return name, name
    raise ValueError(
        f"unknown dataset {name!r}: expected one of {list(BENCHMARK_FOLDERS)} or the name of "
        f"a folder of {root}"
    )


def load_benchmark(root, names=None):
    """Load several dataset folders (by default the paper's five benchmarks).

    Parameters
    ----------
    root : str or path-like
        Folder holding the dataset folders (e.g. ``shared/data``); each one is read with
        :func:`load_folder`.
    names : str or list of str, default=None
        Datasets to load, in this order: benchmark names (keys of :data:`BENCHMARK_FOLDERS`,
        case-insensitive) or folder names under ``root``. ``None`` loads every dataset
        folder of ``root`` (a folder with ``images/`` and ``masks/``): the benchmark folders
        of :data:`BENCHMARK_FOLDERS` first, in that order, then the others sorted by name
        (hidden folders are skipped). A dataset given by its benchmark folder is reported
        under its benchmark name (``"B39"``); any other folder under its folder name.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With keys

        - ``images``: list of ndarray of shape (H, W), dtype uint8, dataset after dataset;
        - ``masks``: list of ndarray of shape (H, W), dtype bool;
        - ``names``: list of str, the image file stems;
        - ``dataset``: ndarray of str, the dataset name of each image;
        - ``datasets``: list of str, the dataset names in order.

    Raises
    ------
    FileNotFoundError
        If ``root`` or a requested dataset folder does not exist, or ``names=None`` and
        ``root`` holds no dataset folder.
    ValueError
        If a name is unknown or repeated, or a folder is invalid (see :func:`load_folder`).

    Examples
    --------
    >>> from kwtl.datasets import load_benchmark
    >>> data = load_benchmark("shared/data", names=["ssTEM"])  # doctest: +SKIP
    >>> len(data.images), data.datasets  # doctest: +SKIP
    (20, ['ssTEM'])
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"benchmark data folder not found: {root}")
    if names is None:
        selected = [(b, f) for b, f in BENCHMARK_FOLDERS.items() if (root / f).is_dir()]
        known = {f for _, f in selected}
        selected += [(d.name, d.name) for d in sorted(root.iterdir(), key=lambda d: d.name)
                     if d.name not in known and not d.name.startswith(".")
                     and (d / "images").is_dir() and (d / "masks").is_dir()]
        if not selected:
            raise FileNotFoundError(
                f"no dataset folder (a folder with images/ and masks/) in {root}; the "
                f"benchmark folders are {list(BENCHMARK_FOLDERS.values())}"
            )
    else:
        if isinstance(names, str):
            names = [names]
        selected = [_resolve_benchmark_name(name, root) for name in names]
        if not selected:
            raise ValueError("names is empty: give at least one dataset")
        seen = [bench for bench, _ in selected]
        repeated = sorted({b for b in seen if seen.count(b) > 1})
        if repeated:
            raise ValueError(f"datasets requested more than once: {repeated}")

    images, masks, image_names, dataset = [], [], [], []
    for bench, folder in selected:
        part = load_folder(root / folder)
        images.extend(part.images)
        masks.extend(part.masks)
        image_names.extend(part.names)
        dataset.extend([bench] * len(part.images))
    return Bunch(
        images=images,
        masks=masks,
        names=image_names,
        dataset=np.asarray(dataset, dtype=str),
        datasets=[bench for bench, _ in selected],
    )
