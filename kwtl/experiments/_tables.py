"""Tables and statistics of experiment records: loading, the paper's Table 2 layout
(mean ± std mIoU over repeats, in %), Table 5's one-sided Wilcoxon signed-rank tests, and
Markdown formatting. Selectors are ordered as :data:`kwtl.selection.SELECTORS` lists them.
"""
import json
import math
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

from ..selection._registry import SELECTORS
from ._paper import PAPER_TARGETS

__all__ = [
    "SELECTOR_ORDER",
    "format_markdown_table",
    "load_results",
    "selector_shots_table",
    "summary_table",
    "wilcoxon_table",
]

#: Display order of the known selectors; others follow alphabetically.
SELECTOR_ORDER = tuple(SELECTORS)

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
    # hand-written: tabulate's "github" format pads header cells by two more characters,
    # which would change the layout of every committed report.md and results table
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


