"""``predict``: a folder of images in, full-resolution masks (and pictures) out."""

from pathlib import Path

import numpy as np
from sklearn.utils import Bunch

from .._version import __version__
from ..datasets import write_image, write_mask
from ..postprocess import label_instances
from ..utils._inputs import check_out_apart
from ..utils._progress import progress_bar
from ..utils.validation import Options, validate_arguments
from ._auto import warn_implausible_foreground
from ._display import colour_files, display_image
from ._distributed import dask_client, predict_one
from ._files import as_images, sha256_array
from ._model import load_model, model_source
from ._select import COMMON_ARGUMENTS
from ._step import FolderStep, fingerprint, say

__all__ = ["predict"]

_FORMATS = ("png", "tif")
#: Sub-folders of ``predict``'s output, by kind of file.
FOLDERS = {"mask": "masks", "overlay": "overlays", "probability": "probabilities"}


def _overlay(picture, labels, path):
    """The picture (colour kept, contrast-stretched) with the objects' outlines in colour."""
    from skimage.segmentation import find_boundaries

    rgb = picture if picture.ndim == 3 else np.repeat(picture[..., None], 3, axis=2)
    rgb = rgb.copy()
    edges = find_boundaries(labels, mode="inner")
    rgb[edges] = (255, 60, 0)
    write_image(path, rgb, overwrite=True)


@validate_arguments(
    {
        "instances": ["boolean"],
        "probabilities": ["boolean"],
        "mask_suffix": [None, str],
        "format": [Options(_FORMATS)],
        "overlay": ["boolean"],
        "scheduler": [None, str],
        **COMMON_ARGUMENTS,
    }
)
def predict(
    images,
    model,
    out,
    instances=False,
    probabilities=False,
    mask_suffix=None,
    *,
    format="png",
    channel=None,
    overlay=True,
    scheduler=None,
    device=None,
    overwrite=False,
    progress=True,
    verbose=False,
):
    """Segment every image of a folder at full resolution; write masks and pictures.

    For an image ``a.tif`` it writes, in ``out``:

    * ``masks/a{mask_suffix}.png`` (or ``.tif``): the mask, same size as the image — binary
      (0 / 255, 8-bit) or, with ``instances=True``, instance labels (0 = background,
      1 … n = one value per cell, 16-bit; 32-bit TIFF beyond 65535 cells) from
      :func:`kwtl.postprocess.label_instances` (connected components of the thresholded
      prediction, touching cells split by a distance-transform watershed), so the file
      opens as a labels layer in napari or as Cellpose masks
      (:func:`kwtl.datasets.write_mask`);
    * ``probabilities/a_prob.tif`` (``probabilities=True``): the foreground probability as
      16-bit TIFF, ``p = value / 65535`` (:func:`kwtl.datasets.write_image`);
    * ``overlays/a_overlay.png`` (``overlay=True``): the image (in colour for RGB files,
      contrast-stretched) with the objects' outlines.

    Warns when the model marks more than 60 % of all pixels as cells (probably the wrong
    model for these images).

    Resumable: an image whose files exist (from a run with the same model and parameters,
    recorded in ``out/predict.json``) is skipped. Files of a run with another model or
    parameters are never replaced silently.

    Parameters
    ----------
    images : str, path-like or list of 2-D arrays
        A folder of images (PNG/TIFF) or the images.
    model : str, path-like or FCRNSegmenter
        A model file (``kwtl finetune``) or a pretrained name (see :func:`load_model`).
    out : str or path-like
        Output folder (created; a non-empty folder kwtl did not make is refused unless
        ``overwrite``).
    instances : bool, default=False
    probabilities : bool, default=False
    mask_suffix : str or None, default=None
        Appended to the image name (``"_masks"``: Cellpose's ``a_masks.png``).
    format : {"png", "tif"}, default="png"
    channel : int or None, default=None
        Channel of multi-channel files.
    overlay : bool, default=True
    scheduler : str or None, default=None
        Address of a Dask scheduler (``tcp://host:8786``): the images are predicted on its
        workers (the model is sent to each once); files are written here, identical to a
        plain run's. Needs ``dask[distributed]``.
    device : str or None, default=None
    overwrite : bool, default=False
    progress : bool or callable, default=True
    verbose : bool, default=False
        Print a one-line summary.

    Returns
    -------
    result : sklearn.utils.Bunch
        ``masks`` (dict image name -> mask file), ``path``, ``skipped`` (names already done).
    """
    suffix = "" if mask_suffix is None else str(mask_suffix)
    if any(ch in suffix for ch in "/\\"):
        raise ValueError(f"mask_suffix must be a plain name part, got {suffix!r}")
    folder = Path(images) if isinstance(images, (str, Path)) else None
    check_out_apart(out, [("the images folder", folder), ("the model", model)])
    arrays, names, images_record = as_images(images, channel, progress=progress)
    colour = colour_files(folder, channel)
    if colour:
        say(
            verbose,
            f"{len(colour)} of {len(arrays)} images are colour (RGB): the model sees them in "
            "grey (ITU-R 601 luma); the overlays keep their colour",
        )
    params = {} if device is None else {"device": device}
    segmenter = load_model(model, **params)
    settings = {
        "instances": bool(instances),
        "probabilities": bool(probabilities),
        "suffix": suffix,
        "format": format,
        "overlay": bool(overlay),
        "threshold": float(segmenter.threshold),
        "bn_mode": segmenter.bn_mode,
    }
    step = FolderStep(
        out,
        fingerprint("predict", model_source(model), settings, __version__),
        "kwtl predict",
        "predict.json",
        overwrite,
    )
    out = step.out
    record = step.claim(f"{out} holds masks predicted with another model or other options")
    if record is None:
        record = {
            "made_by": "kwtl predict",
            "kwtl_version": __version__,
            "model": model_source(model),
            "images": images_record,
            **settings,
            "masks_folder": FOLDERS["mask"],
            "done": {},
        }
    written, skipped = {}, []
    with dask_client(scheduler) as client:
        _predict_all(
            arrays,
            names,
            segmenter,
            record,
            step,
            out,
            suffix,
            format,
            instances,
            probabilities,
            overlay,
            written,
            skipped,
            client,
            progress,
            lambda name, image: display_image(folder, name, image, channel),
        )
    kind = "instance-label" if instances else "binary"
    if len(skipped) == len(written):
        say(verbose, f"{out} already holds these masks; nothing to do")
    else:
        say(
            verbose,
            f"wrote {len(written) - len(skipped)} {kind} masks to {out / FOLDERS['mask']}"
            + (f" ({len(skipped)} already there)" if skipped else "")
            + (f", overlays to {out / FOLDERS['overlay']}" if overlay else ""),
        )
    fractions = [record.get("foreground", {}).get(n) for n in names]
    sizes = [a.size for a in arrays]
    if fractions and all(f is not None for f in fractions):
        warn_implausible_foreground(
            float(np.dot(fractions, sizes) / sum(sizes)),
            str(model) if isinstance(model, (str, Path)) else type(model).__name__,
        )
    return Bunch(masks=written, path=out, skipped=skipped)


def _predict_all(
    arrays,
    names,
    segmenter,
    record,
    step,
    out,
    suffix,
    format,
    instances,
    probabilities,
    overlay,
    written,
    skipped,
    client,
    progress,
    picture,
):
    """Predict and write each image not done yet (on ``client``'s workers when given);
    ``picture(name, image)`` is the image for people (the overlay's background)."""
    todo = {}
    if client is not None:  # submit what is left; results are written here, in order
        model = client.scatter(segmenter, broadcast=True)
        for image, name in zip(arrays, names):
            if record["done"].get(name) != sha256_array(image):
                todo[name] = client.submit(predict_one, model, image, pure=False)
    bar = progress_bar(progress, len(arrays), "predicting", "image")
    try:
        for image, name in zip(arrays, names):
            files = {"mask": out / FOLDERS["mask"] / f"{name}{suffix}.{format}"}
            if probabilities:
                files["probability"] = out / FOLDERS["probability"] / f"{name}_prob.tif"
            if overlay:
                files["overlay"] = out / FOLDERS["overlay"] / f"{name}_overlay.png"
            done = record["done"].get(name)
            if done == sha256_array(image) and all(f.is_file() for f in files.values()):
                skipped.append(name)
                written[name] = files["mask"]
                bar.update(1)
                continue
            proba = todo.pop(name).result() if name in todo else segmenter.predict_proba([image])[0]
            if instances:
                labels = label_instances(proba, threshold=segmenter.threshold)
                if labels.max(initial=0) > np.iinfo(np.uint16).max and format == "png":
                    raise ValueError(
                        f"{name}: more than 65535 cells do not fit a PNG; use format='tif'"
                    )
            else:
                labels = proba >= segmenter.threshold
            write_mask(
                files["mask"], labels, overwrite=True, dtype=np.uint16 if instances else None
            )
            if probabilities:
                write_image(files["probability"], np.clip(proba, 0.0, 1.0), overwrite=True)
            if overlay:
                _overlay(picture(name, image), labels, files["overlay"])
            record["done"][name] = sha256_array(image)
            record.setdefault("foreground", {})[name] = float(np.mean(labels > 0))
            step.write_record(record)
            written[name] = files["mask"]
            bar.update(1)
    finally:
        bar.close()
