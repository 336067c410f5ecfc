"""The lab workflow: from a folder of unlabelled images to what to annotate, a model, masks.

The steps, each a function (and a ``kwtl`` command) that writes its results atomically,
resumes after an interruption, and never replaces a user's file silently:

* :func:`pretrain` — Reptile on annotated source folders (or the authors' released
  weights) into a model file (``kwtl pretrain``);
* :func:`select` — pseudo-label fine-tuning on the unlabelled folder, scoring, and an
  annotation package: the chosen patches, ``selection.csv``, overview pictures and a
  README for the annotator (``kwtl select``);
* :func:`finetune` — the annotator's masks in, a fine-tuned model file out
  (``kwtl finetune``);
* :func:`predict` — full-resolution masks (binary or instance labels), probability maps
  and overlays for a folder (``kwtl predict``);
* :func:`evaluate` — predicted masks against a lab's own few true masks: IoU per image and
  overall, instance F1 (``kwtl evaluate``);
* :func:`export_bioimageio` — a model as a bioimage.io package for Fiji (deepImageJ),
  QuPath and ilastik (``kwtl export``).

:func:`choose_model` picks the released model to start from for a folder, without labels
(``--model auto``).

Each step is a thin function: the method's steps are :mod:`kwtl.few_shot`'s and
:mod:`kwtl.selection`'s; a step adds only its inputs' checks, progress, checkpoints and
files (``_step.py``: fingerprint, claim, done → load, checkpoints, record; ``_package.py``:
the annotation package). Errors speak in Python terms (``out=``, ``overwrite=True``) and
the library prints nothing unless ``verbose=True`` (the command line's choice).

Model files are weights-only tensors plus a JSON sidecar recording kwtl's version, the
architecture, the parameters and the training data's names and sha256 checksums
(:func:`load_model`, :func:`save_model`).
"""

from ._auto import AUTO_MODELS, IMPLAUSIBLE_FOREGROUND, choose_model
from ._evaluate import evaluate
from ._export import EXPORT_FORMATS, export_bioimageio
from ._finetune import finetune
from ._model import load_model, save_model
from ._package import PLFT_MODEL, SELECTION_COLUMNS, read_annotations, read_selection
from ._predict import predict
from ._pretrain import pretrain
from ._select import select

__all__ = [
    "AUTO_MODELS",
    "EXPORT_FORMATS",
    "IMPLAUSIBLE_FOREGROUND",
    "PLFT_MODEL",
    "SELECTION_COLUMNS",
    "choose_model",
    "evaluate",
    "export_bioimageio",
    "finetune",
    "load_model",
    "predict",
    "pretrain",
    "read_annotations",
    "read_selection",
    "save_model",
    "select",
]
