"""``select``: PLFT on a folder, scoring and choosing, and the annotation package."""

import time
from pathlib import Path

import numpy as np

from sklearn.base import clone
from sklearn.utils import Bunch

from .._version import __version__
from ..datasets import PatchSet
from ..few_shot import plft_patches, pseudo_label_fine_tune
from ..selection import DEFAULT_SELECTOR, BaseSelector, make_selector
from ..utils import derive_seed
from ..utils._inputs import check_out_apart
from ..utils.validation import NON_NEGATIVE_INT, POSITIVE_INT, Options, validate_arguments
from ._auto import resolve_model, warn_if_implausible
from ._describe import describe_selector
from ._display import colour_files
from ._distributed import DaskExecutor, dask_client
from ._files import as_images, sha256_array
from ._model import load_model, model_source, recorded_training, save_model
from ._package import PLFT_MODEL, SELECTION_COLUMNS, drawn_area, read_selection, write_package
from ._rounds import excluded_regions, overlaps_regions, regions_record
from ._step import FolderStep, fingerprint, say

__all__ = ["PLFT_MODEL", "SELECTION_COLUMNS", "read_selection", "select"]

_UNIT_WORDS = {"patch": "patches", "image": "whole images"}

#: Constraints of the arguments every workflow step shares.
COMMON_ARGUMENTS = {
    "random_state": [NON_NEGATIVE_INT],
    "device": [None, str],
    "overwrite": ["boolean"],
    "progress": ["boolean", "callable"],
    "verbose": ["boolean"],
}


@validate_arguments(
    {
        "budget": [POSITIVE_INT],
        "unit": [Options(("patch", "image"))],
        "selector": [None, str, BaseSelector],
        "channel": [None, NON_NEGATIVE_INT],
        "stride": [None, POSITIVE_INT],
        "allow_overlap": ["boolean"],
        "pl_epochs": [NON_NEGATIVE_INT],
        "pl_max_patches": [None, POSITIVE_INT],
        "pl_batch_size": [POSITIVE_INT],
        "scheduler": [None, str],
        **COMMON_ARGUMENTS,
    }
)
def select(
    images,
    model,
    budget,
    out,
    unit="patch",
    selector=None,
    *,
    channel=None,
    stride=None,
    allow_overlap=False,
    pl_epochs=1,
    pl_max_patches=64,
    pl_batch_size=8,
    exclude=None,
    scheduler=None,
    random_state=0,
    device=None,
    overwrite=False,
    progress=True,
    verbose=False,
):
    """Choose what to annotate in a folder of unlabelled images; write the annotation package.

    The steps are the method's (Dawoud et al. 2023), each one call: the inputs are checked,
    the model's BatchNorm becomes affine (when it is not yet) and it is **pseudo-label
    fine-tuned** (PLFT) on the folder (:func:`kwtl.few_shot.pseudo_label_fine_tune`), the
    **selector** scores every candidate patch (or whole image) and chooses the best
    ``budget`` (:meth:`~kwtl.selection.BaseSelector.select_support`), and the annotation
    package is written for the annotator.

    Defaults chosen for a lab machine (measured in ``benchmarks/RESULTS.md``, "kwtl select"):
    PLFT is one epoch over at most 64 evenly spaced non-overlapping patches (the paper's is
    100 epochs over all patches: ``pl_epochs=100, pl_max_patches=None``, for a GPU), and
    pixel-scoring selectors use their fast whole-image mode (``dense=True``, see
    :mod:`kwtl.selection._dense`). Chosen patches do not overlap unless
    ``allow_overlap=True`` (the paper takes the top candidates of an overlapping grid).

    Resumable: the PLFT model and each image's scores are saved in ``out/.kwtl-work/`` as
    they are computed (keyed by a fingerprint of the images, the model and the parameters),
    so a killed run restarts where it stopped; a finished selection with the same
    fingerprint is returned without recomputing.

    Parameters
    ----------
    images : str, path-like or list of 2-D arrays
        A folder of images (PNG/TIFF, sorted by name) or the images themselves.
    model : str, path-like or FCRNSegmenter
        A model file (``kwtl pretrain``) or a pretrained name such as ``"authors:EM"``
        (see :func:`load_model`).
    budget : int
        How many patches (``unit="patch"``) or whole images (``unit="image"``) to annotate.
    out : str or path-like
        The annotation package folder (created; a non-empty folder kwtl did not make is
        refused unless ``overwrite``).
    unit : {"patch", "image"}, default="patch"
        Patches of the model's ``patch_size``, or whole images.
    selector : str, selector or None, default=None
        A short name of :data:`kwtl.selection.SELECTORS` or a selector; None is
        :data:`kwtl.selection.DEFAULT_SELECTOR`.
    channel : int or None, default=None
        Channel of multi-channel files.
    stride : int or None, default=None
        Step of the candidate grid; None uses the model's (the paper's 30).
    allow_overlap : bool, default=False
    pl_epochs, pl_max_patches, pl_batch_size : int
        PLFT schedule (see above); ``pl_epochs=0`` skips PLFT.
    exclude : list of str or path-like, or None, default=None
        Annotation packages of earlier rounds: no candidate that overlaps a region chosen
        in them is chosen again (regions are matched by source image name and position;
        see :func:`kwtl.workflow._rounds.excluded_regions`).
    scheduler : str or None, default=None
        Address of a Dask scheduler: pixel selectors score the images on its workers
        (PLFT and the choice stay here); the scores are those of a plain run.
    random_state : int, default=0
    device : str or None, default=None
        Torch device; None keeps the model file's (CPU).
    overwrite : bool, default=False
        Write into a folder kwtl did not make, or replace a selection made from other
        inputs (masks already saved in ``out/masks/`` are never deleted).
    progress : bool or callable, default=True
        Progress bars with the time left, or ``progress(done, total)``.
    verbose : bool, default=False
        Print a one-line summary.

    Returns
    -------
    result : sklearn.utils.Bunch
        ``table`` (pandas DataFrame of ``selection.csv``), ``path`` (the folder),
        ``metadata`` (``selection.json``), ``model`` (the PLFT model).

    See Also
    --------
    finetune : the next step, once the masks are drawn.
    """
    started = time.perf_counter()
    # 1. the inputs, and the step's fingerprint
    selector, selector_name = _resolve_selector(selector, unit, random_state)
    folder = Path(images) if isinstance(images, (str, Path)) else None
    check_out_apart(
        out,
        [("the images folder", folder), ("the model", model)]
        + [("an excluded package", p) for p in exclude or ()],
    )
    arrays, names, images_record = as_images(images, channel, progress=progress)
    colour = colour_files(folder, channel)
    if colour:
        say(
            verbose,
            f"{len(colour)} of {len(arrays)} images are colour (RGB): the model sees them in "
            "grey (ITU-R 601 luma; the channel option picks one colour instead); the "
            "pictures for people keep their colour",
        )
    params = {} if device is None else {"device": device}
    model, auto_record = resolve_model(
        model, arrays, device=device, progress=progress, verbose=verbose
    )
    segmenter = load_model(model, **params)
    if auto_record is None:  # (choose_model has warned already)
        warn_if_implausible(segmenter, arrays, model)
    if stride is not None:
        segmenter.set_params(stride=int(stride))
    size = int(segmenter.patch_size)
    pool = _candidates(arrays, names, segmenter, unit, budget, allow_overlap)
    regions = excluded_regions(exclude, names)
    coords = (
        np.array([[i, 0, 0] for i in range(len(arrays))], dtype=np.int64)
        if unit == "image"
        else pool.coords
    )
    blocked = overlaps_regions(coords, size, [im.shape for im in arrays], names, regions, unit)
    if budget > int((~blocked).sum()):
        raise ValueError(
            f"budget {budget} is more than the {int((~blocked).sum())} "
            "candidates left after exclude"
        )
    settings = {
        "budget": int(budget),
        "unit": unit,
        "allow_overlap": bool(allow_overlap),
        "stride": int(segmenter.stride),
        "patch_size": size,
        "pl_epochs": int(pl_epochs),
        "pl_batch_size": int(pl_batch_size),
        "pl_max_patches": None if pl_max_patches is None else int(pl_max_patches),
        "random_state": int(random_state),
        **({"exclude": regions_record(regions)} if regions else {}),
        "selector": {
            "name": selector_name,
            "class": type(selector).__name__,
            "params": {k: repr(v) for k, v in selector.get_params().items()},
        },
    }
    model_record = model_source(model)
    image_records = [{"name": n, "sha256": sha256_array(a)} for n, a in zip(names, arrays)]
    step = FolderStep(
        out,
        fingerprint("select", model_record, image_records, settings, __version__),
        "kwtl select",
        "selection.json",
        overwrite,
    )
    out = step.out
    if step.finished("selection.csv"):
        say(verbose, f"{out} already holds this selection; nothing to do")
        return Bunch(
            table=read_selection(out),
            path=out,
            metadata=step.record(),
            model=load_model(out / PLFT_MODEL),
        )
    masks = sorted(p.name for p in (out / "masks").glob("*")) if (out / "masks").is_dir() else []
    held = f" and {len(masks)} mask(s) in masks/ (kept when replaced)" if masks else ""
    step.claim(f"{out} holds a selection made from other images, model or parameters{held}")
    if overwrite:  # the old selection goes before the new one is written
        for old in ("selection.json", "selection.csv"):
            (out / old).unlink(missing_ok=True)

    # 2. PLFT (saved, so a killed run does not redo it)
    plft_started = time.perf_counter()
    plft_file = step.work / PLFT_MODEL
    if not plft_file.is_file():
        plft = pseudo_label_fine_tune(
            segmenter,
            arrays,
            epochs=int(pl_epochs),
            batch_size=int(pl_batch_size),
            stride=size,
            cover_border=True,
            max_patches=pl_max_patches,
            switch_affine="auto",
            random_state=derive_seed(random_state, "plft"),
            progress=progress,
        )
        n_plft = len(
            plft_patches(arrays, size, size, cover_border=True, max_patches=pl_max_patches)
        )
        save_model(
            plft,
            plft_file,
            overwrite=True,
            training={
                "step": "select (pseudo-label fine-tuning)",
                "fingerprint": step.key,
                "start": model_record,
                "images": images_record,
                "n_images": len(arrays),
                "pl_epochs": int(pl_epochs),
                "pl_patches": n_plft,
            },
        )
    # scored as saved, so that a resumed run finds the scores of the same model in the cache
    plft = load_model(plft_file, **params)
    plft.set_params(stride=int(segmenter.stride))

    # 3-4. scores (cached image by image; on a Dask cluster's workers with a scheduler) and
    # the choice, without the regions of earlier rounds
    if regions:
        say(
            verbose,
            f"excluded {int(blocked.sum())} of {len(blocked)} candidates that "
            f"overlap the regions of {len(exclude)} earlier package(s)",
        )
    scoring_started = time.perf_counter()
    with dask_client(scheduler) as client:
        support = selector.select_support(
            pool,
            plft,
            int(budget),
            1,
            memory=step.work / "scores",
            non_overlapping=unit == "patch" and not allow_overlap,
            exclude=blocked if regions else None,
            progress=progress,
            executor=None if client is None else DaskExecutor(client),
        )
    scored_at = time.perf_counter()
    if len(support.indices) < int(budget):
        where = " after exclude" if regions else ""
        raise ValueError(
            f"only {len(support.indices)} non-overlapping patches could be "
            f"chosen{where} (best first, on the stride-{segmenter.stride} grid); "
            f"ask for a budget of at most {len(support.indices)}, or pass "
            "allow_overlap=True"
        )

    # 5. the package
    table = write_package(
        out,
        arrays,
        names,
        support.coords,
        support.scores,
        unit=unit,
        size=size,
        n_candidates=len(selector.scores_),
        selector_name=selector_name,
        dense=getattr(selector, "dense", False),
        version=__version__,
        selector=selector,
        folder=folder,
        channel=channel,
        progress=progress,
    )
    save_model(plft, out / PLFT_MODEL, overwrite=True, training=recorded_training(plft_file))
    metadata = {
        "made_by": "kwtl select",
        "kwtl_version": __version__,
        "fingerprint": step.key,
        "images": images_record,
        "n_images": len(arrays),
        "model": model_record,
        "plft_model": PLFT_MODEL,
        **settings,
        "dense": getattr(selector, "dense", None),
        "n_candidates": int(len(selector.scores_)),
        "n_chosen": len(table),
        "auto_model": auto_record,
        "exclude": [str(Path(p).resolve()) for p in exclude or ()],
        "n_excluded": int(blocked.sum()),
        "seconds": {
            "total": round(time.perf_counter() - started, 1),
            "plft": round(scoring_started - plft_started, 1),
            "scoring": round(scored_at - scoring_started, 1),
            "choice_and_package": round(time.perf_counter() - scored_at, 1),
        },
        "image_sha256": {r["name"]: r["sha256"] for r in image_records},
    }
    area = drawn_area(support.coords, [a.shape for a in arrays], size, unit)
    metadata["drawn_area"] = area
    step.write_record(metadata)
    step.finish()
    what = "whole images" if unit == "image" else f"{size}x{size} patches"
    description = describe_selector(selector, selector_name)
    say(
        verbose,
        f"chose {len(table)} {what} of {len(arrays)} images for annotation "
        f"(≈ {area['image_equivalents']:.1f} image(s) of this folder to draw, "
        f"{100 * area['fraction']:.1f} % of its area) with the {description.name!r} "
        f"selector: {description.summary}; see {out / 'README.txt'}",
    )
    return Bunch(table=table, path=out, metadata=metadata, model=plft)


def _resolve_selector(selector, unit, random_state):
    """The selector for ``unit`` (a name gets its fast whole-image mode and a seed), and the
    name recorded in the package."""
    if selector is None or isinstance(selector, str):
        name = selector or DEFAULT_SELECTOR
        selector = make_selector(
            name, dense=True, unit=unit, random_state=derive_seed(random_state, "selector")
        )
    else:
        name = type(selector).__name__
        selector = clone(selector)
        if "unit" in selector.get_params():
            selector.set_params(unit=unit)
    if getattr(selector, "unit", unit) != unit:
        raise ValueError(
            f"the {name} selector chooses {_UNIT_WORDS.get(selector.unit)} only; "
            f"use unit={selector.unit!r}"
        )
    return selector, name


def _candidates(arrays, names, segmenter, unit, budget, allow_overlap):
    """The candidate grid of every image, after checking that the budget fits it."""
    size = int(segmenter.patch_size)
    shapes = [im.shape for im in arrays]
    small = [n for n, s in zip(names, shapes) if min(s) < size]
    if small:
        raise ValueError(
            f"{len(small)} image(s) are smaller than the model's {size}x{size} "
            f"patches: {', '.join(small[:3])}"
        )
    pool = PatchSet.from_images(arrays, size, segmenter.stride, cover_border=True)
    if unit == "image":
        most, what = len(shapes), "images"
    elif allow_overlap:
        most, what = len(pool), "candidate patches"
    else:
        most = sum((h // size) * (w // size) for h, w in shapes)
        what = f"non-overlapping {size}x{size} patches"
    if budget > most:
        raise ValueError(f"budget {budget} is more than the folder offers: {most} {what}")
    return pool
