"""Checksums of the user's data, and the readers the workflow uses.

Reading and writing files is :mod:`kwtl.datasets`' job (``load_images``, ``load_folder``,
``read_mask``, ``write_image``, ``write_mask``); this module only adds the checksums
recorded in selection and model files, and the resume checkpoints of the long steps.
"""
import hashlib
from pathlib import Path

import numpy as np

from ..datasets import IMAGE_EXTENSIONS, load_folder, load_images, read_mask
from ..utils import masks_to_foreground

__all__ = ["folder_sha256", "read_checkpoint", "write_checkpoint", "load_annotated", "load_unlabelled", "read_foreground",
           "sha256_array"]


def read_checkpoint(path, fingerprint):
    """The checkpoint at ``path`` if it was written for ``fingerprint``, else None
    (weights-only load: a checkpoint runs no code)."""
    import torch

    if not Path(path).is_file():
        return None
    saved = torch.load(path, map_location="cpu", weights_only=True)
    return saved if saved.get("fingerprint") == fingerprint else None


def write_checkpoint(path, fingerprint, module, **state):
    """Atomically write ``module``'s weights (on the CPU) and ``state`` for ``fingerprint``."""
    import torch

    from ..utils._atomic import atomic_write

    state = {"fingerprint": fingerprint, **state,
             "module": {k: v.detach().cpu() for k, v in module.state_dict().items()}}
    atomic_write(path, lambda f: torch.save(state, f))


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
    for path in sorted(p for p in root.rglob("*") if p.is_file()
                       and not any(part.startswith(".") for part in p.relative_to(root).parts)
                       and p.suffix.lower() in IMAGE_EXTENSIONS):
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
