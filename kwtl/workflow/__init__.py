"""The lab workflow: from a folder of unlabelled images to what to annotate, a model, masks.

Four steps, each a function (and a ``kwtl`` command) that writes its results atomically,
resumes after an interruption, and never replaces a user's file silently:

* :func:`pretrain` — Reptile on annotated source folders (or the authors' released
  weights) into a model file (``kwtl pretrain``);
* :func:`select` — pseudo-label fine-tuning on the unlabelled folder, scoring, and an
  annotation package: the chosen patches, ``selection.csv``, overview pictures and a
  README for the annotator (``kwtl select``);
* :func:`finetune` — the annotator's masks in, a fine-tuned model file out
  (``kwtl finetune``);
* :func:`predict` — full-resolution masks (binary or instance labels), probability maps
  and overlays for a folder (``kwtl predict``).

* :func:`export_bioimageio` — a model as a bioimage.io package for Fiji (deepImageJ),
  QuPath and ilastik (``kwtl export``).

Model files are weights-only tensors plus a JSON sidecar recording kwtl's version, the
architecture, the parameters and the training data's names and sha256 checksums
(:func:`load_model`, :func:`save_model`).
"""
from ._export import EXPORT_FORMATS, export_bioimageio
from ._finetune import finetune, read_annotations
from ._model import load_model, save_model
from ._predict import predict
from ._pretrain import pretrain
from ._select import PLFT_MODEL, SELECTION_COLUMNS, read_selection, select

__all__ = ["EXPORT_FORMATS", "PLFT_MODEL", "SELECTION_COLUMNS", "export_bioimageio", "finetune",
           "load_model", "predict", "pretrain", "read_annotations", "read_selection",
           "save_model", "select"]
