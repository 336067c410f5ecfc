"""Reading microscopy datasets from folders, and the five benchmark datasets.

A labelled dataset folder holds either ``images/`` and ``masks/`` with one mask per image,
paired by file stem (``images/a.tif`` pairs with ``masks/a.png``), or Cellpose-style pairs
in one folder (``a.tif`` with ``a_masks.tif``); :func:`load_folder` tells them apart. An
unlabelled folder is read by :func:`load_images`. Files are read by
:func:`~kwtl.datasets.read_image`, :func:`~kwtl.datasets.read_stack` and
:func:`~kwtl.datasets.read_mask` (PNG, TIFF, JPEG images; PNG, TIFF masks) and converted with
the rules of :func:`kwtl.utils.check_images` and :func:`kwtl.utils.check_masks`.
"""

from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from ..utils import as_mask, as_uint8_image
from ._formats import IMAGE_EXTENSIONS, _check_channel, _decode, _planes, read_image, read_mask

__all__ = [
    "BENCHMARK_FOLDERS",
    "load_benchmark",
    "MASK_SUFFIX",
    "load_folder",
    "load_images",
]

#: The paper's benchmark names and the folders of ``shared/data`` that hold them.
BENCHMARK_FOLDERS = {
    "ssTEM": "ssTEM",
    "EM": "EM",
    "B39": "B39_sub_DSB2018_U2OS",
    "B5": "B5_sub_DSB2018_fluo360",
    "TNBC": "TNBC_sub_NuInsSeg",
}

#: Stem suffix of Cellpose's mask files (``a_masks.tif`` is the mask of ``a.tif``).
MASK_SUFFIX = "_masks"
_OTHER_MASK_SUFFIXES = ("_mask", "_seg", "_label", "_labels", "_cp_masks")

_MAX_LISTED = 10


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
        (
            p
            for p in folder.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
        ),
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


def _auto_mask_hint(folder, image_files):
    """A hint for a folder without ``_masks`` files: other suffixes, or Cellpose npy files."""
    stems = [
        p.stem for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    ]
    for suffix in _OTHER_MASK_SUFFIXES:
        if any(s.endswith(suffix) and s[: -len(suffix)] in image_files for s in stems):
            return f"; files named like <image>{suffix} exist: pass mask_suffix={suffix!r}"
    if any(p.name.endswith("_seg.npy") for p in folder.iterdir()):
        return (
            "; Cellpose _seg.npy files are not read (they are Python pickles): save the "
            "masks as <image>_masks.png or .tif (Cellpose: --save_png / --save_tif, or "
            "the GUI's File > Save masks)"
        )
    return ""


def load_folder(path, images_dir="auto", masks_dir="auto", mask_suffix=None, channel=None):
    """Load a labelled dataset folder: images and their masks.

    Two layouts are recognised (``images_dir="auto"``, ``masks_dir="auto"``):

    * **separate folders**: ``images/`` and ``masks/`` sub-folders, paired by file stem
      (``images/a.tif`` pairs with ``masks/a.png``);
    * **Cellpose pairs in one folder**: ``a.tif`` with ``a_masks.tif`` (or ``.png``), used
      when there is no ``masks/`` sub-folder (the images are read from ``images/`` if it
      exists, else from ``path`` itself); files whose stem ends with ``mask_suffix`` are
      masks, never images.

    Pairs are returned in sorted image file-name order, the order in which the authors'
    split indices (``reference/splits.json``) number the images. Files with other
    extensions and hidden files are ignored; Cellpose's ``_seg.npy`` files are not read
    (they are Python pickles, which can run code: export the masks as PNG or TIFF). Masks
    may be binary or instance labels; instance labels become foreground by
    :func:`kwtl.utils.masks_to_foreground`, so touching cells stay apart.

    Parameters
    ----------
    path : str or path-like
        The dataset folder.
    images_dir : str or None, default="auto"
        Sub-folder of ``path`` holding the images; ``None`` reads them from ``path``;
        ``"auto"`` means ``images/`` when it exists, else ``path``.
    masks_dir : str or None, default="auto"
        Sub-folder of ``path`` holding the masks (``"."``: ``path`` itself); ``None`` loads
        the images only; ``"auto"`` means ``masks/`` when it exists, else the images'
        folder (Cellpose pairs).
    mask_suffix : str or None, default=None
        Stem suffix that marks mask files (``"_masks"``: ``a_masks.tif`` is the mask of
        ``a.tif``). None means ``""`` for separate folders and ``"_masks"`` when images and
        masks share one folder (a file is never paired with itself).
    channel : int or None, default=None
        The image channel to read from multi-channel files (see
        :func:`~kwtl.datasets.read_image`).

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With keys

        - ``images``: list of ndarray of shape (H, W), dtype uint8 (see
          :func:`~kwtl.datasets.read_image`);
        - ``masks``: list of ndarray of shape (H, W), dtype bool, or ``None`` when
          ``masks_dir=None``;
        - ``names``: list of str, the image file stems;
        - ``path``: str, the dataset folder.

    Raises
    ------
    FileNotFoundError
        If the folder or one of its sub-folders does not exist.
    ValueError
        If there are no images, an image has no mask or a mask no image (the files are
        named), two files share a stem, a file cannot be decoded, or a mask's shape differs
        from its image's.

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

    Cellpose pairs in one folder are found without options:

    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     Image.fromarray(np.zeros((4, 6), np.uint8)).save(f"{tmp}/x.png")
    ...     Image.fromarray(np.eye(4, 6, dtype=np.uint8)).save(f"{tmp}/x_masks.png")
    ...     data = load_folder(tmp)
    >>> data.names, int(data.masks[0].sum())
    (['x'], 4)
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    channel = _check_channel(channel)
    if images_dir == "auto":
        image_folder = root / "images" if (root / "images").is_dir() else root
    else:
        image_folder = root / images_dir if images_dir is not None else root
    image_files = _list_image_files(image_folder, "images")
    if masks_dir == "auto":
        mask_folder = root / "masks" if (root / "masks").is_dir() else image_folder
    else:
        mask_folder = root / masks_dir if masks_dir is not None else None
    same_folder = mask_folder is not None and mask_folder.resolve() == image_folder.resolve()
    if mask_suffix is None:
        mask_suffix = MASK_SUFFIX if same_folder else ""
    if not isinstance(mask_suffix, str):
        raise TypeError(f"mask_suffix must be a str or None, got {mask_suffix!r}")
    if same_folder and not mask_suffix:
        raise ValueError(
            f"images and masks are both read from {image_folder}: give a mask_suffix "
            "(e.g. '_masks') so that no file is paired with itself"
        )
    if same_folder:
        image_files = {s: f for s, f in image_files.items() if not s.endswith(mask_suffix)}
    if not image_files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {image_folder}")

    mask_files = None
    if mask_folder is not None:
        if not mask_folder.is_dir():
            raise FileNotFoundError(
                f"masks folder not found: {mask_folder} (pass masks_dir=None to load the "
                "images only)"
            )
        mask_files = _list_image_files(mask_folder, "masks")
        if mask_suffix:
            mask_files = _strip_suffix(mask_files, mask_suffix)
        if same_folder and not mask_files:
            where = f"no masks/ folder in {root} and " if masks_dir == "auto" else ""
            raise ValueError(
                f"no masks found: {where}no *{mask_suffix} files beside the images in "
                f"{image_folder} (for unlabelled images use load_images, or "
                f"masks_dir=None){_auto_mask_hint(image_folder, image_files)}"
            )
        no_mask = [f.name for s, f in image_files.items() if s not in mask_files]
        no_image = [f.name for s, f in mask_files.items() if s not in image_files]
        if no_mask or no_image:
            problems = []
            if no_mask:
                expected = f" (expected <image>{mask_suffix}.png or .tif)" if mask_suffix else ""
                problems.append(
                    f"{len(no_mask)} image(s) in {image_folder} have no mask in "
                    f"{mask_folder}{expected}: {_short_list(no_mask)}"
                )
            if no_image:
                problems.append(
                    f"{len(no_image)} mask(s) in {mask_folder} have no image in "
                    f"{image_folder}: {_short_list(no_image)}"
                )
            raise ValueError("; ".join(problems))

    names, images, masks = [], [], None if mask_files is None else []
    for stem, image_file in image_files.items():
        image = read_image(image_file, channel=channel)
        if mask_files is not None:
            mask_file = mask_files[stem]
            mask = as_mask(read_mask(mask_file), name=str(mask_file))
            if mask.shape != image.shape:
                raise ValueError(
                    f"mask {mask_file} has shape {mask.shape} but its image {image_file} "
                    f"has shape {image.shape}"
                )
            masks.append(mask)
        names.append(stem)
        images.append(image)
    return Bunch(images=images, masks=masks, names=names, path=str(root))


def _unlabelled_files(folder, recursive, mask_suffix):
    """Image files under ``folder`` keyed by name (relative path without extension)."""
    pattern = "**/*" if recursive else "*"
    files = {}
    for file in sorted(folder.glob(pattern)):
        rel = file.relative_to(folder)
        if (
            not file.is_file()
            or any(part.startswith(".") for part in rel.parts)
            or file.suffix.lower() not in IMAGE_EXTENSIONS
            or (mask_suffix and file.stem.endswith(mask_suffix))
        ):
            continue
        name = rel.with_suffix("").as_posix()
        if name in files:
            raise ValueError(
                f"{folder} has two images named {name!r}: {files[name].name} and {file.name}"
            )
        files[name] = file
    return dict(sorted(files.items()))


def load_images(folder, channel=None, recursive=False, mask_suffix=MASK_SUFFIX, progress=False):
    """Load every image of an unlabelled folder, stacks split into their planes.

    Files are read in sorted name order with :func:`~kwtl.datasets.read_image`'s rules; a
    TIFF stack ``x.tif`` of ``n`` planes gives ``n`` images named ``x_z000``, ``x_z001``,
    ... (:func:`~kwtl.datasets.read_stack`). Files whose stem ends with ``mask_suffix``
    (Cellpose masks), hidden files and other extensions are skipped.

    Parameters
    ----------
    folder : str or path-like
    channel : int or None, default=None
        The channel to read from multi-channel files (see
        :func:`~kwtl.datasets.read_image`).
    recursive : bool, default=False
        Whether to read sub-folders too; names are then relative paths
        (``"day1/x"``), with ``/`` as separator.
    mask_suffix : str or None, default="_masks"
        Stem suffix of files that are skipped as masks; None skips nothing.
    progress : bool, default=False
        Show a progress bar (one tick per file).

    Returns
    -------
    images : list of ndarray of shape (H, W), dtype uint8
    names : list of str
        The file names without extension (plus ``_zNNN`` for stack planes), sorted.

    Raises
    ------
    FileNotFoundError
        If ``folder`` does not exist.
    ValueError
        If there is no image, two files share a name, or a file cannot be read (the
        error names it).

    Examples
    --------
    >>> import tempfile, os
    >>> import numpy as np
    >>> import tifffile
    >>> from PIL import Image
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     Image.fromarray(np.zeros((8, 8), np.uint8)).save(os.path.join(tmp, "b.png"))
    ...     Image.fromarray(np.ones((8, 8), np.uint8)).save(os.path.join(tmp, "b_masks.png"))
    ...     tifffile.imwrite(os.path.join(tmp, "a.tif"), np.zeros((2, 8, 8), np.uint8),
    ...                      photometric="minisblack", metadata={"axes": "ZYX"})
    ...     images, names = load_images(tmp)
    >>> names
    ['a_z000', 'a_z001', 'b']
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    channel = _check_channel(channel)
    files = _unlabelled_files(folder, recursive, mask_suffix)
    if not files:
        raise ValueError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {folder}"
            + ("" if recursive else " (sub-folders are not read: pass recursive=True)")
        )
    from tqdm.auto import tqdm

    images, names = [], []
    for name, file in tqdm(files.items(), desc="reading images", unit="file", disable=not progress):
        planes = _planes(_decode(file), file, channel, as_stack="auto")
        is_stack = len(planes) > 1
        width = max(3, len(str(len(planes) - 1)))
        for z, plane in enumerate(planes):
            label = f"{file} plane {z}" if is_stack else str(file)
            images.append(as_uint8_image(plane, name=label))
            names.append(f"{name}_z{z:0{width}d}" if is_stack else name)
    return images, names


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
        selected += [
            (d.name, d.name)
            for d in sorted(root.iterdir(), key=lambda d: d.name)
            if d.name not in known
            and not d.name.startswith(".")
            and (d / "images").is_dir()
            and (d / "masks").is_dir()
        ]
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
