"""``finetune``: the annotator's masks in, a fine-tuned model file out (resumable)."""
import json
import shutil
import time
from pathlib import Path

import numpy as np

from .._version import __version__
from ..datasets import PatchSet, read_image
from ..few_shot import fine_tune
from ..utils import derive_seed
from ._files import read_checkpoint, read_foreground, sha256_array, write_checkpoint
from ._model import fingerprint, load_model, model_source, recorded_training, save_model
from ._select import _WORK, PLFT_MODEL, SELECTION_COLUMNS, read_selection

__all__ = ["finetune", "read_annotations"]

_MASK_SUFFIXES = (".png", ".tif", ".tiff")


def _mask_path(todo, mask_file):
    """The annotator's mask for ``mask_file``: that path, or the same name as TIFF/PNG."""
    path = todo / mask_file
    for suffix in (path.suffix,) + _MASK_SUFFIXES:
        candidate = path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None


class _Checkpoint:
    """The fine-tuning checkpoint of one set of inputs (``fingerprint``), for
    :func:`kwtl.few_shot.fine_tune`."""

    def __init__(self, path, fingerprint):
        self.path, self.fingerprint = path, fingerprint

    def load(self):
        return read_checkpoint(self.path, self.fingerprint)

    def save(self, module, **state):
        write_checkpoint(self.path, self.fingerprint, module, **state)


def read_annotations(todo_dir):
    """The annotated items of a ``select`` folder: images, masks and the selection table.

    Every row of ``selection.csv`` must have its mask (at ``mask_file``, or the same name
    with ``.tif``/``.tiff``/``.png``), of the same size as its image; binary masks and
    instance labels are both read as foreground = non-zero.

    Returns
    -------
    data : dict
        ``images``, ``masks`` (bool), ``table`` (DataFrame), ``metadata``
        (``selection.json``), ``mask_files`` (paths).

    Raises
    ------
    ValueError
        Not a ``kwtl select`` folder, or masks missing / of the wrong size (all listed).
    """
    todo = Path(todo_dir)
    if not todo.is_dir():
        raise FileNotFoundError(f"annotation folder not found: {todo}")
    meta_file, csv_file = todo / "selection.json", todo / "selection.csv"
    if not meta_file.is_file() or not csv_file.is_file():
        raise ValueError(f"{todo} is not a finished kwtl select folder (no selection.json / "
                         "selection.csv); run kwtl select first")
    metadata = json.loads(meta_file.read_text())
    table = read_selection(todo)
    absent = [c for c in SELECTION_COLUMNS if c not in table.columns]
    if absent:
        raise ValueError(f"{csv_file} lacks the column(s) {', '.join(absent)}")
    if len(table) == 0:
        raise ValueError(f"{csv_file} lists no item to annotate")
    images, masks, mask_files, missing, mismatched = [], [], [], [], []
    for row in table.itertuples(index=False):
        image = read_image(todo / row.image_file)
        path = _mask_path(todo, row.mask_file)
        if path is None:
            missing.append(row.mask_file)
            continue
        mask = read_foreground(path)
        if mask.shape != image.shape:
            mismatched.append(f"{path.relative_to(todo)} is {mask.shape[0]}x{mask.shape[1]}, "
                              f"its image {image.shape[0]}x{image.shape[1]}")
            continue
        images.append(image)
        masks.append(mask)
        mask_files.append(path)
    problems = []
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5
                                          else "")
        problems.append(f"{len(missing)} of {len(table)} masks are missing: {shown}")
    if mismatched:
        shown = "; ".join(mismatched[:3]) + (f" and {len(mismatched) - 3} more"
                                             if len(mismatched) > 3 else "")
        problems.append(f"{len(mismatched)} masks have the wrong size: {shown}")
    if problems:
        raise ValueError(f"{todo}: " + "; ".join(problems) + " (see README.txt there)")
    return {"images": images, "masks": masks, "table": table, "metadata": metadata,
            "mask_files": mask_files}


def finetune(todo_dir, out, model=None, *, epochs=20, batch_size=None, random_state=0,
             device=None, overwrite=False, progress=True):
    """Fine-tune on the annotator's masks of a ``select`` folder; write a model file.

    The same fine-tuning as :class:`~kwtl.FewShotSegmentation`'s support step: a fresh Adam
    optimizer (the model's ``lr``, weight decay), the paper's weighted BCE, ``epochs``
    epochs over the annotated patches (whole images are cut into the model's patch grid),
    batches of the model's ``batch_size``; each epoch's shuffle is seeded by
    ``random_state`` and the epoch number.

    Resumable: after every epoch the weights and the optimizer state are checkpointed in
    ``todo_dir/.kwtl-work/``; a rerun with the same inputs continues from the last epoch
    and ends with the same weights as an uninterrupted run. A finished ``out`` made from
    the same inputs is loaded, not recomputed.

    Parameters
    ----------
    todo_dir : str or path-like
        The folder written by :func:`select`, with the masks saved in it.
    out : str or path-like
        The fine-tuned model file (e.g. ``tuned.kwtl``); its sidecar records the kwtl
        version, architecture, parameters, the starting model and every annotated image
        and mask with its sha256.
    model : str, path-like, FCRNSegmenter or None, default=None
        Starting model; None is the model the selection was made with
        (``todo_dir/model_plft.kwtl``, after pseudo-label fine-tuning), as in the paper.
    epochs : int, default=20
    batch_size : int or None, default=None
        None keeps the model's (64).
    random_state : int, default=0
    device : str or None, default=None
    overwrite : bool, default=False
        Replace an ``out`` made from other inputs.
    progress : bool, default=True

    Returns
    -------
    segmenter : FCRNSegmenter
    """
    started = time.perf_counter()
    todo = Path(todo_dir)
    out = Path(out)
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a model file name such as tuned.kwtl")
    data = read_annotations(todo)
    start = todo / PLFT_MODEL if model is None else model
    start_record = model_source(start)
    items = [{"image": str(r.image_file), "mask": str(p.relative_to(todo)),
              "image_sha256": sha256_array(im), "mask_sha256": sha256_array(m)}
             for r, p, im, m in zip(data["table"].itertuples(index=False), data["mask_files"],
                                    data["images"], data["masks"])]
    settings = {"epochs": int(epochs), "batch_size": batch_size,
                "random_state": int(random_state)}
    key = fingerprint("finetune", start_record, items, settings, __version__)
    if out.exists():
        if recorded_training(out).get("fingerprint") == key:
            if progress:
                print(f"{out} is already fine-tuned on these masks; loading it")
            return load_model(out)
        if not overwrite:
            raise FileExistsError(f"{out} exists (made from other inputs or parameters); "
                                  "choose another --out, or pass --force to replace it")

    params = {} if device is None else {"device": device}
    start_model = load_model(start, **params)
    patches = PatchSet.from_images(data["images"], start_model.patch_size, start_model.stride)
    if len(patches) == 0:
        raise ValueError(f"the annotated images are smaller than the model's patches "
                         f"({start_model.patch_size}x{start_model.patch_size})")
    work = todo / _WORK / f"finetune-{key[:16]}"
    seg = fine_tune(start_model, patches, patches.with_arrays(data["masks"]), epochs=int(epochs),
                    batch_size=batch_size, random_state=derive_seed(random_state, "finetune"),
                    progress=progress, checkpoint=_Checkpoint(work / "checkpoint.pt", key))
    losses = seg.epoch_losses_
    seg.set_params(random_state=int(random_state))
    foreground = float(np.mean([m.mean() for m in data["masks"]]))
    training = {
        "step": "finetune", "fingerprint": key, "start": start_record,
        "selection": {"folder": str(todo.resolve()),
                      "fingerprint": data["metadata"].get("fingerprint"),
                      "model": data["metadata"].get("model"),
                      "images": data["metadata"].get("images")},
        "sources": items, "parameters": {**settings, "batch_size": int(seg.batch_size),
                                         "lr": float(seg.lr), "patches": len(patches)},
        "losses": losses, "seconds": round(time.perf_counter() - started, 1),
    }
    save_model(seg, out, training=training, overwrite=True)
    shutil.rmtree(work, ignore_errors=True)
    print(f"fine-tuned {start_record['name']} for {epochs} epochs on {len(patches)} patches "
          f"from {len(items)} annotated items ({100 * foreground:.1f}% foreground); loss "
          f"{losses[0]:.4f} -> {losses[-1]:.4f}; wrote {out}")
    return seg
