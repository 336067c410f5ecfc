"""Model files that cannot lie: weights-only tensors plus a JSON sidecar.

:func:`save_weights` writes the module's state dict with ``torch.save`` (tensors only) to
``path`` and a sidecar ``path + ".json"`` holding the format version, the kwtl and torch
versions, the architecture (class, width, affine BatchNorm, dropout), optional estimator
parameters, the file's size and sha256, and every tensor's shape, dtype and sha256. Both
files are written atomically (temporary file, then rename), the weights first, so a crash
leaves either the old pair or a sidecar that no longer matches, which loading refuses.

:func:`read_weights` never runs code (``torch.load(..., weights_only=True)``), verifies the
sidecar when there is one, and turns every failure (missing, empty, truncated, text, damaged,
wrong architecture) into a :class:`ModelFileError` that names the file and the problem.
Plain state-dict files without a sidecar (e.g. the authors' released ``.pth`` weights) still
load; instead of the sidecar's checksums, the CRC-32 that ``torch.save``'s zip container keeps
for every member is verified (:func:`check_zip_container`), so flipped bytes inside the tensor
data are refused rather than loaded.
"""

import hashlib
import io
import json
import os
import pickle
import zipfile
import zlib
from pathlib import Path

import torch

__all__ = [
    "ModelFileError",
    "architecture_of",
    "check_state_dict",
    "check_zip_container",
    "read_sidecar",
    "read_weights",
    "save_weights",
    "sidecar_path",
    "SIDECAR_FORMAT",
]

#: ``format`` field of the sidecar.
SIDECAR_FORMAT = "kwtl-weights"
_FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A model file is missing, damaged, or does not fit the model."""


def sidecar_path(path):
    """The sidecar of a weights file: ``path`` with ``.json`` appended."""
    return Path(str(os.fspath(path)) + ".json")


def _sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sha256_tensor(tensor):
    array = tensor.detach().cpu().contiguous()
    if array.dtype == torch.bfloat16:
        array = array.view(torch.int16)
    return hashlib.sha256(array.numpy().tobytes()).hexdigest()


def architecture_of(module):
    """The architecture fields of a module (FCRN: width, affine BatchNorm, dropout).

    Examples
    --------
    >>> from kwtl.models import FCRN
    >>> architecture_of(FCRN(width=4))["width"]
    4
    """
    arch = {"class": type(module).__name__}
    if hasattr(module, "width"):
        arch["width"] = int(module.width)
    bns = [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if bns:
        arch["affine_batchnorm"] = bool(bns[0].affine)
    drop = getattr(module, "dropout", None)
    if isinstance(drop, torch.nn.Dropout2d):
        arch["dropout"] = float(drop.p)
    if hasattr(module, "init"):
        arch["init"] = str(module.init)
    return arch


def _jsonable(params):
    out = {}
    for key, value in (params or {}).items():
        try:
            json.dumps(value)
            out[key] = value
        except (TypeError, ValueError):
            out[key] = getattr(value, "__name__", None) or type(value).__name__
    return out


def _check_json(value, name):
    try:
        json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must hold JSON values only ({exc})") from None
    return value


def _atomic_write_bytes(path, data):
    """Atomic write, readable by the group and others like any file a user saves (0644)."""
    from ..utils._atomic import atomic_write

    atomic_write(path, lambda f: f.write(data))


def save_weights(module, path, parameters=None, training=None):
    """Write ``module``'s state dict and its JSON sidecar (see the module notes).

    Parameters
    ----------
    module : torch.nn.Module
    path : str or path-like
        The weights file; the sidecar is ``path + ".json"``.
    parameters : dict, optional
        Estimator parameters to record (non-JSON values are recorded by name).
    training : dict, optional
        What produced the weights (JSON values only), recorded under ``"training"``: the
        step, its parameters, the training data's names and sha256 checksums
        (:mod:`kwtl.workflow` fills it in).

    Returns
    -------
    sidecar : dict
        What was written to the sidecar.

    Examples
    --------
    >>> import tempfile, os
    >>> from kwtl.models import FCRN
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     meta = save_weights(FCRN(width=2), os.path.join(tmp, "w.pt"))
    ...     state, _ = read_weights(os.path.join(tmp, "w.pt"))
    >>> meta["architecture"]["width"], len(state) == len(meta["tensors"])
    (2, True)
    """
    path = Path(os.fspath(path))
    if path.is_dir():
        raise ModelFileError(f"cannot save weights to {path}: it is a folder")
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    from .._version import __version__

    meta = {
        "format": SIDECAR_FORMAT,
        "format_version": _FORMAT_VERSION,
        "kwtl_version": __version__,
        "torch_version": torch.__version__,
        "file": path.name,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "architecture": architecture_of(module),
        "parameters": _jsonable(parameters),
        "training": _check_json(training, "training"),
        "tensors": {
            k: {
                "shape": list(v.shape),
                "dtype": str(v.dtype).replace("torch.", ""),
                "sha256": _sha256_tensor(v),
            }
            for k, v in state.items()
        },
    }
    _atomic_write_bytes(path, data)
    _atomic_write_bytes(sidecar_path(path), (json.dumps(meta, indent=1) + "\n").encode())
    return meta


def read_sidecar(path):
    """The checked sidecar of weights file ``path`` (a dict), or None when it has none.

    Raises
    ------
    ModelFileError
        If the sidecar is not JSON, not a kwtl sidecar, or of an unknown or newer format
        version.
    """
    side = sidecar_path(path)
    if not side.exists():
        return None
    try:
        meta = json.loads(side.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(
            f"cannot load {path}: its sidecar {side.name} is not valid JSON ({exc})"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        raise ModelFileError(f"cannot load {path}: {side.name} is not a kwtl weights sidecar")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(
            f"cannot load {path}: {side.name} has an unknown format version {version!r}"
        )
    if version > _FORMAT_VERSION:
        raise ModelFileError(
            f"cannot load {path}: its format version {version} is newer than "
            f"this kwtl reads ({_FORMAT_VERSION}); it was written by kwtl "
            f"{meta.get('kwtl_version')}: upgrade kwtl"
        )
    return meta


def _kind_of(head):
    """What the first bytes of a file say it is."""
    if head.startswith(b"PK\x03\x04"):
        return "zip"  # torch.save's format since torch 1.6
    if head[:1] == b"\x80":
        return "pickle"  # torch's legacy format (a pickle stream)
    try:
        head.decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "other"


def check_zip_container(source, name):
    """Verify the CRC-32 of every member of a zip-format torch file (``torch.save``'s format).

    Parameters
    ----------
    source : str, path-like or binary file object (seekable)
    name : str
        The file's name for the message.

    Raises
    ------
    ModelFileError
        If the container cannot be read or a member's data does not match its CRC-32.

    Examples
    --------
    >>> import io, torch
    >>> buffer = io.BytesIO()
    >>> torch.save({"w": torch.ones(3)}, buffer)
    >>> check_zip_container(buffer, "w.pt")  # intact: returns None
    >>> data = bytearray(buffer.getvalue())
    >>> data[data.index(torch.ones(3).numpy().tobytes())] ^= 0xFF  # a flipped tensor byte
    >>> check_zip_container(io.BytesIO(bytes(data)), "w.pt")
    Traceback (most recent call last):
    ...
    kwtl.models._io.ModelFileError: cannot load w.pt: ...
    """
    try:
        with zipfile.ZipFile(source) as archive:
            for info in archive.infolist():
                with archive.open(info) as member:
                    while member.read(1 << 20):  # the CRC-32 is checked at each member's end
                        pass
    except (
        zipfile.BadZipFile,
        zlib.error,
        EOFError,
        OSError,
        ValueError,
        NotImplementedError,
    ) as exc:
        detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise ModelFileError(
            f"cannot load {name}: the file is truncated or damaged (the CRC-32 check of its "
            f"zip container failed: {detail}); copy it again, with its .json sidecar if it "
            "has one"
        ) from None
    finally:
        if hasattr(source, "seek"):
            source.seek(0)


def _torch_load(source, name, head):
    kind = _kind_of(head)
    if kind == "text":
        raise ModelFileError(
            f"cannot load {name}: it is a text file, not a PyTorch weights "
            f"file (it starts with {head[:24]!r})"
        )
    if kind == "other":
        raise ModelFileError(
            f"cannot load {name}: it is not a PyTorch weights file (unknown header {head[:8]!r})"
        )
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many unrelated types on bad data
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, pickle.UnpicklingError) and "Weights only" in str(exc):
            problem = (
                "it holds Python objects, not only tensors, and kwtl never runs code "
                "from a model file"
            )
        else:
            problem = f"the file is truncated or damaged ({type(exc).__name__}: {text[:120]})"
        raise ModelFileError(f"cannot load {name}: {problem}") from None


def read_weights(f):
    """Read and verify a weights file; never runs code.

    Parameters
    ----------
    f : str, path-like or binary file object
        A file written by :func:`save_weights` (with its sidecar) or a plain state dict
        (no sidecar: not checksummed).

    Returns
    -------
    state : dict of str to torch.Tensor (on the CPU)
    sidecar : dict or None

    Raises
    ------
    ModelFileError
        If the file is missing, empty, truncated, not a weights file, holds Python objects,
        does not match its sidecar's size or sha256, or holds non-finite values.
    """
    if hasattr(f, "read"):
        name = getattr(f, "name", "the given file object")
        data = f.read()
        if not data:
            raise ModelFileError(f"cannot load {name}: the file is empty")
        meta = None
        if _kind_of(data[:64]) == "zip":
            check_zip_container(io.BytesIO(data), name)
        state = _torch_load(io.BytesIO(data), name, data[:64])
    else:
        path = Path(os.fspath(f))
        name = str(path)
        if not path.exists():
            raise ModelFileError(f"cannot load {name}: no such file")
        if path.is_dir():
            raise ModelFileError(f"cannot load {name}: it is a folder, not a weights file")
        size = path.stat().st_size
        if size == 0:
            raise ModelFileError(f"cannot load {name}: the file is empty (0 bytes)")
        meta = read_sidecar(path)
        if meta is not None:
            if size != meta.get("bytes"):
                raise ModelFileError(
                    f"cannot load {name}: it has {size} bytes but its sidecar records "
                    f"{meta.get('bytes')}: the file is truncated or was replaced"
                )
            if _sha256_file(path) != meta.get("sha256"):
                raise ModelFileError(
                    f"cannot load {name}: sha256 checksum mismatch with its sidecar: the file "
                    "is damaged or was changed after saving"
                )
        with open(path, "rb") as handle:
            head = handle.read(64)
        if meta is None and _kind_of(head) == "zip":  # no checksums recorded: the zip's CRCs
            check_zip_container(path, name)
        state = _torch_load(path, name, head)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ModelFileError(f"cannot load {name}: it is not a state dict of named tensors")
    if meta is not None:
        recorded = meta.get("tensors", {})
        if set(recorded) != set(state):
            raise ModelFileError(
                f"cannot load {name}: its tensors differ from those its sidecar lists"
            )
        for key, tensor in state.items():
            if recorded[key].get("sha256") != _sha256_tensor(tensor):
                raise ModelFileError(
                    f"cannot load {name}: tensor {key!r} does not match its sha256 in the sidecar"
                )
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f"cannot load {name}: tensor {key!r} holds NaN or infinite values")
    return state, meta


def check_state_dict(module, state, name):
    """Check that ``state`` fits ``module`` exactly (keys and shapes); name the difference.

    Raises
    ------
    ModelFileError
        On missing or unexpected keys or a shape mismatch (e.g. another ``width``).
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    for key in sorted(set(own) & set(state)):
        if tuple(own[key].shape) != tuple(state[key].shape):
            hint = ""
            if key == "conv1.0.weight" and hasattr(module, "width"):
                hint = (
                    f": the file is for width {state[key].shape[0]}, the model has width "
                    f"{module.width} (set module__width={state[key].shape[0]})"
                )
            raise ModelFileError(
                f"cannot load {name}: tensor {key!r} has shape {tuple(state[key].shape)} in "
                f"the file but {tuple(own[key].shape)} in the model{hint}"
            )
    if missing or extra:
        parts = []
        if missing:
            parts.append(
                f"{len(missing)} model tensors missing from the file (e.g. {missing[0]!r})"
            )
        if extra:
            parts.append(f"{len(extra)} unexpected tensors in the file (e.g. {extra[0]!r})")
        raise ModelFileError(f"cannot load {name}: it does not fit the model: " + "; ".join(parts))
