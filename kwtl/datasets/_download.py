"""Downloading public datasets into the ``images/`` + ``masks/`` layout of :func:`load_folder`.

Only ssTEM is redistributed in a form that can be fetched without registration; the other
benchmarks' sources are listed in the user guide's data section.
"""

import io
import os
import re
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from ..utils import as_uint8_image

__all__ = ["SSTEM_URL", "download_sstem"]

#: GitHub archive of Gerhard et al.'s Drosophila VNC ssTEM ground truth.
SSTEM_URL = "https://github.com/unidesigner/groundtruth-drosophila-vnc/archive/master.zip"

_SSTEM_RAW = re.compile(r"(?:^|/)stack1/raw/(\d+)\.tif$")
_SSTEM_MITO = re.compile(r"(?:^|/)stack1/mitochondria/(\d+)\.png$")

_SSTEM_SOURCE = """\
# ssTEM - Drosophila VNC serial-section TEM, mitochondria

Downloaded by kwtl.datasets.download_sstem from {url}
(stack1/raw/NN.tif -> images/NN.png, stack1/mitochondria/NN.png -> masks/NN.png,
masks binarised as value > 127 -> 255, else 0).
Gerhard, Funke, Martel, Cardona, Fetter, "Segmented anisotropic ssTEM dataset of neural tissue",
figshare, doi:10.6084/m9.figshare.856713. Licence: CC BY-NC-SA 3.0 (non-commercial; cite the DOI).
"""


def _decode(data, suffix):
    from PIL import Image

    if suffix == ".tif":
        import tifffile

        return tifffile.imread(io.BytesIO(data))
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return np.asarray(img) if img.mode not in ("P", "PA") else np.asarray(img.convert("L"))


def _write_png(array, path):
    from PIL import Image

    Image.fromarray(array).save(path)


def _install_sstem_zip(zip_path, root, folder="ssTEM", overwrite=False):
    """Extract ssTEM stack 1 from the GitHub archive into ``root/folder/{images,masks}``.

    Images are re-encoded losslessly as 8-bit PNG and masks binarised (value > 127 is
    mitochondrion). The dataset is written to a temporary folder beside the target and
    renamed into place, so an interrupted install never leaves a partial dataset.

    Returns
    -------
    path : pathlib.Path
        The dataset folder.
    """
    root = Path(root)
    target = root / folder
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists (pass overwrite=True to replace it)")
    root.mkdir(parents=True, exist_ok=True)

    try:
        archive = zipfile.ZipFile(zip_path)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"{zip_path} is not a valid zip archive: {exc}") from exc
    with archive:
        raw, mito = {}, {}
        for member in archive.namelist():
            for pattern, found in ((_SSTEM_RAW, raw), (_SSTEM_MITO, mito)):
                match = pattern.search(member)
                if match:
                    found[match.group(1)] = member
        if not raw:
            raise ValueError(f"{zip_path} holds no stack1/raw/*.tif: not the ssTEM archive")
        unpaired = sorted(set(raw) ^ set(mito))
        if unpaired:
            raise ValueError(
                f"{zip_path}: slices without both a raw image and a mitochondria mask: {unpaired}"
            )

        staging = Path(tempfile.mkdtemp(prefix=f".{folder}-", dir=root))
        try:
            (staging / "images").mkdir()
            (staging / "masks").mkdir()
            for number in sorted(raw):
                name = f"{number}.png"
                image = as_uint8_image(_decode(archive.read(raw[number]), ".tif"), raw[number])
                mask = as_uint8_image(_decode(archive.read(mito[number]), ".png"), mito[number])
                if mask.shape != image.shape:
                    raise ValueError(
                        f"{mito[number]} has shape {mask.shape} but {raw[number]} has "
                        f"shape {image.shape}"
                    )
                _write_png(image, staging / "images" / name)
                _write_png(np.where(mask > 127, 255, 0).astype(np.uint8), staging / "masks" / name)
            (staging / "SOURCE.md").write_text(_SSTEM_SOURCE.format(url=SSTEM_URL))
            retired = None
            if target.exists():
                retired = Path(tempfile.mkdtemp(prefix=f".{folder}-old-", dir=root))
                os.replace(target, retired / folder)
            os.replace(staging, target)
            if retired is not None:
                shutil.rmtree(retired, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target


def download_sstem(root, url=SSTEM_URL, folder="ssTEM", overwrite=False, timeout=60):
    """Download the ssTEM benchmark (Gerhard et al.) into ``root/folder``.

    The archive of stack 1 is fetched from GitHub (about 50 MB), its 20 raw slices are
    written as ``images/NN.png`` and the mitochondria masks, binarised at 127, as
    ``masks/NN.png``, so that ``load_benchmark(root, names=["ssTEM"])`` reads them. The data
    are licensed CC BY-NC-SA 3.0 (non-commercial; cite doi:10.6084/m9.figshare.856713).

    Parameters
    ----------
    root : str or path-like
        Data folder; created if needed.
    url : str, default=SSTEM_URL
        Where to fetch the zip archive from (e.g. a mirror or a commit archive).
    folder : str, default="ssTEM"
        Name of the dataset folder created under ``root``.
    overwrite : bool, default=False
        Replace an existing dataset folder. When ``False`` and the folder exists, nothing is
        downloaded and its path is returned.
    timeout : float, default=60
        Network timeout in seconds.

    Returns
    -------
    path : pathlib.Path
        The dataset folder ``root/folder``.

    Examples
    --------
    >>> from kwtl.datasets import download_sstem, load_benchmark
    >>> path = download_sstem("data")  # doctest: +SKIP
    >>> load_benchmark("data", names=["ssTEM"]).datasets  # doctest: +SKIP
    ['ssTEM']
    """
    target = Path(root) / folder
    if target.exists() and not overwrite:
        return target
    Path(root).mkdir(parents=True, exist_ok=True)
    handle, zip_path = tempfile.mkstemp(suffix=".zip", prefix=".ssTEM-download-", dir=root)
    try:
        with (
            os.fdopen(handle, "wb") as out,
            urllib.request.urlopen(url, timeout=timeout) as response,
        ):
            shutil.copyfileobj(response, out, length=1 << 20)
        return _install_sstem_zip(zip_path, root, folder=folder, overwrite=overwrite)
    finally:
        os.unlink(zip_path)
