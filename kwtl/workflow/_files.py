"""Checksums of the user's data, and the readers the workflow uses.

Reading and writing files is :mod:`kwtl.datasets`' job (``load_images``, ``load_folder``,
``read_mask``, ``write_image``, ``write_mask``); this module only adds the checksums
recorded in selection and model files.
"""

import hashlib
from pathlib import Path

import numpy as np

from ..datasets import IMAGE_EXTENSIONS, load_folder, load_images, read_mask
from ..utils import check_images, masks_to_foreground

__all__ = [
    "as_images",
    "folder_sha256",
    "load_annotated",
    "load_unlabelled",
    "read_foreground",
    "sha256_array",
]


def as_images(images, channel=None, progress=False):
    """A folder (read with the format policy) or a list of arrays: ``(arrays, names,
    record)``, where ``record`` names the folder (or ``"<arrays>"``)."""
    if isinstance(images, (str, Path)):
        folder = Path(images)
        arrays, names = load_unlabelled(folder, channel=channel, progress=bool(progress))
        return arrays, names, str(folder.resolve())
    arrays = check_images(images, name="images")
    return arrays, [f"image{i:03d}" for i in range(len(arrays))], "<arrays>"


def sha256_array(array):
    """sha256 of an array's dtype, shape and bytes (a checksum of decoded pixels)."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def folder_sha256(folder):
    """One sha256 over every image file under ``folder`` (relative names and bytes).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = (pathlib.Path(tmp) / "a.png").write_bytes(b"x")
    ...     len(folder_sha256(tmp))
    64
    """
    root = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and p.suffix.lower() in IMAGE_EXTENSIONS
    ):
        digest.update(str(path.relative_to(root).as_posix()).encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load_unlabelled(folder, channel=None, progress=False):
    """The images of an unlabelled folder, sorted by name (stacks split into planes):
    ``(images, names)``; see :func:`kwtl.datasets.load_images`."""
    return load_images(folder, channel=channel, progress=progress)


def load_annotated(folder):
    """An annotated folder: ``images/`` + ``masks/``, or Cellpose pairs ``x.tif`` +
    ``x_masks.tif`` in one folder (:func:`kwtl.datasets.load_folder`)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"source folder not found: {folder}")
    return load_folder(folder)


def read_foreground(path):
    """The foreground of a mask file: binary, or instance labels with touching cells kept
    apart (:func:`kwtl.utils.masks_to_foreground`)."""
    return masks_to_foreground(read_mask(path), separate_touching=True)
