"""``evaluate``: how good are the predicted masks, on the few images a lab labelled itself."""

import json
from pathlib import Path

from sklearn.utils import Bunch

from ..datasets import IMAGE_EXTENSIONS, MASK_EXTENSIONS, MASK_SUFFIX, read_mask
from ..metrics import iou_score
from ..metrics._instances import match_instances
from ..utils import as_mask
from ..utils._atomic import atomic_write_text
from ..utils._inputs import check_out_apart

__all__ = ["evaluate", "format_table"]

#: Files ``kwtl predict`` writes beside the masks (not masks): skipped in a plain folder.
_PREDICT_EXTRAS = ("_overlay", "_prob")
_INSTANCE_COLUMNS = ("true_objects", "found_objects", "matched", "precision", "recall", "f1")


def _mask_files(folder, suffix, what, skip=()):
    """``{name: path}`` of the mask files of a folder (names without ``suffix``)."""
    files, lossy = {}, []
    for path in sorted(Path(folder).iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        ext = path.suffix.lower()
        if ext not in IMAGE_EXTENSIONS:
            continue
        stem = path.stem
        if any(stem.endswith(extra) for extra in skip):
            continue
        if suffix:
            if not stem.endswith(suffix):
                continue
            stem = stem[: -len(suffix)]
        if ext not in MASK_EXTENSIONS:
            lossy.append(path.name)
            continue
        if stem in files:
            raise ValueError(
                f"{what} {folder} has two masks named {stem!r}: {files[stem].name} and {path.name}"
            )
        files[stem] = path
    if lossy and not files:
        raise ValueError(
            f"{what} {folder} holds only JPEG masks ({lossy[0]} ...): JPEG is "
            "lossy and changes the values at the cells' edges; save the masks "
            "as PNG or TIFF"
        )
    return files


def _predicted(folder, suffix):
    """The masks of a ``kwtl predict`` folder (its record names them) or of any folder."""
    folder = Path(folder)
    record_file = folder / "predict.json"
    if record_file.is_file():
        record = json.loads(record_file.read_text())
        where = folder / record.get("masks_folder", ".")
        own = record.get("suffix", "")
        files = {
            name: where / f"{name}{own}.{record.get('format', 'png')}"
            for name in record.get("done", {})
        }
        return {n: p for n, p in files.items() if p.is_file()}
    return _mask_files(folder, suffix, "MASKS", skip=_PREDICT_EXTRAS)


def _truth(folder):
    """The true masks: ``DIR/masks/``, else Cellpose ``x_masks.*`` files, else every file."""
    folder = Path(folder)
    if (folder / "masks").is_dir():
        return _mask_files(folder / "masks", "", "--truth")
    if any(p.stem.endswith(MASK_SUFFIX) for p in folder.iterdir() if p.is_file()):
        return _mask_files(folder, MASK_SUFFIX, "--truth")
    return _mask_files(folder, "", "--truth")


def evaluate(
    masks, truth, *, instances=False, out=None, mask_suffix="", overwrite=False, iou_threshold=0.5
):
    """Score predicted masks against a lab's own true masks: per image and overall.

    Pairs files by name: ``MASKS/a.png`` (or the masks a ``kwtl predict`` folder records,
    with its ``--suffix``) with the true mask ``a`` in ``truth`` (``truth/masks/a.png`` when
    ``truth`` is an annotated folder, ``truth/a_masks.tif`` for Cellpose pairs, else
    ``truth/a.png``; PNG or TIFF). Every true mask needs its prediction; predictions without
    a true mask are not scored (their number is reported). Foreground follows kwtl's mask
    rule (:func:`kwtl.utils.as_mask`: non-zero, touching instances kept apart), the same
    rule as for training.

    Parameters
    ----------
    masks : str or path-like
        The predicted masks (``kwtl predict``'s ``--out`` or any folder of masks).
    truth : str or path-like
        The true masks.
    instances : bool, default=False
        Also match objects one to one at IoU > ``iou_threshold``
        (:func:`kwtl.metrics._instances.match_instances`; binary masks are split into
        8-connected components): true / found / matched objects, precision, recall, F1.
    out : str, path-like or None, default=None
        A CSV file to write (refused inside or over an input; an existing file is kept unless
        ``overwrite``).
    mask_suffix : str, default=""
        Stem suffix of the predicted masks in a plain folder (``"_masks"``).
    overwrite : bool, default=False
    iou_threshold : float, default=0.5

    Returns
    -------
    result : sklearn.utils.Bunch
        ``table`` (DataFrame, one row per image and a last row ``all``: the mean IoU over
        images — the paper's mIoU — and, with ``instances``, the summed object counts and
        the precision, recall and F1 of those sums), ``mean_iou``, ``unscored`` (names of
        predictions without a true mask), ``path`` (the CSV or None).

    Raises
    ------
    ValueError
        No true mask, true masks without a prediction, or masks of different sizes (listed).

    Examples
    --------
    >>> import tempfile, os
    >>> import numpy as np
    >>> from kwtl.datasets import write_mask
    >>> tmp = tempfile.mkdtemp()
    >>> _ = write_mask(os.path.join(tmp, "pred", "a.png"), np.eye(4, dtype=bool))
    >>> _ = write_mask(os.path.join(tmp, "truth", "a.png"), np.eye(4, dtype=bool))
    >>> evaluate(os.path.join(tmp, "pred"), os.path.join(tmp, "truth")).mean_iou
    1.0
    """
    import pandas as pd

    for what, folder in (("MASKS", masks), ("--truth", truth)):
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"{what} {folder}: no such folder")
    if out is not None:
        check_out_apart(out, [("the predicted masks", masks), ("the true masks", truth)])
        if Path(out).is_dir():
            raise ValueError(f"out={out} is a folder; give a CSV file name such as scores.csv")
        if Path(out).exists() and not overwrite:
            raise FileExistsError(
                f"{out} exists; choose another out, or pass overwrite=True to replace it"
            )
    predicted, true = _predicted(masks, mask_suffix), _truth(truth)
    if not true:
        raise ValueError(f"--truth {truth} holds no PNG or TIFF mask")
    missing = sorted(set(true) - set(predicted))
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise ValueError(
            f"{len(missing)} of {len(true)} true masks have no predicted mask "
            f"in {masks}: {shown} (names must match; --suffix for predicted "
            "names like a_masks.png)"
        )
    rows, mismatched = [], []
    for name in sorted(true):
        t_labels, p_labels = read_mask(true[name]), read_mask(predicted[name])
        if t_labels.shape != p_labels.shape:
            mismatched.append(
                f"{name} ({p_labels.shape[0]}x{p_labels.shape[1]} predicted, "
                f"{t_labels.shape[0]}x{t_labels.shape[1]} true)"
            )
            continue
        row = {
            "image": name,
            "iou": iou_score(
                as_mask(t_labels, name=str(true[name])),
                as_mask(p_labels, name=str(predicted[name])),
            ),
        }
        if instances:
            row.update(match_instances(t_labels, p_labels, iou_threshold))
        rows.append(row)
    if mismatched:
        raise ValueError(
            f"{len(mismatched)} masks differ in size from their true masks: "
            + "; ".join(mismatched[:3])
        )
    columns = ["image", "iou"] + (list(_INSTANCE_COLUMNS) if instances else [])
    table = pd.DataFrame(rows, columns=columns)
    total = {"image": "all", "iou": float(table["iou"].mean())}
    if instances:
        n_t, n_p, tp = (int(table[c].sum()) for c in ("true_objects", "found_objects", "matched"))
        total.update(
            {
                "true_objects": n_t,
                "found_objects": n_p,
                "matched": tp,
                "precision": tp / n_p if n_p else float(n_t == 0),
                "recall": tp / n_t if n_t else float(n_p == 0),
                "f1": 2 * tp / (n_t + n_p) if n_t + n_p else 1.0,
            }
        )
    table = pd.concat([table, pd.DataFrame([total], columns=columns)], ignore_index=True)
    if out is not None:
        atomic_write_text(out, table.to_csv(index=False, float_format="%.4f"))
    unscored = sorted(set(predicted) - set(true))
    return Bunch(
        table=table,
        mean_iou=total["iou"],
        unscored=unscored,
        path=None if out is None else Path(out),
    )


def format_table(table):
    """The evaluation table as aligned text for the console (IoU and F1 in %)."""
    shown = table.copy()
    for column in ("iou", "precision", "recall", "f1"):
        if column in shown:
            shown[column] = [f"{100 * v:.1f}" for v in shown[column]]
    shown = shown.rename(
        columns={"iou": "IoU %", "precision": "precision %", "recall": "recall %", "f1": "F1 %"}
    )
    return shown.to_string(index=False)
