"""Output folders that never overwrite a user's files: the policy of every kwtl command."""

import json
import os
from pathlib import Path

__all__ = ["OUTPUT_MARKER", "OutputFolderError", "prepare_output_dir", "read_marker"]

#: File that marks a folder as made by kwtl (``experiment.json`` of ``kwtl run`` counts too).
OUTPUT_MARKER = ".kwtl-output"


class OutputFolderError(ValueError):
    """The output folder cannot be used without risking a user's files."""


def read_marker(path):
    """The marker of a folder kwtl made (a dict), or None (no marker, or unreadable)."""
    try:
        marker = json.loads((Path(path) / OUTPUT_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def prepare_output_dir(out, force=False, resume=False, made_by="kwtl run"):
    """Apply kwtl's output-folder policy and claim the folder.

    * a missing folder is created (with its parents);
    * an empty folder, or one kwtl made (it holds :data:`OUTPUT_MARKER` or
      ``experiment.json``), is used; a kwtl run in it is resumed;
    * a non-empty folder that kwtl did not make, or that another kwtl command made (its
      marker names another ``made_by``), is refused, unless ``force``;

    Messages speak in Python terms (``out=``, ``overwrite=True``); the command line maps
    them to its flags.
    * ``resume`` requires a folder that kwtl made;
    * a path that is a file, or a place where the folder or its marker cannot be written,
      is refused.

    Nothing is written unless the folder is accepted; then the marker is written.

    Parameters
    ----------
    out : str or path-like
    force, resume : bool, default=False
    made_by : str, default="kwtl run"
        The command that claims the folder (recorded in the marker).

    Returns
    -------
    path : Path

    Raises
    ------
    OutputFolderError
        With a one-line message naming the folder and the problem.

    Examples
    --------
    >>> import tempfile, os
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = prepare_output_dir(os.path.join(tmp, "out"), made_by="kwtl predict")
    ...     read_marker(path)["made_by"]
    'kwtl predict'
    """
    path = Path(out)
    marker = path / OUTPUT_MARKER
    if path.exists() and not path.is_dir():
        raise OutputFolderError(f"out={path} is a file, not a folder")
    if path.is_dir():
        try:
            entries = sorted(p.name for p in path.iterdir())
        except OSError as exc:
            raise OutputFolderError(
                f"out={path}: cannot read the folder ({exc.strerror})"
            ) from None
        ours = OUTPUT_MARKER in entries or "experiment.json" in entries
        if resume and not ours:
            raise OutputFolderError(f"resume=True: {path} holds no kwtl run to resume")
        if entries and not ours and not force:
            shown = ", ".join(entries[:3]) + (
                f" and {len(entries) - 3} more" if len(entries) > 3 else ""
            )
            raise OutputFolderError(
                f"out={path} is not empty and was not made by kwtl (it holds {shown}); "
                "choose another out, or pass overwrite=True to write kwtl's files into it"
            )
        other = (read_marker(path) or {}).get("made_by", made_by)
        if ours and other != made_by and not force:
            raise OutputFolderError(
                f"out={path} was made by '{other}', not '{made_by}'; choose another out, "
                "or pass overwrite=True to write into it"
            )
    elif resume:
        raise OutputFolderError(f"resume=True: {path} does not exist, there is nothing to resume")
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not marker.exists() or (force and (read_marker(path) or {}).get("made_by") != made_by):
            from .._version import __version__

            marker.write_text(json.dumps({"made_by": made_by, "kwtl_version": __version__}) + "\n")
        elif not os.access(path, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as exc:
        raise OutputFolderError(
            f"out={path}: cannot write there ({exc.strerror or type(exc).__name__})"
        ) from None
    return path
