"""Figures of experiment records: mIoU against shots, and the selected patches on an image.

Figures use matplotlib's Agg canvas directly (no :mod:`matplotlib.pyplot` state) and are
written atomically (:func:`kwtl.utils._atomic.atomic_write`).
"""

from collections import Counter

import numpy as np

from ..utils._atomic import atomic_write
from ._tables import _summary_frame

__all__ = ["plot_miou_vs_shots", "plot_selection"]

#: Fixed colours so that a selector looks the same in every figure.
_SELECTOR_COLOURS = {
    "consistency": "tab:red",
    "entropy": "tab:blue",
    "mc_dropout": "tab:green",
    "random": "tab:gray",
}
_OTHER_COLOURS = ("tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
def _save_figure(fig, path):
    return atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=fig.dpi))


def _new_figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _selector_colour(selector, others):
    if selector in _SELECTOR_COLOURS:
        return _SELECTOR_COLOURS[selector]
    return _OTHER_COLOURS[others.index(selector) % len(_OTHER_COLOURS)]


def plot_miou_vs_shots(records, path, title=None):
    """Plot mIoU (%) against the number of shots, one line per selector, one panel per target.

    Error bars are the (``ddof=0``) std over repeats.

    Parameters
    ----------
    records : iterable of dict
        Result records (see :func:`load_results`).
    path : str or path-like
        PNG file to write (atomically).
    title : str, optional
        Figure title; default "mIoU vs shots".

    Returns
    -------
    path : pathlib.Path
    """
    summary = _summary_frame(records)  # in report order: target, selector, shots
    by_target = summary.groupby("target", sort=False)
    others = sorted(set(summary["selector"]) - set(_SELECTOR_COLOURS))
    n = max(by_target.ngroups, 1)
    fig = _new_figure((4.2 * n, 3.8))
    axes = fig.subplots(1, n, squeeze=False)[0]
    if summary.empty:
        axes[0].text(0.5, 0.5, "no results", ha="center", va="center", transform=axes[0].transAxes)
        axes[0].set_axis_off()
    for ax, (target, mine) in zip(axes, by_target):
        for selector, cells in mine.groupby("selector", sort=False):
            label = f"{selector} (the paper's)" if selector == "consistency" else selector
            ax.errorbar(
                cells["n_shots"].tolist(),
                cells["mean"].tolist(),
                yerr=cells["std"].tolist(),
                label=label,
                marker="o",
                capsize=3,
                color=_selector_colour(selector, others),
            )
        ax.set_xticks(sorted(set(mine["n_shots"].tolist())))
        ax.set_xlabel("shots (annotated images)")
        ax.set_ylabel("mIoU (%)")
        ax.set_title(target)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("mIoU vs shots (mean ± std over repeats)" if title is None else title)
    fig.tight_layout()
    return _save_figure(fig, path)


def _pair(value):
    arr = np.atleast_1d(np.asarray(value, dtype=int)).ravel()
    if arr.size == 1:
        return int(arr[0]), int(arr[0])
    if arr.size == 2:
        return int(arr[0]), int(arr[1])
    raise ValueError(f"patch_size must be an int or a (height, width) pair, got {value!r}")


def plot_selection(image, support, patch_size, path, title=None, max_patches=200, cmap="viridis"):
    """Draw the selected patches on an image, coloured by their selection score.

    Parameters
    ----------
    image : array-like of shape (H, W) or (H, W, C)
        Shown in grey (colour images are averaged over the channel axis).
    support : array-like of shape (n, 3)
        ``(row, col, score)`` of each selected patch's top-left corner within ``image``.
    patch_size : int or (int, int)
        Patch height and width.
    path : str or path-like
        PNG file to write (atomically).
    title : str, optional
    max_patches : int, default=200
        Draw at most this many patches, the highest-scoring first (ties keep input order).
    cmap : str, default="viridis"
        Colour map of the scores (a colour bar is added).

    Returns
    -------
    path : pathlib.Path
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    img = np.asarray(image, dtype=float)
    if img.ndim == 3 and img.shape[-1] in (1, 3, 4):
        img = img[..., :3].mean(axis=-1)
    if img.ndim != 2:
        raise ValueError(f"image must be 2-D (or H x W x C), got shape {np.shape(image)}")
    ph, pw = _pair(patch_size)
    rows = np.asarray(support, dtype=float).reshape(-1, 3) if np.size(support) else np.zeros((0, 3))
    n_total = len(rows)
    if max_patches is not None and n_total > max_patches:
        order = np.argsort(-rows[:, 2], kind="stable")[: int(max_patches)]
        rows = rows[np.sort(order)]
    h, w = img.shape
    fig = _new_figure((7.0, 7.0 * h / max(w, 1) + 0.6))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(img, cmap="gray", interpolation="nearest")
    if len(rows):
        scores = rows[:, 2]
        finite = scores[np.isfinite(scores)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        norm = Normalize(vmin=lo, vmax=hi)
        colours = colormaps[cmap]
        for r, c, s in rows:
            ax.add_patch(
                Rectangle(
                    (c - 0.5, r - 0.5),
                    pw,
                    ph,
                    fill=False,
                    linewidth=1.2,
                    edgecolor=colours(norm(s)) if np.isfinite(s) else "red",
                )
            )
        mappable = ScalarMappable(norm=norm, cmap=colours)
        mappable.set_array(finite)
        fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.04, label="selection score")
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_axis_off()
    shown = (
        f"{len(rows)} of {n_total} selected patches"
        if n_total > len(rows)
        else f"{n_total} selected patches"
    )
    ax.set_title(shown if title is None else f"{title}\n{shown}")
    fig.tight_layout()
    return _save_figure(fig, path)


def _selection_for(records, target, method):
    """The support of the first repeat of the largest-shot ``method`` run, restricted to the
    pool image with the most selected patches: ``(image_name, rows, patch_size, record)``."""
    runs = [
        r
        for r in records
        if r.get("target") == target and r.get("selector") == method and r.get("support")
    ]
    if not runs:
        return None
    top = max(int(r["n_shots"]) for r in runs)
    record = min((r for r in runs if int(r["n_shots"]) == top), key=lambda r: int(r["repeat"]))
    support = np.asarray(record["support"], dtype=float).reshape(-1, 4)
    counts = Counter(int(i) for i in support[:, 0])
    index = min(counts, key=lambda i: (-counts[i], i))
    pool = record.get("pool_images") or []
    name = pool[index] if 0 <= index < len(pool) else index
    return name, support[support[:, 0] == index][:, 1:], record.get("patch_size", 256), record
