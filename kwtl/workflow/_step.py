"""The skeleton every resumable workflow step shares.

A step (``pretrain``, ``select``, ``finetune``, ``predict``) is a function of its inputs and
parameters, summarised in a *fingerprint*; its output is a model file or a folder. The
skeleton does the rest, the same way for every step:

* **done → load**: an output made from the same fingerprint is returned, not recomputed;
* **claim**: an output made from other inputs is refused unless ``overwrite`` (never
  replaced silently), and a folder must be empty or made by kwtl
  (:func:`kwtl.utils._output.prepare_output_dir`);
* **checkpoints**: a hidden work folder keyed by the fingerprint holds what a killed run
  needs to resume (removed when the output is written);
* **record**: the fingerprint is written with the output (the model file's sidecar, or the
  folder's JSON record).

Errors speak in Python terms (``out=``, ``overwrite=True``); the command line maps them to
its flags (:data:`kwtl.cli.CLI_TERMS`).
"""

import json
import shutil
from pathlib import Path

import joblib

from ..utils._atomic import atomic_write_text
from ..utils._output import prepare_output_dir

__all__ = ["Checkpoint", "FileStep", "FolderStep", "fingerprint", "say"]

_WORK = ".kwtl-work"


def fingerprint(*parts):
    """A short stable hash of JSON-like ``parts`` (inputs and parameters of a step)."""
    return joblib.hash(parts)


def say(verbose, message):
    """Print a step's one-line summary when ``verbose`` (the command line asks for it)."""
    if verbose:
        print(message)


class Checkpoint:
    """The resume state of one step for one fingerprint: ``load()`` (None unless it was
    written for this fingerprint) and ``save(module, **state)``, atomic, weights-only."""

    def __init__(self, path, key):
        self.path, self.key = Path(path), key

    def load(self):
        import torch

        if not self.path.is_file():
            return None
        saved = torch.load(self.path, map_location="cpu", weights_only=True)
        return saved if saved.get("fingerprint") == self.key else None

    def save(self, module, **state):
        import torch

        from ..utils._atomic import atomic_write

        state = {
            "fingerprint": self.key,
            **state,
            "module": {k: v.detach().cpu() for k, v in module.state_dict().items()},
        }
        atomic_write(self.path, lambda f: torch.save(state, f))


class FileStep:
    """A step whose output is a model file (``pretrain``, ``finetune``).

    Parameters
    ----------
    out : path-like
        The model file.
    key : str
        The step's fingerprint (recorded in the file's sidecar as ``training.fingerprint``).
    overwrite : bool
        Replace a file made from other inputs.
    """

    def __init__(self, out, key, overwrite=False):
        self.out, self.key, self.overwrite = Path(out), key, overwrite
        if self.out.is_dir():
            raise ValueError(
                f"out={self.out} is a folder; give a model file name such as model.kwtl"
            )
        self.work = self.out.parent / f".{self.out.name}{_WORK}"

    def finished(self):
        """True when ``out`` was made from this fingerprint; else claims ``out`` (refusing
        a file made from other inputs unless ``overwrite``) and returns False."""
        from ._model import recorded_training

        if not self.out.exists():
            return False
        if recorded_training(self.out).get("fingerprint") == self.key:
            return True
        if not self.overwrite:
            raise FileExistsError(
                f"{self.out} exists (made from other inputs or parameters); "
                "choose another out, or pass overwrite=True to replace it"
            )
        return False

    def checkpoint(self, name="checkpoint.pt"):
        return Checkpoint(self.work / f"{self.key[:16]}-{name}", self.key)

    def write(self, segmenter, training):
        """Save the model with ``training`` (and the fingerprint) in its sidecar; the
        checkpoints go."""
        from ._model import save_model

        save_model(
            segmenter, self.out, training={"fingerprint": self.key, **training}, overwrite=True
        )
        shutil.rmtree(self.work, ignore_errors=True)


class FolderStep:
    """A step whose output is a folder with a JSON record (``select``, ``predict``).

    Parameters
    ----------
    out : path-like
        The folder (created; one kwtl did not make is refused unless ``overwrite``).
    key : str
        The step's fingerprint (``record["fingerprint"]``).
    command : str
        The command that makes such folders (``"kwtl select"``), recorded in its marker.
    record : str
        Name of the JSON record in the folder (``"selection.json"``).
    overwrite : bool
    """

    def __init__(self, out, key, command, record, overwrite=False):
        self.out, self.key, self.overwrite = Path(out), key, overwrite
        self.command, self.record_file = command, self.out / record
        self.work = self.out / _WORK / key[:16]

    def record(self):
        """The folder's record (a dict), or None when missing or unreadable."""
        try:
            record = json.loads(self.record_file.read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def finished(self, *required):
        """True when the record has this fingerprint and the ``required`` files exist."""
        record = self.record()
        return (
            record is not None
            and record.get("fingerprint") == self.key
            and all((self.out / name).is_file() for name in required)
        )

    def claim(self, refusal):
        """Claim the folder for this fingerprint: refuse one whose record has another
        fingerprint unless ``overwrite`` (``refusal`` says what the folder holds).

        Returns
        -------
        record : dict or None
            The record of an earlier run of the same fingerprint (a resumable one), else
            None.
        """
        prepare_output_dir(self.out, force=self.overwrite, made_by=self.command)
        record = self.record()
        if record is not None and record.get("fingerprint") != self.key:
            if not self.overwrite:
                raise FileExistsError(
                    f"{refusal}; choose another out, or pass overwrite=True to replace it"
                )
            record = None
        return record

    def write_record(self, record):
        atomic_write_text(
            self.record_file, json.dumps({**record, "fingerprint": self.key}, indent=1) + "\n"
        )

    def finish(self):
        """The step is done: its checkpoints go."""
        shutil.rmtree(self.out / _WORK, ignore_errors=True)
