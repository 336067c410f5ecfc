"""Which released model to start from: a label-free choice for a folder (``--from auto``).

Every released model of the authors was pre-trained and pseudo-label fine-tuned for one kind
of image (:data:`kwtl.models.PRETRAINED`). On another kind it can be far off: the EM model
marks most pixels of fluorescence nuclei as cells. :func:`choose_model` ranks the released
models on the user's own unlabelled images by how well each model's mask agrees with the
classical pseudo-labels of the same images (:class:`~kwtl.pseudo_label.PseudoLabeler`:
histogram equalisation and an automatic threshold and polarity), the signal pseudo-label
fine-tuning trains on anyway, and reports each model's predicted foreground fraction. No label
is read. Measured leave-one-dataset-out on the five benchmark datasets
(``benchmarks/results/auto_model/``), the choice was the best of the other models on both
fluorescence datasets but the worst on electron microscopy, where the classical
pseudo-labels over-segment; the user guide's table "Which model to start from" is the
measured advice.
"""

import os
import warnings

import numpy as np
from sklearn.utils import Bunch
from tqdm.auto import tqdm

from ..metrics import iou_score

__all__ = [
    "AUTO_MODELS",
    "IMPLAUSIBLE_FOREGROUND",
    "choose_model",
    "foreground_fraction",
    "resolve_model",
    "warn_if_implausible",
    "warn_implausible_foreground",
]

#: The released models ``choose_model`` picks from (one per kind of image).
AUTO_MODELS = ("authors:B39", "authors:B5", "authors:EM", "authors:ssTEM", "authors:TNBC")
#: A predicted foreground fraction above this on a folder is implausible for cells (the
#: model probably sees the background as cells): warned about.
IMPLAUSIBLE_FOREGROUND = 0.60


def _evenly_spaced(n, k):
    if k is None or k >= n:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, int(k)).round()})


def foreground_fraction(segmenter, images):
    """Fraction of the pixels of ``images`` that ``segmenter`` predicts as foreground.

    Parameters
    ----------
    segmenter : FCRNSegmenter
        An initialised segmenter (its ``threshold`` and ``bn_mode`` are used).
    images : list of ndarray of shape (H, W)

    Returns
    -------
    fraction : float
        Predicted foreground pixels over all pixels, pooled over the images.

    Examples
    --------
    >>> import numpy as np
    >>> from kwtl.models import FCRNSegmenter
    >>> seg = FCRNSegmenter(module__width=4, patch_size=16).initialize()
    >>> 0.0 <= foreground_fraction(seg, [np.zeros((16, 16), np.uint8)]) <= 1.0
    True
    """
    masks = segmenter.predict(images)
    return float(sum(int(m.sum()) for m in masks) / sum(m.size for m in masks))


def warn_implausible_foreground(
    fraction,
    model_name,
    limit=IMPLAUSIBLE_FOREGROUND,
    advice="see the user guide's table 'Which model to start from' (authors:B39 when unsure)",
):
    """Warn (``UserWarning``, one line) when a model predicts more than ``limit`` of the pixels
    as cells; returns whether it warned."""
    if fraction <= limit:
        return False
    warnings.warn(
        f"{model_name} predicts {100 * fraction:.1f}% of the pixels of these images as cells "
        f"(more than {100 * limit:.0f}%): it is probably the wrong model for them; {advice}",
        UserWarning,
        stacklevel=3,
    )
    return True


def _name(model):
    return str(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__


def warn_if_implausible(segmenter, images, model, max_images=4, max_side=512):
    """Predict centre crops (at most ``max_side`` pixels a side) of up to ``max_images``
    evenly spaced images and warn if the foreground is implausible; returns the fraction."""
    crops = []
    for i in _evenly_spaced(len(images), max_images):
        h, w = images[i].shape
        r, c = max(0, (h - max_side) // 2), max(0, (w - max_side) // 2)
        crops.append(images[i][r : r + max_side, c : c + max_side])
    fraction = foreground_fraction(segmenter, crops)
    warn_implausible_foreground(fraction, _name(model))
    return fraction


def resolve_model(model, images, *, device=None, progress=True, verbose=False):
    """``model``, or with ``"auto"`` the released model :func:`choose_model` picks for
    ``images``; returns ``(model, record)``, the record (None unless auto) for provenance.
    With ``verbose``, one line says which model was chosen and why."""
    from ._step import say

    if not (isinstance(model, str) and model == "auto"):
        return model, None
    result = choose_model(images, AUTO_MODELS, device=device, progress=bool(progress))
    best = result.table.iloc[0]
    runner_up = (
        f"; next {result.table.iloc[1]['model']} {result.table.iloc[1]['agreement']:.2f}"
        if len(result.table) > 1
        else ""
    )
    say(
        verbose,
        f"model auto: starting from {result.choice} (its masks agree with the "
        f"pseudo-labels at IoU {best['agreement']:.2f}{runner_up}; it predicts "
        f"{100 * best['foreground']:.0f}% foreground)",
    )
    return result.choice, {
        "choice": result.choice,
        "images": result.images,
        "table": result.table.to_dict(orient="records"),
    }


def choose_model(
    images, candidates=AUTO_MODELS, *, channel=None, max_images=8, device=None, progress=True
):
    """Choose the released model to start from for a folder of unlabelled images.

    Each candidate predicts masks for up to ``max_images`` evenly spaced images of the
    folder; its **agreement** is the mean foreground IoU between its masks and the
    pseudo-labels of :class:`~kwtl.pseudo_label.PseudoLabeler` (default, automatic
    threshold and polarity) on the same images. The candidate with the highest agreement is
    chosen (ties: the first in ``candidates``). No label is read.

    Parameters
    ----------
    images : str, path-like or list of 2-D arrays
        A folder of images (read as :func:`kwtl.datasets.load_images` does) or the images.
    candidates : sequence of str or FCRNSegmenter, default=AUTO_MODELS
        Model names (:data:`kwtl.models.PRETRAINED`), model files, or segmenters.
    channel : int or None, default=None
        Channel of multi-channel files.
    max_images : int or None, default=8
        At most this many images are predicted (None: all).
    device : str or None, default=None
    progress : bool, default=True

    Returns
    -------
    result : sklearn.utils.Bunch
        ``choice`` (the chosen candidate as given), ``table`` (pandas DataFrame, one row per
        candidate: ``model`` (its name or path; ``"FCRNSegmenter 2"`` for the third
        candidate given as an object), ``agreement``, ``foreground``, sorted best first),
        ``pseudo_label_foreground`` (the pseudo-labels' foreground fraction) and
        ``images`` (indices of the images used).

    Warns
    -----
    UserWarning
        When the chosen model predicts more than :data:`IMPLAUSIBLE_FOREGROUND` of the
        pixels as foreground.

    Examples
    --------
    >>> from kwtl.datasets import make_cells
    >>> from kwtl.models import FCRNSegmenter
    >>> images, _ = make_cells(2, 32, random_state=0)
    >>> a = FCRNSegmenter(module__width=4, patch_size=16, random_state=0).initialize()
    >>> b = FCRNSegmenter(module__width=4, patch_size=16, random_state=1).initialize()
    >>> result = choose_model(images, [a, b], progress=False)  # doctest: +SKIP
    >>> list(result.table.columns)  # doctest: +SKIP
    ['model', 'agreement', 'foreground']
    """
    import pandas as pd

    from ..pseudo_label import PseudoLabeler
    from ._model import load_model
    from ._files import as_images

    candidates = list(candidates)
    if not candidates:
        raise ValueError("candidates is empty: give at least one model")
    if max_images is not None and (
        isinstance(max_images, bool)
        or not isinstance(max_images, (int, np.integer))
        or max_images < 1
    ):
        raise ValueError(f"max_images must be None or a positive integer, got {max_images!r}")
    arrays, _, _ = as_images(images, channel)
    if not arrays:
        raise ValueError("no images to choose a model for")
    used = _evenly_spaced(len(arrays), max_images)
    arrays = [arrays[i] for i in used]
    pseudo = PseudoLabeler().fit_transform(arrays)
    params = {} if device is None else {"device": device}
    rows = []
    for k, candidate in enumerate(
        tqdm(candidates, desc="trying the released models", unit="model", disable=not progress)
    ):
        segmenter = load_model(candidate, **params)
        masks = segmenter.predict(arrays)
        name = (
            str(candidate)
            if isinstance(candidate, (str, os.PathLike))
            else f"{type(candidate).__name__} {k}"
        )
        rows.append(
            {
                "model": str(name),
                "agreement": float(np.mean([iou_score(p, m) for p, m in zip(pseudo, masks)])),
                "foreground": float(sum(int(m.sum()) for m in masks) / sum(m.size for m in masks)),
            }
        )
    best = int(np.argmax([r["agreement"] for r in rows]))  # first of ties
    table = pd.DataFrame(rows, columns=["model", "agreement", "foreground"])
    table = table.iloc[np.argsort(-table["agreement"].to_numpy(), kind="stable")]
    table = table.reset_index(drop=True)
    warn_implausible_foreground(
        rows[best]["foreground"],
        rows[best]["model"],
        advice="no released model fits these images well; check "
        "the masks of the first fine-tuned model closely",
    )
    return Bunch(
        choice=candidates[best],
        table=table,
        images=used,
        pseudo_label_foreground=float(np.mean([p.mean() for p in pseudo])),
    )
