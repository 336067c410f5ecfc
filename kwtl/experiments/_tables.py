"""Tables and statistics of experiment records: loading, the paper's Table 2 layout
(mean ± std mIoU over repeats, in %), Table 5's one-sided Wilcoxon signed-rank tests, and
Markdown formatting. Selectors are ordered as :data:`kwtl.selection.SELECTORS` lists them.

Records are grouped and pivoted with pandas, tested with :func:`scipy.stats.wilcoxon` and
laid out with :mod:`tabulate`.
"""

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from tabulate import tabulate

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
    "target",
    "n_shots",
    "method",
    "baseline",
    "n_pairs",
    "statistic",
    "p_value",
    "significant",
    "note",
)
_COMPARISON_COLUMNS = (
    "target",
    "selector",
    "n_shots",
    "kwtl_mean",
    "kwtl_std",
    "paper_mean",
    "paper_std",
    "difference",
)


# --------------------------------------------------------------------------------------------
# ordering and the records' frame
# --------------------------------------------------------------------------------------------
_KEY = ["target", "selector", "n_shots"]


def _names_in_order(order):
    """A sort key: the names of ``order`` first, in that order, then the others alphabetically."""

    def key(name):
        name = str(name)
        return (order.index(name) if name in order else len(order), name)

    return key


_selector_key = _names_in_order(SELECTOR_ORDER)
_target_key = _names_in_order(PAPER_TARGETS)


def _report_order(column):
    """``sort_values`` key: targets in the paper's order, selectors in the registry's."""
    key = {"target": _target_key, "selector": _selector_key}.get(column.name)
    if key is None:
        return column
    ranked = sorted(column.unique(), key=key)
    return column.map({name: position for position, name in enumerate(ranked)})


def _in_report_order(frame, by):
    return frame.sort_values(list(by), key=_report_order, kind="stable", ignore_index=True)


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


def _frame(records):
    """The records as a frame ``target, selector, n_shots, repeat, miou``, sorted by repeat
    within each cell; a repeat given twice keeps the later record (with a warning)."""
    rows = []
    for record in records:
        _check_record(record)
        rows.append(
            (
                str(record["target"]),
                str(record["selector"]),
                int(record["n_shots"]),
                int(record["repeat"]),
                _as_float(record["miou"]),
            )
        )
    frame = pd.DataFrame(rows, columns=[*_KEY, "repeat", "miou"]).astype(
        {
            "target": object,
            "selector": object,
            "n_shots": "int64",
            "repeat": "int64",
            "miou": "float64",
        }
    )
    repeated = frame.duplicated([*_KEY, "repeat"], keep="last")
    for target, selector, shots, repeat in frame.loc[repeated, [*_KEY, "repeat"]].itertuples(
        index=False
    ):
        warnings.warn(
            f"duplicate result for {(target, selector, int(shots))} repeat {int(repeat)}; "
            "keeping the later record",
            RuntimeWarning,
            stacklevel=3,
        )
    return frame[~repeated].sort_values("repeat", kind="stable", ignore_index=True)


def _summary_frame(records):
    """:func:`summary_table` as a frame, in report order."""
    frame = _frame(records)
    if frame.empty:
        return pd.DataFrame(columns=list(_SUMMARY_COLUMNS))
    percent = frame.assign(miou=100.0 * frame["miou"]).groupby(_KEY, sort=False)["miou"]
    # numpy's reductions (not pandas' compensated sums), so that every committed report's
    # numbers reproduce to the last bit
    summary = percent.agg(
        mean=lambda v: float(np.mean(v.to_numpy())),
        std=lambda v: float(np.std(v.to_numpy(), ddof=0)),
        n_repeats="size",
    ).reset_index()
    return _in_report_order(summary, _KEY)[list(_SUMMARY_COLUMNS)]


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
            warnings.warn(
                f"skipping unreadable result file {path}: {exc}", RuntimeWarning, stacklevel=2
            )
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
    return _summary_frame(records).to_dict("records")


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
    frame = _frame(records)
    rows = []
    cells = _in_report_order(frame, ["target", "n_shots"]).groupby(
        ["target", "n_shots"], sort=False
    )
    for (target, shots), cell in cells:
        # one column per selector present in this cell, one row per repeat (ascending)
        by_repeat = cell.pivot(index="repeat", columns="selector", values="miou")
        if method not in by_repeat.columns:
            continue
        for baseline in sorted(set(by_repeat.columns) - {method}, key=_selector_key):
            pairs = by_repeat[[method, baseline]]
            pairs = pairs[np.isfinite(pairs.to_numpy()).all(axis=1)]
            x, y = pairs[method].to_numpy(), pairs[baseline].to_numpy()
            statistic = p_value = math.nan
            if len(pairs) < 2:
                note = f"only {len(pairs)} paired repeat(s); the test needs at least 2"
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
                    target=str(target),
                    n_shots=int(shots),
                    method=method,
                    baseline=str(baseline),
                    n_pairs=len(pairs),
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

    The cells are formatted here; :func:`tabulate.tabulate` (``"github"`` format) lays them
    out.

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
    # cells are formatted above, so tabulate only lays them out (no number parsing)
    return (
        tabulate(body, headers=head, tablefmt="github", disable_numparse=True, stralign="left")
        + "\n"
    )


def _selector_shots_rows(summary_rows):
    """Pivot summary rows: ``(columns, rows)`` with one ``"<n>-shot"`` column per shot value."""
    summary = pd.DataFrame(list(summary_rows), columns=list(_SUMMARY_COLUMNS))
    if summary.empty:
        return ["target", "selector"], []
    summary["cell"] = [f"{m:.1f} ± {s:.1f}" for m, s in zip(summary["mean"], summary["std"])]
    wide = summary.pivot(index=["target", "selector"], columns="n_shots", values="cell")
    wide = wide.rename(columns=lambda n: f"{n}-shot").astype(object).fillna("-")
    wide = _in_report_order(wide.reset_index(), ["target", "selector"])
    return list(wide.columns), wide.to_dict("records")


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
    | target   | selector   | 1-shot      |
    |----------|------------|-------------|
    | EM       | random     | 60.0 ± 10.0 |
    """
    rows = summary_table(records)
    if target is not None:
        rows = [r for r in rows if r["target"] == target]
    columns, table_rows = _selector_shots_rows(rows)
    return format_markdown_table(table_rows, columns)
