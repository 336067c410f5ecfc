"""Reporting for the experiment runner: tables, significance tests, figures, ``report.md``.

The runner writes one JSON *record* per finished job into ``<out>/results/``::

    {"target": "EM", "selector": "consistency", "n_shots": 3, "repeat": 0, "miou": 0.62,
     "support": [[pool_image_index, row, col, score], ...], "pool_images": [...],
     "patch_size": 256, ...}

This module turns a folder of such records into the paper's Table 2 (mean ± std of the
mIoU over repeats, in %), the Table 5 one-sided Wilcoxon signed-rank tests, an mIoU-vs-shots
figure, a picture of the selected patches and a Markdown report.  ``"consistency"`` is the
paper's "Ours".  Every file is written atomically (temporary file in the same folder, then
:func:`os.replace`), so an interrupted report never leaves a half-written file behind.
Figures use matplotlib's Agg canvas directly (no :mod:`matplotlib.pyplot` state).
"""
import csv
import io
import json
import math
import os
import re
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from scipy import stats

from ._paper import PAPER_TABLE2, PAPER_TARGETS, paper_comparison_rows

__all__ = [
    "SELECTOR_ORDER",
    "format_markdown_table",
    "load_results",
    "plot_miou_vs_shots",
    "plot_selection",
    "selector_shots_table",
    "summary_table",
    "wilcoxon_table",
    "write_report",
]

#: Display order of the known selectors; others follow alphabetically.
SELECTOR_ORDER = ("consistency", "entropy", "mc_dropout", "random")

#: Fixed colours so that a selector looks the same in every figure.
_SELECTOR_COLOURS = {
    "consistency": "tab:red",
    "entropy": "tab:blue",
    "mc_dropout": "tab:green",
    "random": "tab:gray",
}
_OTHER_COLOURS = ("tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")

_REQUIRED_KEYS = ("target", "selector", "n_shots", "repeat", "miou")
_SUMMARY_COLUMNS = ("target", "selector", "n_shots", "mean", "std", "n_repeats")
_WILCOXON_COLUMNS = (
    "target", "n_shots", "method", "baseline", "n_pairs", "statistic", "p_value",
    "significant", "note",
)
_COMPARISON_COLUMNS = (
    "target", "selector", "n_shots", "kwtl_mean", "kwtl_std", "paper_mean", "paper_std",
    "difference",
)


# --------------------------------------------------------------------------------------------
# ordering and grouping helpers
# --------------------------------------------------------------------------------------------
def _selector_key(name):
    name = str(name)
    rank = SELECTOR_ORDER.index(name) if name in SELECTOR_ORDER else len(SELECTOR_ORDER)
    return (rank, name)


def _target_key(name):
    name = str(name)
    rank = PAPER_TARGETS.index(name) if name in PAPER_TARGETS else len(PAPER_TARGETS)
    return (rank, name)


def _check_record(record):
    """Raise ``ValueError`` unless ``record`` is a dict with the keys reporting needs."""
    if not isinstance(record, dict):
        raise ValueError(f"a result record must be a dict, got {type(record).__name__}")
    missing = [k for k in _REQUIRED_KEYS if k not in record]
    if missing:
        raise ValueError(f"result record lacks key(s) {missing}")


def _as_float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _group(records):
    """``{(target, selector, n_shots): {repeat: miou}}``; a repeated repeat keeps the last."""
    cells = {}
    for record in records:
        _check_record(record)
        key = (str(record["target"]), str(record["selector"]), int(record["n_shots"]))
        by_repeat = cells.setdefault(key, {})
        repeat = int(record["repeat"])
        if repeat in by_repeat:
            warnings.warn(
                f"duplicate result for {key} repeat {repeat}; keeping the later record",
                RuntimeWarning,
                stacklevel=3,
           )
        by_repeat[repeat] = _as_float(record["miou"])
    return cells


# --------------------------------------------------------------------------------------------
# loading and tables
# --------------------------------------------------------------------------------------------
def load_results(out_dir):
    """Read the runner's per-job records from ``<out_dir>/results/*.json``.

    Temporary files (any name containing ``.tmp``) are ignored.  A file that cannot be parsed,
    or that is not a record with ``target``, ``selector``, ``n_shots``, ``repeat`` and
    ``miou``, is skipped with a :class:`RuntimeWarning` naming it, so that a job that crashed
    mid-write cannot break reporting.

    Parameters
    ----------
    out_dir : str or path-like
        The runner's output folder (the one holding ``results/``).

    Returns
    -------
    records : list of dict
        Sorted by ``(target, selector, n_shots, repeat)``; empty when ``results/`` is missing.

    Examples
    --------
    >>> import tempfile
    >>> load_results(tempfile.mkdtemp())
    []
    """
    folder = Path(out_dir) / "results"
    if not folder.is_dir():
        return []
    records = []
    for path in sorted(folder.glob("*.json")):
        if ".tmp" in path.name or not path.is_file():
            continue
        try:
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
            _check_record(record)
            int(record["n_shots"]), int(record["repeat"])
        except (OSError, ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
            warnings.warn(f"skipping unreadable result file {path}: {exc}", RuntimeWarning,
                          stacklevel=2)
            continue
        records.append(record)
    records.sort(
        key=lambda r: (str(r["target"]), str(r["selector"]), int(r["n_shots"]), int(r["repeat"]))
   )
    return records


def summary_table(records):
    """Mean ± std of the mIoU over repeats, in %, per (target, selector, shots).

    The standard deviation is numpy's default population std (``ddof=0``), the summary the
    authors' code intends (; their 2020 code used ``ddof=1``, the paper does not say).

    Parameters
    ----------
    records : iterable of dict
        Result records (see :func:`load_results`).  If one repeat appears twice, the later
        record is kept (with a warning).

    Returns
    -------
    rows : list of dict
        Keys ``target, selector, n_shots, mean, std, n_repeats``; ordered by target (the
        paper's TNBC, EM, ssTEM, B39, B5 first, others alphabetically), selector
        (consistency, entropy, mc_dropout, random, others alphabetically), then shots.

    Examples
    --------
    >>> recs = [dict(target="EM", selector="random", n_shots=1, repeat=r, miou=m)
    ...         for r, m in enumerate([0.5, 0.7])]
    >>> row = summary_table(recs)[0]
    >>> round(row["mean"], 6), round(row["std"], 6), row["n_repeats"]
    (60.0, 10.0, 2)
    """
    cells = _group(records)
    rows = []
    for target, selector, shots in sorted(
        cells, key=lambda k: (_target_key(k[0]), _selector_key(k[1]), k[2])
   ):
        by_repeat = cells[(target, selector, shots)]
        values = 100.0 * np.array([by_repeat[r] for r in sorted(by_repeat)], dtype=float)
        rows.append(
            dict(
                target=target,
                selector=selector,
                n_shots=shots,
                mean=float(np.mean(values)),
                std=float(np.std(values, ddof=0)),
                n_repeats=int(values.size),
           )
       )
    return rows


def wilcoxon_table(records, method="consistency", alternative="greater", alpha=0.05):
    """One-sided Wilcoxon signed-rank tests of ``method`` against every other selector.

    For each target and shot count, the mIoU of ``method`` and of each baseline are paired
    by ``repeat`` (only repeats present for both) and compared with
    :func:`scipy.stats.wilcoxon` (default settings) — the paper's Table 5 (H1: Ours >
    baseline, α = 0.05).  Never raises on degenerate input: with fewer than two pairs, all
    differences zero, or a scipy error, ``statistic`` and ``p_value`` are NaN and ``note``
    says why.

    Parameters
    ----------
    records : iterable of dict
        Result records (see :func:`load_results`).
    method : str, default="consistency"
        The selector tested against the others.
    alternative : {"greater", "less", "two-sided"}, default="greater"
        Passed to :func:`scipy.stats.wilcoxon`; ``"greater"`` means method > baseline.
    alpha : float, default=0.05
        Significance level for the ``significant`` column.

    Returns
    -------
    rows : list of dict
        Keys ``target, n_shots, method, baseline, n_pairs, statistic, p_value,
        significant, note`` (``note`` is ``""`` when the test ran without remarks).

    Examples
    --------
    >>> recs = [dict(target="EM", selector=s, n_shots=1, repeat=r, miou=m)
    ...         for s, ms in [("consistency", [0.6, 0.7, 0.8]), ("random", [0.5, 0.6, 0.7])]
    ...         for r, m in enumerate(ms)]
    >>> row = wilcoxon_table(recs)[0]
    >>> row["baseline"], row["n_pairs"], row["p_value"], row["significant"]
    ('random', 3, 0.125, False)
    """
    cells = _group(records)
    rows = []
    keys = sorted(
        {(t, n) for t, s, n in cells if s == method}, key=lambda k: (_target_key(k[0]), k[1])
   )
    for target, shots in keys:
        ours = cells[(target, method, shots)]
        baselines = sorted(
            {s for t, s, n in cells if t == target and n == shots and s != method},
            key=_selector_key,
       )
        for baseline in baselines:
            theirs = cells[(target, baseline, shots)]
            common = sorted(
                r for r in set(ours) & set(theirs)
                if math.isfinite(ours[r]) and math.isfinite(theirs[r])
           )
            x = np.array([ours[r] for r in common], dtype=float)
            y = np.array([theirs[r] for r in common], dtype=float)
            statistic = p_value = math.nan
            if len(common) < 2:
                note = f"only {len(common)} paired repeat(s); the test needs at least 2"
            elif np.all(x == y):
                note = "all paired differences are zero; the test is undefined"
            else:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    try:
                        result = stats.wilcoxon(x, y, alternative=alternative)
                        statistic, p_value = float(result.statistic), float(result.pvalue)
                        note = ""
                    except (ValueError, TypeError) as exc:
                        note = f"scipy.stats.wilcoxon failed: {exc}"
                remarks = sorted({str(w.message) for w in caught})
                if remarks:
                    note = "; ".join(([note] if note else []) + remarks)
            rows.append(
                dict(
                    target=target,
                    n_shots=shots,
                    method=method,
                    baseline=baseline,
                    n_pairs=len(common),
                    statistic=statistic,
                    p_value=p_value,
                    significant=bool(math.isfinite(p_value) and p_value < alpha),
                    note=note,
               )
           )
    return rows


def _format_value(value, fmt):
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "NaN"
        return format(value, fmt) if fmt else repr(value)
    return str(value)


def format_markdown_table(rows, columns, headers=None, floatfmt=".3g"):
    """Render dict rows as a padded Markdown (pipe) table, readable as plain text too.

    Parameters
    ----------
    rows : iterable of dict
        Missing keys render as empty cells.
    columns : sequence of str
        Keys to show, in order.
    headers : sequence of str, optional
        Column titles; defaults to ``columns``.
    floatfmt : str or dict, default=".3g"
        :func:`format` spec for floats, or ``{column: spec}`` (columns not named use
        ``".3g"``).  NaN renders as ``NaN``, booleans as ``yes``/``no``, ``None`` as empty.

    Returns
    -------
    table : str
        Header, separator and one line per row, ending in a newline.

    Examples
    --------
    >>> print(format_markdown_table([dict(a="x", b=0.5)], ["a", "b"]), end="")
    | a   | b   |
    |-----|-----|
    | x   | 0.5 |
    """
    columns = list(columns)
    headers = list(columns if headers is None else headers)
    if len(headers) != len(columns):
        raise ValueError(f"{len(headers)} headers for {len(columns)} columns")
    fmts = floatfmt if isinstance(floatfmt, dict) else {}
    default = ".3g" if isinstance(floatfmt, dict) else floatfmt
    body = [
        [
            _format_value(row.get(c), fmts.get(c, default)).replace("|", "\\|").replace("\n", " ")
            for c in columns
        ]
        for row in rows
    ]
    head = [str(h).replace("|", "\\|") for h in headers]
    widths = [max([len(head[j]), 3] + [len(line[j]) for line in body]) for j in range(len(head))]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(cells) for cells in body]
    return "\n".join(out) + "\n"


def _selector_shots_rows(summary_rows):
    """Pivot summary rows: ``(columns, rows)`` with one ``"<n>-shot"`` column per shot value."""
    shots = sorted({r["n_shots"] for r in summary_rows})
    shot_cols = [f"{n}-shot" for n in shots]
    pivot = {}
    for r in summary_rows:
        row = pivot.setdefault((r["target"], r["selector"]),
                               dict(target=r["target"], selector=r["selector"]))
        row[f"{r['n_shots']}-shot"] = f"{r['mean']:.1f} ± {r['std']:.1f}"
    rows = [pivot[k] for k in sorted(pivot, key=lambda k: (_target_key(k[0]), _selector_key(k[1])))]
    for row in rows:
        for c in shot_cols:
            row.setdefault(c, "-")
    return ["target", "selector"] + shot_cols, rows


def selector_shots_table(records, target=None):
    """The paper's Table 2 layout: "mean ± std" mIoU (%) per (target, selector) and shots.

    Parameters
    ----------
    records : iterable of dict
        Result records (see :func:`load_results`).
    target : str, optional
        Only this target; default all.

    Returns
    -------
    table : str
        Markdown table with columns ``target, selector, <n>-shot ...`` (one per shot value
        present), cells ``"62.0 ± 3.2"`` (one decimal, ``ddof=0`` std) or ``-`` when missing.

    Examples
    --------
    >>> recs = [dict(target="EM", selector="random", n_shots=1, repeat=r, miou=m)
    ...         for r, m in enumerate([0.5, 0.7])]
    >>> print(selector_shots_table(recs), end="")
    | target | selector | 1-shot      |
    |--------|----------|-------------|
    | EM     | random   | 60.0 ± 10.0 |
    """
    rows = summary_table(records)
    if target is not None:
        rows = [r for r in rows if r["target"] == target]
    columns, table_rows = _selector_shots_rows(rows)
    return format_markdown_table(table_rows, columns)


# --------------------------------------------------------------------------------------------
# atomic writing
# --------------------------------------------------------------------------------------------
def _atomic_write(path, write):
    """Call ``write(binary_file)`` on a temporary file beside ``path``, then rename it over."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def _atomic_write_text(path, text):
    return _atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _csv_text(rows, columns):
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return buf.getvalue()


def _jsonable(value):
    """Recursively turn numpy scalars/arrays, paths and NaN into strict-JSON values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str):
        return value
    return str(value)


def _save_figure(fig, path):
    return _atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=fig.dpi))


def _new_figure(figsize):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
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
    rows = summary_table(records)
    targets = sorted({r["target"] for r in rows}, key=_target_key)
    others = sorted({r["selector"] for r in rows if r["selector"] not in _SELECTOR_COLOURS})
    n = max(len(targets), 1)
    fig = _new_figure((4.2 * n, 3.8))
    axes = fig.subplots(1, n, squeeze=False)[0]
    if not targets:
        axes[0].text(0.5, 0.5, "no results", ha="center", va="center",
                     transform=axes[0].transAxes)
        axes[0].set_axis_off()
    for ax, target in zip(axes, targets):
        mine = [r for r in rows if r["target"] == target]
        for selector in sorted({r["selector"] for r in mine}, key=_selector_key):
            cells = sorted((r for r in mine if r["selector"] == selector),
                           key=lambda r: r["n_shots"])
            label = f"{selector} (ours)" if selector == "consistency" else selector
            ax.errorbar(
                [r["n_shots"] for r in cells], [r["mean"] for r in cells],
                yerr=[r["std"] for r in cells], label=label, marker="o", capsize=3,
                color=_selector_colour(selector, others),
           )
        shots = sorted({r["n_shots"] for r in mine})
        ax.set_xticks(shots)
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


def plot_selection(image, support, patch_size, path, title=None, max_patches=200,
                   cmap="viridis"):
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
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), pw, ph, fill=False, linewidth=1.2,
                                   edgecolor=colours(norm(s)) if np.isfinite(s) else "red"))
        mappable = ScalarMappable(norm=norm, cmap=colours)
        mappable.set_array(finite)
        fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.04, label="selection score")
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_axis_off()
    shown = f"{len(rows)} of {n_total} selected patches" if n_total > len(rows) else \
        f"{n_total} selected patches"
    ax.set_title(shown if title is None else f"{title}\n{shown}")
    fig.tight_layout()
    return _save_figure(fig, path)


def _safe_name(name):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)) or "target"


def _selection_for(records, target, method):
    """The support of the first repeat of the largest-shot ``method`` run, restricted to the
    pool image with the most selected patches: ``(image_name, rows, patch_size, record)``."""
    runs = [r for r in records if r.get("target") == target and r.get("selector") == method
            and r.get("support")]
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


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def write_report(out_dir, records=None, images=None, metadata=None, paper_table=None,
                 method="consistency"):
    """Write tables, figures and ``report.md`` for a runner output folder.

    Files written (each atomically) into ``out_dir``:

    * ``results.csv`` — :func:`summary_table` (mean/std in %, ``ddof=0``);
    * ``results.json`` — ``{"metadata", "n_records", "summary", "wilcoxon"}`` (NaN → null);
    * ``wilcoxon.csv`` — :func:`wilcoxon_table` of ``method`` vs every other selector;
    * ``miou_vs_shots.png`` — :func:`plot_miou_vs_shots`;
    * ``selection_<target>.png`` — only with ``images``: for the first repeat of the
      largest-shot ``method`` run, the patches selected on the pool image that received the
      most of them (:func:`plot_selection`);
    * ``paper_comparison.csv`` — only with ``paper_table``;
    * ``report.md`` — metadata list, selector × shots table per target, Wilcoxon table,
      figure links and, with ``paper_table``, a "kwtl vs paper (Table 2)" section.

    Parameters
    ----------
    out_dir : str or path-like
        The runner's output folder; created if needed.
    records : list of dict, optional
        Result records; default :func:`load_results` of ``out_dir``.
    images : dict, optional
        ``{target: {pool_image_name: 2-D array}}`` for the selection pictures.  Targets or
        images that are missing are skipped with a warning.
    metadata : dict, optional
        Anything worth recording (command, machine, wall time, profile, ...), listed in
        insertion order.
    paper_table : dict or True, optional
        ``{target: {selector: {n_shots: (mean, std)}}}`` to compare against, e.g.
        :data:`kwtl.experiments._paper.PAPER_TABLE2` (``True`` means that table).
    method : str, default="consistency"
        The selector tested against the others and shown in the selection pictures.

    Returns
    -------
    paths : dict
        ``{"results_csv", "results_json", "wilcoxon_csv", "miou_vs_shots", "report",
        "selection_<target>"..., "paper_comparison"?}`` → :class:`pathlib.Path`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if records is None:
        records = load_results(out)
    records = list(records)
    metadata = dict(metadata or {})
    if paper_table is True:
        paper_table = PAPER_TABLE2
    summary = summary_table(records)
    tests = wilcoxon_table(records, method=method)
    paths = {}

    paths["results_csv"] = _atomic_write_text(out / "results.csv",
                                              _csv_text(summary, _SUMMARY_COLUMNS))
    payload = dict(metadata=metadata, n_records=len(records), summary=summary, wilcoxon=tests)
    paths["results_json"] = _atomic_write_text(
        out / "results.json", json.dumps(_jsonable(payload), indent=2, allow_nan=False) + "\n"
   )
    paths["wilcoxon_csv"] = _atomic_write_text(out / "wilcoxon.csv",
                                               _csv_text(tests, _WILCOXON_COLUMNS))
    paths["miou_vs_shots"] = plot_miou_vs_shots(records, out / "miou_vs_shots.png")

    selections = []
    for target in sorted(images or {}, key=_target_key):
        found = _selection_for(records, target, method)
        if found is None:
            warnings.warn(f"no {method!r} run with a support set for target {target!r}; "
                          "no selection picture", RuntimeWarning, stacklevel=2)
            continue
        name, rows, patch_size, record = found
        image = images[target].get(name) if isinstance(images[target], dict) else None
        if image is None:
            warnings.warn(f"pool image {name!r} of target {target!r} not given; "
                          "no selection picture", RuntimeWarning, stacklevel=2)
            continue
        key = f"selection_{_safe_name(target)}"
        title = (f"{target}: {method}, {record['n_shots']}-shot, repeat {record['repeat']}, "
                 f"image {name}")
        paths[key] = plot_selection(image, rows, patch_size, out / f"{key}.png", title=title)
        selections.append((target, name, paths[key].name))

    comparison = None
    if paper_table is not None:
        comparison = paper_comparison_rows(summary, paper_table)
        paths["paper_comparison"] = _atomic_write_text(
            out / "paper_comparison.csv", _csv_text(comparison, _COMPARISON_COLUMNS)
       )

    md = _markdown_report(records, summary, tests, metadata, method, selections, comparison)
    paths["report"] = _atomic_write_text(out / "report.md", md)
    return paths


def _markdown_report(records, summary, tests, metadata, method, selections, comparison):
    lines = ["# kwtl report", ""]
    lines += ["## Run", ""]
    for key, value in metadata.items():
        if isinstance(value, (dict, list, tuple)):
            shown = "`" + json.dumps(_jsonable(value), allow_nan=False) + "`"
        else:
            shown = _format_value(value, ".6g")
        lines.append(f"- **{key}**: {shown}")
    lines.append(f"- **result records**: {len(records)}")
    lines.append("")

    lines += ["## mIoU (%) per selector and shots", "",
              "Mean ± std over repeats (numpy std, ddof = 0), in %. "
              f"`{method}` is the paper's \"Ours\".", ""]
    targets = sorted({r["target"] for r in summary}, key=_target_key)
    if not targets:
        lines += ["No results.", ""]
    for target in targets:
        columns, rows = _selector_shots_rows([r for r in summary if r["target"] == target])
        lines += [f"### {target}", "", format_markdown_table(rows, columns)]

    lines += ["## Wilcoxon signed-rank tests", "",
              f"One-sided (H1: `{method}` > baseline), paired by repeat, α = 0.05 "
              "(the paper's Table 5).", ""]
    if tests:
        lines.append(format_markdown_table(
            tests,
            ["target", "n_shots", "baseline", "n_pairs", "statistic", "p_value", "significant",
             "note"],
            headers=["target", "shots", "baseline", "pairs", "W", "p", "p < 0.05", "note"],
            floatfmt={"statistic": ".1f", "p_value": ".4g"},
       ))
        n_sig = sum(r["significant"] for r in tests)
        lines += [f"Significant in {n_sig} of {len(tests)} comparisons.", ""]
    else:
        lines += ["No pairs to test.", ""]

    lines += ["## Figures", "", "![mIoU vs shots](miou_vs_shots.png)", ""]
    for target, name, file in selections:
        lines += [f"![{target}: patches selected on {name}]({file})", ""]

    if comparison is not None:
        lines += ["## kwtl vs paper (Table 2)", "",
                  "Paper: Table 2 (TNBC, EM, ssTEM) and supplement Tab. 11 (B39, B5); "
                  "difference = kwtl − paper, percentage points.", ""]
        if comparison:
            rows = [dict(target=r["target"], selector=r["selector"], n_shots=r["n_shots"],
                         kwtl=f"{r['kwtl_mean']:.1f} ± {r['kwtl_std']:.1f}",
                         paper=f"{r['paper_mean']:.1f} ± {r['paper_std']:.1f}",
                         # + 0.0 turns a rounded -0.0 into 0.0
                         difference=round(r["difference"], 1) + 0.0)
                    for r in comparison]
            lines.append(format_markdown_table(
                rows, ["target", "selector", "n_shots", "kwtl", "paper", "difference"],
                headers=["target", "selector", "shots", "kwtl", "paper", "difference"],
                floatfmt={"difference": "+.1f"},
           ))
        else:
            lines += ["No cell in common with the paper's table.", ""]
    return "\n".join(lines).rstrip("\n") + "\n"
