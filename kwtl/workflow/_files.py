"""Reading the user's folders and writing the workflow's files (atomically, never over a
user's file).

The readers here are thin adapters over :mod:`kwtl.datasets`; the private ``_shim`` helpers
stand in for the format readers and writers being added to :mod:`kwtl.datasets`
(``load_images``, ``write_mask`` …) and :mod:`kwtl.postprocess` (``label_instances``).
"""
import hashlib
import io
from pathlib import Path

import numpy as np

from ..datasets import load_folder, read_image, read_mask
from ..datasets._folder import IMAGE_EXTENSIONS
from ..utils._atomic import atomic_write

__all__ = ["folder_sha256", "load_annotated", "load_unlabelled", "read_foreground",
           "write_array", "label_instances", "sha256_array"]


def sha256_array(array):
    """sha256 of an array's dtype, shape and bytes (a checksum of decoded pixels)."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(f"{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
    return digest.hexdigest()


def _image_files(folder):
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() in IMAGE_EXTENSIONS)


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


def load_unlabelled(folder, channel=None):
    """The images of an unlabelled folder, sorted by name: ``(images, names)``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"images folder not found: {folder}")
    if channel is not None:  # placeholder until kwtl.datasets.load_images lands
        raise ValueError("--channel needs kwtl.datasets.load_images (multi-channel files)")
    files = _image_files(folder)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {folder}")
    stems = [f.stem for f in files]
    if len(set(stems)) != len(stems):
        dup = sorted({s for s in stems if stems.count(s) > 1})
        raise ValueError(f"{folder} has several files named {dup[0]!r} (different extensions)")
    return [read_image(f) for f in files], stems


def load_annotated(folder):
    """An annotated folder: ``images/`` + ``masks/``, or Cellpose pairs ``x.tif`` +
    ``x_masks.tif`` in one folder. Returns a Bunch with ``images``, ``masks``, ``names``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"source folder not found: {folder}")
    if (folder / "images").is_dir():
        return load_folder(folder)
    return load_folder(folder, images_dir=None, masks_dir=".", mask_suffix="_masks")


def read_foreground(path):
    """The foreground of a mask file (binary, or instance labels: non-zero is foreground)."""
    return np.asarray(read_mask(path), dtype=bool)


def write_array(path, array):
    """Write a 2-D (or RGB) array as PNG or TIFF (by the suffix), atomically."""
    path = Path(path)
    suffix = path.suffix.lower()
    array = np.asarray(array)
    buffer = io.BytesIO()
    if suffix in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(buffer, array, compression="zlib")
    elif suffix == ".png":
        from PIL import Image

        if array.dtype == np.uint32 or array.dtype == np.int32 or array.dtype == np.int64:
            if array.max(initial=0) > np.iinfo(np.uint16).max:
                raise ValueError(f"{path}: more than 65535 labels do not fit a PNG; use TIFF")
            array = array.astype(np.uint16)
        Image.fromarray(array).save(buffer, format="PNG")
    else:
        raise ValueError(f"cannot write {path}: use .png or .tif")
    return atomic_write(path, lambda f: f.write(buffer.getvalue()))


def label_instances(probability, threshold=0.5, min_distance=5):
    """Instance labels of a probability map: connected components of ``probability >=
    threshold``, touching cells split by a watershed on the distance transform."""
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    foreground = np.asarray(probability) >= threshold
    if not foreground.any():
        return np.zeros(foreground.shape, dtype=np.int32)
    distance = ndi.distance_transform_edt(foreground)
    components, _ = ndi.label(foreground)
    peaks = peak_local_max(distance, min_distance=min_distance, labels=components,
                           exclude_border=False)
    markers = np.zeros(foreground.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # components without a peak (thin shapes) keep one label of their own
    missing = np.setdiff1d(np.unique(components[foreground]), np.unique(components[markers > 0]))
    for k, comp in enumerate(missing, start=len(peaks) + 1):
        markers.flat[np.argmax(components == comp)] = k  # first pixel of the component
    return watershed(-distance, markers, mask=foreground).astype(np.int32)
