"""Model files of the workflow: load a model by file or by name, save one with provenance."""

import os
from pathlib import Path

from ..models import FCRNSegmenter, ModelFileError
from ..models._io import _sha256_file, read_sidecar, save_weights, sidecar_path
from ..models._pretrained import PRETRAINED, load_pretrained, pretrained_path
from ._step import fingerprint

__all__ = ["load_model", "model_source", "recorded_training", "save_model"]

# FCRNSegmenter parameters a model file restores (the device and the seed are the caller's)
_RESTORED = tuple(k for k in FCRNSegmenter._parameter_constraints if k != "random_state") + (
    "module__width",
    "module__dropout",
    "module__init",
)


def _restore(value):
    return tuple(value) if isinstance(value, list) else value


def model_source(model):
    """Name and sha256 of a model given by name or file (for provenance records)."""
    if isinstance(model, FCRNSegmenter):
        return {
            "name": "<in-memory FCRNSegmenter>",
            "sha256": fingerprint(
                model.get_params(deep=False).get("module__width"),
                {k: v.detach().cpu().numpy() for k, v in model.module_.state_dict().items()},
            ),
        }
    name = os.fspath(model)
    if name in PRETRAINED:
        return {"name": name, "sha256": PRETRAINED[name][2]}
    _check_file(name)
    return {"name": str(Path(name).resolve()), "sha256": _sha256_file(name)}


def _check_file(name):
    if name.startswith("authors:"):
        raise ModelFileError(
            f"unknown pretrained model {name!r}; choose from {', '.join(sorted(PRETRAINED))}"
        )
    if not Path(name).is_file():
        raise ModelFileError(
            f"model {name}: no such file (give a file written by kwtl pretrain or kwtl finetune, "
            f"or one of {', '.join(sorted(PRETRAINED))})"
        )


def load_model(model, download=True, **params):
    """An :class:`~kwtl.models.FCRNSegmenter` from a model file or a pretrained name.

    Parameters
    ----------
    model : str, path-like or FCRNSegmenter
        A file written by :func:`save_model` (``kwtl pretrain`` / ``kwtl finetune``: weights
        plus a ``.json`` sidecar, checked and loaded without running code), a plain state
        dict (no sidecar), or a name of :data:`kwtl.models.PRETRAINED` such as
        ``"authors:EM"`` (looked up in ``$KWTL_WEIGHTS``, else downloaded from the authors'
        pinned commit when ``download``; sha256 checked). A segmenter is returned as is.
    download : bool, default=True
        Whether a pretrained name may be downloaded when not found locally.
    **params
        FCRNSegmenter parameters that override the file's (e.g. ``device``).

    Returns
    -------
    segmenter : FCRNSegmenter
        Initialised, with the file's patch size, grid step and other recorded parameters.

    Raises
    ------
    ModelFileError
        Missing, damaged or unknown model file (one line naming the file and the problem).
    """
    if isinstance(model, FCRNSegmenter):
        model.check_is_fitted()
        return model
    name = os.fspath(model)
    if name in PRETRAINED:
        try:
            pretrained_path(name)
        except FileNotFoundError:
            if not download:
                raise
            try:  # pinned commit, sha256 checked by pooch
                pretrained_path(name, download=True)
            except Exception as exc:  # no network, proxy, HTTP error ...
                raise ModelFileError(
                    f"cannot get {name}: not in $KWTL_WEIGHTS and the download failed "
                    f"({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
                    f"); set KWTL_WEIGHTS to a folder holding {PRETRAINED[name][0]}"
                ) from None
            return load_pretrained(name, download=True, **params)
        return load_pretrained(name, **params)
    _check_file(name)
    path = Path(name)
    meta = read_sidecar(path) or {}
    recorded = meta.get("parameters") or {}
    kwargs = {k: _restore(recorded[k]) for k in _RESTORED if k in recorded}
    width = (meta.get("architecture") or {}).get("width")
    if width is not None:
        kwargs["module__width"] = int(width)
    elif "module__width" not in kwargs:
        from ..models._io import read_weights

        state, _ = read_weights(path)
        kwargs["module__width"] = int(state["conv1.0.weight"].shape[0])
    kwargs.update(params)
    segmenter = FCRNSegmenter(**kwargs).initialize()
    segmenter.load_params(f_params=path)
    return segmenter


def save_model(segmenter, path, training=None, overwrite=False):
    """Write ``segmenter``'s weights and sidecar (kwtl version, architecture, parameters,
    ``training``: step, parameters, sources' names and sha256), atomically.

    Refuses to replace an existing file unless ``overwrite``.

    Returns
    -------
    sidecar : dict
    """
    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"out={path} is a folder; give a model file name such as model.kwtl")
    if (path.exists() or sidecar_path(path).exists()) and not overwrite:
        raise FileExistsError(
            f"{path} exists; choose another out, or pass overwrite=True to replace it"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    params = {
        k: v
        for k, v in segmenter.get_params(deep=False).items()
        if not k.startswith("callbacks") and k not in ("verbose",)
    }
    return save_weights(segmenter.module_, path, parameters=params, training=training)


def recorded_training(path):
    """The ``training`` record of a model file's sidecar (``{}`` when none)."""
    meta = read_sidecar(path) if Path(path).is_file() else None
    return (meta or {}).get("training") or {}
