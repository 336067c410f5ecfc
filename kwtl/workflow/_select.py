"""``select``: PLFT on a folder, scoring, and the annotation package for the annotator."""
import json
import shutil
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.utils import Bunch
from tqdm.auto import tqdm

from .._version import __version__
from ..datasets import PatchSet
from ..few_shot import plft_patches, pseudo_label_fine_tune
from ..selection import DEFAULT_SELECTOR, PixelSelector, make_selector
from ..selection._base import BaseSelector
from ..utils import check_images, derive_seed
from ..utils._atomic import atomic_write, atomic_write_text
from ..utils._output import prepare_output_dir
from ..datasets import write_image
from ._files import load_unlabelled, sha256_array
from ._model import fingerprint, load_model, model_source, save_model

__all__ = ["select", "read_selection", "SELECTION_COLUMNS", "PLFT_MODEL"]

#: Columns of ``selection.csv``, one row per item to annotate.
SELECTION_COLUMNS = ("image_file", "mask_file", "source_image", "row", "col", "size", "score",
                     "rank")
#: The model :func:`select` scored with (after PLFT), the starting point of :func:`finetune`.
PLFT_MODEL = "model_plft.kwtl"
_WORK = ".kwtl-work"


def _as_images(images, channel):
    """A folder (read with the format policy) or a list of arrays; with names and a record."""
    if isinstance(images, (str, Path)):
        folder = Path(images)
        arrays, names = load_unlabelled(folder, channel=channel)
        return arrays, names, str(folder.resolve())
    arrays = check_images(images, name="images")
    return arrays, [f"image{i:03d}" for i in range(len(arrays))], "<arrays>"


def _check_budget(budget, unit, shapes, size, allow_overlap, n_candidates):
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ValueError(f"budget must be a positive integer, got {budget!r}")
    if unit == "image":
        most, what = len(shapes), "images"
    elif allow_overlap:
        most, what = n_candidates, "candidate patches"
    else:
        most = sum((h // size) * (w // size) for h, w in shapes)
        what = f"non-overlapping {size}x{size} patches"
    if budget > most:
        raise ValueError(f"budget {budget} is more than the folder offers: {most} {what}")


def _non_overlapping(order, coords, size, budget):
    """Greedy: the best candidates whose windows do not overlap a better one's."""
    chosen, boxes = [], {}
    for k in order:
        i, r, c = (int(v) for v in coords[k])
        if any(abs(r - r2) < size and abs(c - c2) < size for r2, c2 in boxes.get(i, ())):
            continue
        chosen.append(int(k))
        boxes.setdefault(i, []).append((r, c))
        if len(chosen) == budget:
            break
    return np.asarray(chosen, dtype=np.intp)


def _item_name(name, row, col, unit):
    return name if unit == "image" else f"{name}_r{row:04d}_c{col:04d}"


def _overview(image, boxes, path):
    """The source image with the chosen regions drawn and numbered by rank."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(picture)
    width = max(2, min(image.shape) // 200)
    for rank, (r, c, h, w) in boxes:
        draw.rectangle([c, r, c + w - 1, r + h - 1], outline=(255, 40, 40), width=width)
        draw.text((c + 2 * width + 2, r + 2 * width + 2), f"#{rank}", fill=(255, 255, 0))
    write_image(path, np.asarray(picture), overwrite=True)


_README = """\
kwtl annotation package
=======================

What to do
----------
{intro}

For every row of selection.csv:
  1. open its image_file (e.g. {example_image}) in your annotation tool
     (napari, Fiji, QuPath, the Cellpose GUI ...);
  2. draw the cells (foreground);
  3. save the mask at its mask_file (e.g. {example_mask}).

Mask format
-----------
* the same size as its image ({size_text});
* PNG or TIFF (the same name with .tif or .tiff instead of .png is accepted too);
* binary (0 = background, any other value = cell) or instance labels (0 = background,
  1, 2, 3 ... = one value per cell, as napari labels layers and Cellpose write them);
* an item without any cell gets an all-zero mask (do not skip it).

Then run

    kwtl finetune {todo} --out tuned.kwtl

which checks that every mask is there and has the right size, fine-tunes the model on
your masks and writes tuned.kwtl; then

    kwtl predict IMAGES_DIR --model tuned.kwtl --out MASKS_DIR

segments a whole folder.

Files
-----
images/           the {what} to annotate (8-bit grey PNG, as the model sees them)
masks/            put your masks here
overview/         one picture per source image, the chosen regions in red, by rank
selection.csv     one row per item: {columns}
selection.json    how the choice was made (model, selector, parameters, kwtl {version})
model_plft.kwtl   the model the choice was made with (kwtl finetune starts from it)
"""


def select(images, model, budget, out, unit="patch", selector=None, *, channel=None,
           stride=None, allow_overlap=False, pl_epochs=1, pl_max_patches=64, pl_batch_size=8,
           random_state=0, device=None, overwrite=False, progress=True):
    """Choose what to annotate in a folder of unlabelled images; write the annotation package.

    The steps are the method's (Dawoud et al. 2023): the model's BatchNorm becomes affine
    (when it is not yet), **pseudo-label fine-tuning** (PLFT) on the folder, then the
    **selector** scores every candidate patch (or whole image) and the best ``budget`` are
    exported for the annotator.

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
    random_state : int, default=0
    device : str or None, default=None
        Torch device; None keeps the model file's (CPU).
    overwrite : bool, default=False
        Write into a folder kwtl did not make, or replace a selection made from other
        inputs (masks already saved in ``out/masks/`` are never deleted).
    progress : bool, default=True
        Progress bars with the time left.

    Returns
    -------
    result : sklearn.utils.Bunch
        ``table`` (pandas DataFrame of ``selection.csv``), ``path`` (the folder),
        ``metadata`` (``selection.json``), ``model`` (the PLFT model).

    See Also
    --------
    finetune : the next step, once the masks are drawn.
    """
    import pandas as pd

    started = time.perf_counter()
    if unit not in ("patch", "image"):
        raise ValueError(f"unit must be 'patch' or 'image', got {unit!r}")
    for name, value, low in (("pl_epochs", pl_epochs, 0), ("pl_batch_size", pl_batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    if pl_max_patches is not None and (not isinstance(pl_max_patches, (int, np.integer))
                                       or pl_max_patches < 1):
        raise ValueError(f"pl_max_patches must be None or a positive integer, got "
                         f"{pl_max_patches!r}")
    selector_name = (selector or DEFAULT_SELECTOR) if isinstance(selector, str) or \
        selector is None else None
    if selector is None or isinstance(selector, str):
        selector = make_selector(selector or DEFAULT_SELECTOR, dense=True, unit=unit,
                                 random_state=derive_seed(random_state, "selector"))
    elif not isinstance(selector, BaseSelector):
        raise TypeError(f"selector must be a name or a kwtl selector, got {selector!r}")
    else:
        selector = clone(selector).set_params(unit=unit) if "unit" in selector.get_params() \
            else clone(selector)
    if getattr(selector, "unit", unit) != unit:
        raise ValueError(f"the {selector_name or type(selector).__name__} selector chooses "
                         f"{ {'patch': 'patches', 'image': 'whole images'}.get(selector.unit)} only; use unit='{selector.unit}' "
                         f"(--unit {selector.unit})")
    arrays, names, images_record = _as_images(images, channel)
    params = {} if device is None else {"device": device}
    segmenter = load_model(model, **params)
    if stride is not None:
        if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
            raise ValueError(f"stride must be a positive integer, got {stride!r}")
        segmenter.set_params(stride=int(stride))
    size = int(segmenter.patch_size)
    shapes = [im.shape for im in arrays]
    small = [n for n, s in zip(names, shapes) if min(s) < size]
    if small:
        raise ValueError(f"{len(small)} image(s) are smaller than the model's {size}x{size} "
                         f"patches: {', '.join(small[:3])}")
    grids = [PatchSet.from_images([im], size, segmenter.stride, cover_border=True)
             for im in arrays]
    _check_budget(budget, unit, shapes, size, allow_overlap, sum(len(g) for g in grids))

    settings = {"budget": int(budget), "unit": unit, "allow_overlap": bool(allow_overlap),
                "stride": int(segmenter.stride), "patch_size": size,
                "pl_epochs": int(pl_epochs), "pl_batch_size": int(pl_batch_size),
                "pl_max_patches": None if pl_max_patches is None else int(pl_max_patches),
                "random_state": int(random_state),
                "selector": {"name": selector_name or type(selector).__name__,
                             "class": type(selector).__name__,
                             "params": {k: repr(v) for k, v in selector.get_params().items()}}}
    model_record = model_source(model)
    image_records = [{"name": n, "sha256": sha256_array(a)} for n, a in zip(names, arrays)]
    key = fingerprint("select", model_record, image_records, settings, __version__)
    out = Path(out)
    done = _finished(out, key)
    if done is not None:
        print(f"{out} already holds this selection; nothing to do")
        return done
    _claim(out, key, overwrite)
    work = out / _WORK / key[:16]
    work.mkdir(parents=True, exist_ok=True)

    # 1. PLFT (saved, so a killed run does not redo it)
    plft_file = work / PLFT_MODEL
    plft_started = time.perf_counter()
    if plft_file.is_file():
        plft = load_model(plft_file, **params)
        n_plft = None
    else:
        plft = pseudo_label_fine_tune(
            segmenter, arrays, epochs=pl_epochs, batch_size=pl_batch_size, stride=size,
            cover_border=True, max_patches=pl_max_patches, switch_affine="auto",
            random_state=derive_seed(random_state, "plft"), progress=progress)
        n_plft = len(plft_patches(arrays, size, size, cover_border=True,
                                  max_patches=pl_max_patches))
        save_model(plft, plft_file, overwrite=True, training={
            "step": "select (pseudo-label fine-tuning)", "fingerprint": key,
            "start": model_record, "images": images_record, "n_images": len(arrays),
            "pl_epochs": int(pl_epochs), "pl_patches": n_plft})
    plft.set_params(stride=int(segmenter.stride))

    # 2. scores, image by image (pixel selectors score each image on its own)
    scoring_started = time.perf_counter()
    scores = _scores(selector, plft, grids, arrays, work, progress)
    scored_at = time.perf_counter()

    # 3. the choice
    if unit == "image":
        flat = np.array([s[0] for s in scores], dtype=float)
        coords = np.array([[i, 0, 0] for i in range(len(arrays))], dtype=np.int64)
    else:
        flat = np.concatenate(scores).astype(float)
        coords = np.concatenate([np.column_stack([np.full(len(g), i), g.coords[:, 1:]])
                                 for i, g in enumerate(grids)]).astype(np.int64)
    if np.ptp(flat) <= 1e-12 * max(1.0, float(np.max(np.abs(flat)))) and len(flat) > 1 \
            and not getattr(selector, "stochastic", False):
        warnings.warn(f"all {len(flat)} candidates have the same score: the selection is "
                      "just the first ones (is the model trained?)", RuntimeWarning,
                      stacklevel=2)
    if type(selector)._choose is not BaseSelector._choose:
        chosen = selector.rank(flat, int(budget))  # a budget-dependent choice of its own
    else:
        order = selector.rank(flat, len(flat))
        chosen = (order[: int(budget)] if unit == "image" or allow_overlap
                  else _non_overlapping(order, coords, size, int(budget)))

    # 4. the package (images/ and overview/ hold only kwtl's files: stale ones go)
    for folder in ("images", "overview"):
        for old in (out / folder).glob("*.png") if (out / folder).is_dir() else ():
            old.unlink()
    rows, boxes = [], {}
    for rank, k in enumerate(chosen, start=1):
        i, r, c = (int(v) for v in coords[k])
        item = _item_name(names[i], r, c, unit)
        if unit == "image":
            pixels, (h, w), size_text = arrays[i], shapes[i], f"{shapes[i][0]}x{shapes[i][1]}"
        else:
            pixels, (h, w), size_text = arrays[i][r:r + size, c:c + size], (size, size), size
        write_image(out / "images" / f"{item}.png", pixels, overwrite=True)
        rows.append({"image_file": f"images/{item}.png", "mask_file": f"masks/{item}.png",
                     "source_image": names[i], "row": r, "col": c, "size": size_text,
                     "score": float(flat[k]), "rank": rank})
        boxes.setdefault(i, []).append((rank, (r, c, h, w)))
    (out / "masks").mkdir(exist_ok=True)
    for i, name in enumerate(names):
        _overview(arrays[i], boxes.get(i, []), out / "overview" / f"{name}.png")
    table = pd.DataFrame(rows, columns=list(SELECTION_COLUMNS))
    atomic_write_text(out / "selection.csv", table.to_csv(index=False))
    save_model(plft, out / PLFT_MODEL, overwrite=True,
               training=json.loads(json.dumps(_training_of(plft_file))))
    what = "whole images" if unit == "image" else f"{size}x{size} patches"
    intro = textwrap.fill(
        f"kwtl chose the {len(rows)} {what} in images/ for you to annotate, out of "
        f"{len(flat)} candidates in {len(arrays)} images: with the "
        f"{settings['selector']['name']!r} selector"
        f"{' (fast whole-image scoring)' if getattr(selector, 'dense', False) else ''}, "
        "these are the ones whose masks should teach the model most. selection.csv lists "
        "them best first (column rank); overview/ shows where each lies in its source "
        "image.", width=88)
    atomic_write_text(out / "README.txt", _README.format(
        intro=intro, what=what, example_image=rows[0]["image_file"],
        example_mask=rows[0]["mask_file"],
        size_text="height x width in column size" if unit == "image"
        else f"{size}x{size} pixels",
        todo=out, columns=", ".join(SELECTION_COLUMNS), version=__version__))
    metadata = {
        "made_by": "kwtl select", "kwtl_version": __version__, "fingerprint": key,
        "images": images_record, "n_images": len(arrays), "model": model_record,
        "plft_model": PLFT_MODEL, **settings,
        "dense": getattr(selector, "dense", None),
        "n_candidates": int(len(flat)), "n_chosen": len(rows),
        "seconds": {"total": round(time.perf_counter() - started, 1),
                    "plft": round(scoring_started - plft_started, 1),
                    "scoring": round(scored_at - scoring_started, 1),
                    "choice_and_package": round(time.perf_counter() - scored_at, 1)},
        "image_sha256": {r["name"]: r["sha256"] for r in image_records},
    }
    atomic_write_text(out / "selection.json", json.dumps(metadata, indent=1) + "\n")
    shutil.rmtree(out / _WORK, ignore_errors=True)  # finished: the cache is not needed
    print(f"chose {len(rows)} {what} of {len(arrays)} images for annotation; "
              f"see {out / 'README.txt'}")
    return Bunch(table=table, path=out, metadata=metadata, model=plft)


def read_selection(todo_dir):
    """``selection.csv`` of an annotation package as a DataFrame (names kept as text:
    a source image named ``00`` stays ``"00"``)."""
    import pandas as pd

    return pd.read_csv(Path(todo_dir) / "selection.csv",
                       dtype={"image_file": str, "mask_file": str, "source_image": str})


def _training_of(path):
    from ._model import recorded_training

    return recorded_training(path)


def _scores(selector, plft, grids, arrays, work, progress):
    """Scores of every image's candidates, cached per image in ``work/scores``."""
    if not isinstance(selector, PixelSelector):  # whole-pool selectors: one pass
        cache = work / "scores" / "pool.npz"
        if cache.is_file():
            with np.load(cache) as saved:
                flat = saved["scores"]
        else:
            pool = PatchSet(arrays, np.concatenate(
                [np.column_stack([np.full(len(g), i), g.coords[:, 1:]])
                 for i, g in enumerate(grids)]), grids[0].patch_size)
            flat = np.asarray(selector.score(pool, plft), dtype=float)
            atomic_write(cache, lambda f: np.savez(f, scores=flat))
        if selector.unit == "image":
            return [flat[i : i + 1] for i in range(len(arrays))]
        bounds = np.cumsum([0] + [len(g) for g in grids])
        return [flat[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    scores = []
    bar = tqdm(total=len(arrays), desc="scoring images", unit="image", disable=not progress)
    try:
        for i, grid in enumerate(grids):
            cache = work / "scores" / f"{i:05d}.npy"
            if cache.is_file():
                values = np.load(cache)
            else:
                values = np.asarray(selector.score(grid, plft), dtype=float)
                atomic_write(cache, lambda f: np.save(f, values))
            scores.append(values)
            bar.update(1)
    finally:
        bar.close()
    return scores


def _finished(out, key):
    """The result of a finished selection in ``out`` with fingerprint ``key``, else None."""
    meta_file = out / "selection.json"
    if not meta_file.is_file():
        return None
    try:
        metadata = json.loads(meta_file.read_text())
    except ValueError:
        return None
    if metadata.get("fingerprint") != key or not (out / "selection.csv").is_file():
        return None
    return Bunch(table=read_selection(out), path=out, metadata=metadata,
                 model=load_model(out / PLFT_MODEL))


def _claim(out, key, overwrite):
    """Claim ``out`` for a new selection; refuse to replace another one silently."""
    prepare_output_dir(out, force=overwrite, made_by="kwtl select")
    meta_file = out / "selection.json"
    if meta_file.is_file() and not overwrite:
        masks = sorted(p.name for p in (out / "masks").glob("*")) if (out / "masks").is_dir() \
            else []
        held = f" and {len(masks)} mask(s) in masks/" if masks else ""
        raise FileExistsError(
            f"{out} holds a selection made from other images, model or parameters{held}; "
            "choose another --out, or pass --force to replace the selection (masks are kept)")
    if overwrite:
        for old in ("selection.json", "selection.csv"):
            (out / old).unlink(missing_ok=True)
