"""``finetune``: the annotator's masks in, a fine-tuned model file out (resumable)."""
import json
import shutil
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import __version__
from ..datasets import PatchSet, read_image
from ..utils import derive_seed
from ..utils._inputs import check_out_apart
from ..datasets import read_mask
from ..utils import masks_to_foreground
from ._display import _is_colour
from ._files import read_checkpoint, sha256_array, write_checkpoint
from ._auto import foreground_fraction
from ._mask_checks import check_foreground, check_mask_labels, lossy_siblings
from ._model import fingerprint, load_model, model_source, recorded_training, save_model
from ._package import MODEL_INPUT
from ._rounds import package_list
from ._select import _WORK, PLFT_MODEL, SELECTION_COLUMNS, batch_progress, read_selection

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


def read_annotations(todo_dir, accept_masks=False):
    """The annotated items of a ``select`` folder: images, masks and the selection table.

    Every row of ``selection.csv`` must have its mask (at ``mask_file``, or the same name
    with ``.tif``/``.tiff``/``.png``), of the same size as its image; binary masks and
    instance labels are both read as foreground = non-zero. The images are the model's
    input (``model_input/``; packages of older kwtl versions: ``image_file``). A JPEG saved
    in a mask's place is named as such (lossy: save PNG or TIFF); a mask whose values are
    neither binary nor instance labels (a picture with cells painted on it, smoothed edges)
    is refused unless ``accept_masks``
    (:func:`kwtl.workflow._mask_checks.check_mask_labels`).

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
    images, masks, mask_files, missing, mismatched, lossy, painted = [], [], [], [], [], [], []
    for row in table.itertuples(index=False):
        model_input = todo / MODEL_INPUT / Path(row.image_file).name
        image = read_image(model_input if model_input.is_file() else todo / row.image_file)
        path = _mask_path(todo, row.mask_file)
        if path is None:
            jpeg = lossy_siblings(todo / row.mask_file)
            (lossy if jpeg else missing).append(
                str(jpeg[0].relative_to(todo)) if jpeg else row.mask_file)
            continue
        labels = read_mask(path)
        problem = check_mask_labels(labels, path.relative_to(todo), colour=_is_colour(path))
        if problem and not accept_masks:
            painted.append(problem)
            continue
        mask = masks_to_foreground(labels, separate_touching=True)
        if mask.shape != image.shape:
            mismatched.append(f"{path.relative_to(todo)} is {mask.shape[0]}x{mask.shape[1]}, "
                              f"its image {image.shape[0]}x{image.shape[1]}")
            continue
        images.append(image)
        masks.append(mask)
        mask_files.append(path)
    problems = []
    if lossy:
        shown = ", ".join(lossy[:3]) + (f" and {len(lossy) - 3} more" if len(lossy) > 3
                                        else "")
        problems.append(f"{len(lossy)} masks are saved as JPEG ({shown}): JPEG is lossy and "
                        "changes the values at the cells' edges; save them as PNG or TIFF")
    if painted:
        problems.append(painted[0] + (f" ({len(painted) - 1} more masks like it)"
                                      if len(painted) > 1 else "")
                        + "; or pass --accept-masks to train on them as they are")
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
             device=None, overwrite=False, accept_masks=False, progress=True):
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
    todo_dir : str, path-like or list of them
        The folder written by :func:`select`, with the masks saved in it; or several
        (rounds: ``[todo1, todo2]``), whose annotated items are all trained on.
    out : str or path-like
        The fine-tuned model file (e.g. ``tuned.kwtl``); its sidecar records the kwtl
        version, architecture, parameters, the starting model and every annotated image
        and mask with its sha256.
    model : str, path-like, FCRNSegmenter or None, default=None
        Starting model (``kwtl finetune --from-model``); None is the model the (first)
        selection was made with (``todo_dir/model_plft.kwtl``, after pseudo-label
        fine-tuning), as in the paper: each round retrains from it on all masks so far.
    epochs : int, default=20
    batch_size : int or None, default=None
        None keeps the model's (64).
    random_state : int, default=0
    device : str or None, default=None
    overwrite : bool, default=False
        Replace an ``out`` made from other inputs.
    accept_masks : bool, default=False
        Train on masks that the checks flag: likely inverted (more than 90 % foreground, or
        over half and far above what the starting model predicts on the same items,
        :func:`kwtl.workflow._mask_checks.check_foreground`) or neither binary nor
        instance labels. Without it such masks are refused with the numbers.
    progress : bool, default=True

    Returns
    -------
    segmenter : FCRNSegmenter
    """
    started = time.perf_counter()
    packages = package_list(todo_dir, "annotation package")
    todo = packages[0]
    out = Path(out)
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}")
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a model file name such as tuned.kwtl")
    all_data = [read_annotations(folder, accept_masks)  # (packages at all? said first)
                for folder in packages]
    check_out_apart(out, [("the annotation package", folder) for folder in packages]
                    + [("the starting model", model)])
    data = {key: [v for d in all_data for v in d[key]]
            for key in ("images", "masks", "mask_files")}
    data["metadata"] = all_data[0]["metadata"]
    start = todo / PLFT_MODEL if model is None else model
    start_record = model_source(start)
    items = []
    for folder, d in zip(packages, all_data):
        for r, p, im, m in zip(d["table"].itertuples(index=False), d["mask_files"],
                               d["images"], d["masks"]):
            items.append({"image": str(r.image_file), "mask": str(p.relative_to(folder)),
                          "image_sha256": sha256_array(im), "mask_sha256": sha256_array(m),
                          # one package keeps the one-package fingerprint of earlier kwtl
                          **({"package": str(folder.resolve())} if len(packages) > 1
                             else {})})
    settings = {"epochs": int(epochs), "batch_size": batch_size,
                "random_state": int(random_state)}
    key = fingerprint("finetune", start_record, items, settings, __version__)
    if out.exists():
        if recorded_training(out).get("fingerprint") == key:
            print(f"{out} is already fine-tuned on these masks; nothing to do")
            return load_model(out)
        if not overwrite:
            raise FileExistsError(f"{out} exists (made from other inputs or parameters); "
                                  "choose another --out, or pass --force to replace it")

    params = {} if device is None else {"device": device}
    seg = load_model(start, **params)
    problem = check_foreground(data["masks"], foreground_fraction(seg, data["images"]))
    if problem and not accept_masks:
        raise ValueError(f"{', '.join(map(str, packages))}: {problem} Fix the masks "
                         "(README.txt there), or pass "
                         "--accept-masks to train on them as they are")
    if batch_size is not None:
        seg.set_params(batch_size=int(batch_size))
    seg.set_params(random_state=derive_seed(random_state, "finetune"))
    seg.initialize_optimizer()  # fine-tuning starts with a fresh optimizer
    patches = PatchSet.from_images(data["images"], seg.patch_size, seg.stride)
    if len(patches) == 0:
        raise ValueError(f"the annotated images are smaller than the model's patches "
                         f"({seg.patch_size}x{seg.patch_size})")
    mask_patches = patches.with_arrays(data["masks"])

    work = todo / _WORK / f"finetune-{key[:16]}"
    checkpoint = work / "checkpoint.pt"
    done, losses = 0, []
    saved = read_checkpoint(checkpoint, key)
    if saved is not None:
        seg.module_.load_state_dict(saved["module"])
        seg.optimizer_.load_state_dict(saved["optimizer"])
        done, losses = int(saved["epoch"]), list(saved["losses"])
    per_epoch = -(-len(patches) // int(seg.batch_size))
    bar = tqdm(total=int(epochs) * per_epoch, initial=done * per_epoch, desc="fine-tuning",
               unit="batch", disable=not progress)
    try:
        while done < epochs:
            seg.n_train_calls_ = done  # the shuffle seed of epoch `done + 1`
            with batch_progress(seg, bar):
                seg.partial_fit(patches, mask_patches, epochs=1)
            done += 1
            losses.append(float(seg.history[-1, "train_loss"]))
            write_checkpoint(checkpoint, key, seg.module_, epoch=done, losses=losses,
                             optimizer=seg.optimizer_.state_dict())
            bar.set_postfix(epoch=done, loss=f"{losses[-1]:.4f}")
    finally:
        bar.close()
    seg.set_params(random_state=int(random_state))
    foreground = float(np.mean([m.mean() for m in data["masks"]]))
    training = {
        "step": "finetune", "fingerprint": key, "start": start_record,
        "selection": {"folder": str(todo.resolve()),
                      "fingerprint": data["metadata"].get("fingerprint"),
                      "model": data["metadata"].get("model"),
                      "images": data["metadata"].get("images")},
        **({"selections": [{"folder": str(f.resolve()),
                            "fingerprint": d["metadata"].get("fingerprint")}
                           for f, d in zip(packages, all_data)]} if len(packages) > 1 else {}),
        "sources": items, "parameters": {**settings, "batch_size": int(seg.batch_size),
                                         "lr": float(seg.lr), "patches": len(patches)},
        "losses": losses, "seconds": round(time.perf_counter() - started, 1),
    }
    save_model(seg, out, training=training, overwrite=True)
    shutil.rmtree(work, ignore_errors=True)
    print(f"fine-tuned {start_record['name']} for {epochs} epochs on {len(patches)} patches "
          f"from {len(items)} annotated items"
          f"{f' of {len(packages)} packages' if len(packages) > 1 else ''} "
          f"({100 * foreground:.1f}% foreground); loss "
          f"{losses[0]:.4f} -> {losses[-1]:.4f}; wrote {out}")
    return seg
