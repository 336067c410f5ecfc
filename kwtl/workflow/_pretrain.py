"""``pretrain``: Reptile on annotated source folders, resumable, into a model file."""

import time
from pathlib import Path

import numpy as np

from ..models import FCRNSegmenter
from ..utils import derive_seed
from ..utils._atomic import atomic_write_text
from ..utils._inputs import check_out_apart
from ..utils._progress import progress_bar
from ..utils.validation import NON_NEGATIVE_INT, POSITIVE_INT, validate_arguments
from ._files import folder_sha256, load_annotated
from ._model import load_model, model_source
from ._select import COMMON_ARGUMENTS
from ._step import FileStep, fingerprint, say

__all__ = ["pretrain"]

#: Reptile meta-iterations between two checkpoints of ``pretrain``.
CHECKPOINT_EVERY = 10

_positive_int = [None, POSITIVE_INT]


@validate_arguments(
    {
        "width": _positive_int,
        "patch_size": _positive_int,
        "stride": _positive_int,
        "meta_iterations": [None, NON_NEGATIVE_INT],
        "inner_steps": _positive_int,
        "meta_shots": _positive_int,
        "segmenter_params": [None, dict],
        "images": [None, str, Path],
        **COMMON_ARGUMENTS,
        "device": [str],
    }
)
def pretrain(
    sources,
    out,
    start=None,
    *,
    images=None,
    width=None,
    patch_size=None,
    stride=None,
    meta_iterations=None,
    inner_steps=None,
    meta_shots=None,
    segmenter_params=None,
    random_state=0,
    device="cpu",
    overwrite=False,
    progress=True,
    verbose=False,
):
    """Pre-train a segmenter on annotated source folders (first-order Reptile) into a file.

    One Reptile task per source folder (the paper's one task per source dataset). A source
    folder holds ``images/`` + ``masks/`` (paired by file stem) or Cellpose-style pairs
    ``x.tif`` + ``x_masks.tif`` in one folder; any PNG/TIFF, 8/16-bit, grey or RGB, binary
    or instance-label masks (non-zero is foreground).

    Resumable: the weights are checkpointed every :data:`CHECKPOINT_EVERY` meta-iterations
    (in a hidden folder beside ``out``) and a rerun with the same inputs and parameters
    continues from the last checkpoint; a finished ``out`` with the same inputs and
    parameters is loaded, not recomputed. Each block of meta-iterations draws its tasks from
    its own seed (derived from ``random_state`` and the block number), so a resumed run
    gives the same weights as an uninterrupted one.

    Parameters
    ----------
    sources : sequence of str or path-like
        Annotated folders; may be empty when ``start`` is given (then ``out`` is ``start``
        converted into a kwtl model file with its provenance).
    out : str or path-like
        The model file to write (e.g. ``model.kwtl``; its sidecar is ``model.kwtl.json``).
    start : str, path-like or None, default=None
        Start from these weights instead of a random initialisation: a model file or a
        pretrained name such as ``"authors:EM"`` (see :func:`load_model`), or ``"auto"``:
        the released model :func:`choose_model` picks for ``images``.
    images : str, path-like or None, default=None
        With ``start="auto"``: the folder of unlabelled images to choose the model for.
    width, patch_size, stride, meta_iterations, inner_steps, meta_shots : int or None
        Network width and Reptile settings (:class:`~kwtl.models.FCRNSegmenter`); None
        keeps ``start``'s, else the paper's (32, 256, 30, 300, 30, 5). The paper's schedule
        takes hours on a CPU: for a first try use ``start="authors:EM"`` (or another
        released model) or far fewer meta-iterations.
    segmenter_params : dict or None, default=None
        Other :class:`~kwtl.models.FCRNSegmenter` parameters (``lr``, ``inner_lr``,
        ``batch_size``, ``module__init`` …), recorded in the model file and used by the
        later steps (e.g. ``lr`` and ``batch_size`` of fine-tuning).
    random_state : int, default=0
    device : str, default="cpu"
    overwrite : bool, default=False
        Replace an existing ``out`` made from other inputs (never done silently).
    progress : bool or callable, default=True
        Show a progress bar with the time left (or call ``progress(done, total)``).
    verbose : bool, default=False
        Print a one-line summary.

    Returns
    -------
    segmenter : FCRNSegmenter
        The pre-trained model (also written to ``out``).

    Examples
    --------
    >>> import os, tempfile
    >>> from kwtl.datasets import make_cells
    >>> from kwtl.workflow import pretrain
    >>> from kwtl.datasets import write_image, write_mask
    >>> tmp = tempfile.mkdtemp()
    >>> images, masks = make_cells(2, 32, random_state=0)
    >>> for i, (im, m) in enumerate(zip(images, masks)):
    ...     _ = write_image(f"{tmp}/src/images/{i}.png", im)
    ...     _ = write_mask(f"{tmp}/src/masks/{i}.png", m)
    >>> seg = pretrain([f"{tmp}/src"], f"{tmp}/model.kwtl", width=4, patch_size=16,
    ...                stride=16, meta_iterations=2, inner_steps=1, progress=False,
    ...                verbose=True)
    pre-trained: Reptile for 2 meta-iterations on 2 images of 1 source folder(s), ...
    >>> sorted(os.listdir(tmp))
    ['model.kwtl', 'model.kwtl.json', 'src']
    """
    out = Path(out)
    sources = [Path(s) for s in (sources or [])]
    if not sources and start is None:
        raise ValueError(
            "nothing to pre-train from: give annotated source folders and/or a "
            "starting model (start='authors:EM')"
        )
    for folder in sources:
        if not folder.is_dir():
            raise FileNotFoundError(f"source folder not found: {folder}")
    inputs = [("a source folder", s) for s in sources] + [("the images folder", images)]
    check_out_apart(out, inputs + [("the starting model", start)])
    work = FileStep(out, "").work
    check_out_apart(work, inputs, label=f"the work folder {work} of out={out}")
    auto_record = None
    if isinstance(start, str) and start == "auto":
        if images is None:
            raise ValueError(
                "start='auto' chooses among the released models for your images: give them "
                "with images="
            )
        from ._auto import resolve_model
        from ._files import load_unlabelled

        start, auto_record = resolve_model(
            "auto",
            load_unlabelled(images, progress=bool(progress))[0],
            progress=progress,
            verbose=verbose,
        )
    chosen = {
        "module__width": width,
        "patch_size": patch_size,
        "stride": stride,
        "meta_iterations": meta_iterations,
        "inner_steps": inner_steps,
        "meta_shots": meta_shots,
    }
    chosen = {k: v for k, v in chosen.items() if v is not None}
    extra = dict(segmenter_params or {})
    clash = sorted(set(extra) & (set(chosen) | {"random_state", "device"}))
    if clash:
        raise ValueError(f"give {', '.join(clash)} as their own arguments, not in segmenter_params")
    source_records = [
        {"name": folder.name, "path": str(folder.resolve()), "sha256": folder_sha256(folder)}
        for folder in sources
    ]
    start_record = None if start is None else model_source(start)
    key = fingerprint(
        "pretrain",
        source_records,
        start_record,
        chosen,
        repr(sorted(extra.items())),
        int(random_state),
    )
    step = FileStep(out, key, overwrite)
    if step.finished():
        say(verbose, f"{out} is already pre-trained from these inputs; nothing to do")
        return load_model(out, device=device)

    started = time.perf_counter()
    if start is not None:
        if "module__width" in chosen:
            raise ValueError("width is fixed by the starting model; do not pass both")
        segmenter = load_model(start, device=device)
        segmenter.set_params(**chosen, **extra)
    else:
        segmenter = FCRNSegmenter(**chosen, **extra, device=device, random_state=random_state)
        segmenter.initialize()
    segmenter.set_params(random_state=random_state, verbose=0)
    n_images = 0
    history = []
    if sources:
        images, masks, groups = [], [], []
        for k, folder in enumerate(sources, start=1):
            data = load_annotated(folder)
            images += data.images
            masks += data.masks
            groups += [k] * len(data.images)
            source_records[k - 1]["n_images"] = len(data.images)
        n_images = len(images)
        history = _reptile_in_blocks(
            segmenter, images, masks, np.asarray(groups), step, int(random_state), progress
        )
    training = {
        "step": "pretrain",
        "sources": source_records,
        "start": start_record,
        "random_state": int(random_state),
        "parameters": {
            k: segmenter.get_params()[k]
            for k in (
                "patch_size",
                "stride",
                "meta_iterations",
                "inner_steps",
                "meta_shots",
                "inner_lr",
                "meta_step",
            )
        },
        "n_images": n_images,
        "meta_loss": history[-1] if history else None,
        "auto_model": auto_record,
        "seconds": round(time.perf_counter() - started, 1),
    }
    step.write(segmenter, training)
    what = (
        f"Reptile for {segmenter.meta_iterations} meta-iterations on {n_images} images "
        f"of {len(sources)} source folder(s)"
        if sources
        else "no training"
    )
    say(verbose, f"pre-trained: {what}, starting from {start or 'random weights'}; wrote {out}")
    return segmenter


def _reptile_in_blocks(segmenter, images, masks, groups, step, seed, progress):
    """Reptile in blocks of :data:`CHECKPOINT_EVERY` meta-iterations with checkpoints."""
    total = int(segmenter.meta_iterations)
    checkpoint = step.checkpoint()
    done, history = 0, []
    saved = checkpoint.load()
    if saved is not None:
        segmenter.module_.load_state_dict(saved["module"])
        done, history = int(saved["done"]), list(saved["history"])
    bar = progress_bar(progress, total, "pretrain (Reptile)", "it", initial=done)
    try:
        while done < total:
            block = min(CHECKPOINT_EVERY, total - done)
            segmenter.set_params(
                meta_iterations=block, random_state=derive_seed(seed, "pretrain-block", done)
            )
            segmenter.meta_fit(images, masks, groups)
            history += list(segmenter.meta_history_)
            done += block
            checkpoint.save(segmenter.module_, done=done, history=history)
            atomic_write_text(
                step.work / "README.txt",
                "kwtl pretrain checkpoint; deleted when the model file is written\n",
            )
            bar.update(block)
    finally:
        bar.close()
    segmenter.set_params(meta_iterations=total, random_state=seed)
    segmenter.meta_history_ = history
    return history
