"""No command writes where its inputs are: the check every ``--out`` goes through.

``overwrite=True`` (``--force``) lets kwtl write into a folder it did not make; it never
lets kwtl write into, over or around what the same command reads (images, annotation
packages, model files). A user who types ``kwtl predict imgs --out imgs --force`` would
otherwise lose every image to its mask.
"""

import os
from pathlib import Path

from ._output import OutputFolderError

__all__ = ["check_out_apart"]


def _resolved(path):
    return Path(os.path.abspath(os.fspath(path))).resolve()


def _inside(inner, outer):
    return inner == outer or outer in inner.parents


def check_out_apart(out, inputs, label=None):
    """Refuse an output path that is, contains or lies inside one of the inputs.

    Parameters
    ----------
    out : str or path-like
        The output (a folder or a file; it need not exist yet).
    inputs : iterable of (str, path-like or None)
        ``(what, path)`` pairs: what the input is ("the images folder", "the model" …) and its
        path; a None path, or a name that is no path on disk (``"authors:EM"``, arrays), is
        skipped. A model file's JSON sidecar counts as part of it.
    label : str or None, default=None
        How the message names the output (None: ``out=OUT``).

    Raises
    ------
    OutputFolderError
        One line naming the output, the input and the fix (in Python terms: ``out=``,
        ``overwrite=True``; the command line says ``--out``, ``--force``);
        ``overwrite=True`` does not lift it.

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     check_out_apart(os.path.join(tmp, "masks"), [("the images folder", tmp)])
    Traceback (most recent call last):
    ...
    kwtl.utils._output.OutputFolderError: out=... lies inside the images folder ...
    """
    target = _resolved(out)
    for what, path in inputs:
        if path is None or not isinstance(path, (str, os.PathLike)):
            continue
        if isinstance(path, str) and path.startswith("authors:"):
            continue
        source = _resolved(path)
        if not source.exists():
            continue
        sidecar = Path(str(source) + ".json")
        if target == source or (source.is_file() and target == sidecar):
            problem = f"is {what} ({path})"
        elif source.is_dir() and _inside(target, source):
            problem = f"lies inside {what} ({path})"
        elif _inside(source, target):
            problem = f"contains {what} ({path})"
        else:
            continue
        raise OutputFolderError(
            f"{label or f'out={out}'} {problem}: kwtl never writes where its inputs are, "
            "even with overwrite=True; choose another out outside it"
        )
