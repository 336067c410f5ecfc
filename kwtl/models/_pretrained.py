"""The authors' released FCRN weights (Dawoud et al., WACV 2023) as ready segmenters.

The files come from the authors' repository ``Yussef93/KnowWhatToLabel`` at commit
``509f5328728cc8f8bf3f8ab5fb7177da78c7f208`` (MIT licence, Copyright (c) 2022 Yussef93); they
were removed from the repository afterwards, so the download is pinned to that commit and
every file is checked against its sha256 before it is used.
"""

import os
from pathlib import Path

from ._io import _sha256_file

__all__ = ["PRETRAINED", "AUTHORS_COMMIT", "load_pretrained", "pretrained_path"]

AUTHORS_COMMIT = "509f5328728cc8f8bf3f8ab5fb7177da78c7f208"
_BASE_URL = f"https://github.com/Yussef93/KnowWhatToLabel/raw/{AUTHORS_COMMIT}/"

#: name -> (local file name, path in the authors' repository, sha256, description)
PRETRAINED = {
    "authors:EM": (
        "authors_plft_EM.pth",
        "models/PLFT/model_pretrained_MetaBCE_100epochs_PL_target_EM.pth",
        "e3d900d0b85138bc6b4b1ff0da45a5a860d731024c125dc5eb76f51d1fea47e7",
        "Reptile on B5, B39, TNBC, ssTEM, then 100 epochs PLFT on EM (affine BatchNorm)",
    ),
    "authors:ssTEM": (
        "authors_plft_ssTEM.pth",
        "models/PLFT/model_pretrained_MetaBCE_100epochs_PL_target_ssTEM.pth",
        "d5f52721c692df441397f70420cb2d5ccfb42034f76165f05c152741d8606a7d",
        "Reptile on the other four datasets, then 100 epochs PLFT on ssTEM",
    ),
    "authors:B39": (
        "authors_plft_B39.pth",
        "models/PLFT/model_pretrained_MetaBCE_100epochs_PL_target_B39.pth",
        "78105a432fa36a1668c511cae03345ca029013b8c45456dfa0ee91ae95fd4925",
        "Reptile then PLFT on the authors' BBBC039",
    ),
    "authors:B5": (
        "authors_plft_B5.pth",
        "models/PLFT/model_pretrained_MetaBCE_100epochs_PL_target_B5.pth",
        "bd040cba7caacdcce150abfc80f7c503da740e09fa23e919b2430f19863a4ad7",
        "Reptile then PLFT on the authors' BBBC005",
    ),
    "authors:TNBC": (
        "authors_plft_TNBC.pth",
        "models/PLFT/model_pretrained_MetaBCE_100epochs_PL_target_TNBC.pth",
        "b1c5998d7b9d6d4bf4b85c6d1b056fd5969287bccc6aaaa7cc97e389ce126012",
        "Reptile then PLFT on the authors' TNBC",
    ),
    "authors:meta-TNBC": (
        "authors_meta_TNBC.pt",
        "models/Pretrained/model_TNBC.pt",
        "7a24bdae1401b4f9e7287c5b5acb4f5819336b0367d5d247d1ea9e0657496a15",
        "Reptile only (sources: all but TNBC), non-affine BatchNorm",
    ),
}


def _entry(name):
    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained weights {name!r}; choose from {sorted(PRETRAINED)}")
    return PRETRAINED[name]


def pretrained_path(name, source=None, download=False, cache_dir=None):
    """Local path of verified weights ``name`` (sha256 checked).

    Parameters
    ----------
    name : str
        A key of :data:`PRETRAINED`, e.g. ``"authors:EM"``.
    source : str, path or None, default=None
        A weights file, or a folder holding the file under its local name
        (``authors_plft_EM.pth`` …). None looks in the ``KWTL_WEIGHTS`` folder if set,
        then in ``cache_dir``.
    download : bool, default=False
        If the file is not found locally, download it (with pooch) from the authors'
        repository at the pinned commit into ``cache_dir``. Off by default: nothing is
        fetched unless asked.
    cache_dir : str, path or None, default=None
        Download folder; None uses pooch's per-user cache folder for ``kwtl``.

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    ValueError
        Unknown name, or a file whose sha256 differs from the recorded one.
    FileNotFoundError
        Not found locally and ``download=False``.
    """
    filename, remote, sha256, _ = _entry(name)
    candidates = []
    if source is not None:
        source = Path(source)
        candidates.append(source / filename if source.is_dir() else source)
    elif os.environ.get("KWTL_WEIGHTS"):
        candidates.append(Path(os.environ["KWTL_WEIGHTS"]) / filename)
    if cache_dir is not None:
        candidates.append(Path(cache_dir) / filename)
    for path in candidates:
        if path.is_file():
            digest = _sha256_file(path)
            if digest != sha256:
                raise ValueError(
                    f"{path} does not match the authors' {name} weights: sha256 "
                    f"{digest}, expected {sha256}"
                )
            return path
    if not download:
        where = ", ".join(str(p) for p in candidates) or "no local folder given"
        raise FileNotFoundError(
            f"weights {name!r} ({filename}) not found ({where}); pass source= a file or folder, "
            "set KWTL_WEIGHTS, or download=True to fetch them from the authors' repository "
            f"at commit {AUTHORS_COMMIT}"
        )
    import pooch

    path = pooch.retrieve(
        url=_BASE_URL + remote,
        known_hash=f"sha256:{sha256}",
        fname=filename,
        path=cache_dir if cache_dir is not None else pooch.os_cache("kwtl"),
        progressbar=False,
    )
    return Path(path)


def load_pretrained(name, source=None, download=False, cache_dir=None, **segmenter_params):
    """An initialised :class:`~kwtl.models.FCRNSegmenter` with the authors' weights.

    The PLFT checkpoints have affine BatchNorm (the paper's target-side switch), so the
    segmenter is switched to affine BatchNorm before loading; their BatchNorm running
    statistics (used by the selectors) are the authors'. Use it as the starting point of
    support fine-tuning: ``FewShotSegmentation(segmenter=load_pretrained("authors:EM"),
    pseudo_labeler=None, pl_epochs=0, switch_affine=False, recalibrate_batchnorm=False)``
    fitted with ``sample_domain=None`` skips Reptile and PLFT.

    Parameters
    ----------
    name, source, download, cache_dir
        See :func:`pretrained_path`.
    **segmenter_params
        Parameters of the segmenter (``patch_size``, ``stride``, ``batch_size`` …); the
        network width is the checkpoint's (32).

    Returns
    -------
    segmenter : FCRNSegmenter

    Examples
    --------
    >>> from kwtl.models import load_pretrained
    >>> seg = load_pretrained("authors:ssTEM", source="../shared/weights")  # doctest: +SKIP
    >>> seg.module_.conv1[1].affine  # doctest: +SKIP
    True
    """
    import torch

    from ._segmenter import FCRNSegmenter

    path = pretrained_path(name, source=source, download=download, cache_dir=cache_dir)
    state = torch.load(path, map_location="cpu", weights_only=True)
    width = int(state["conv1.0.weight"].shape[0])
    params = {"module__width": width, **segmenter_params}
    segmenter = FCRNSegmenter(**params).initialize()
    segmenter.load_params(f_params=path)
    return segmenter
