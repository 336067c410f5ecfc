"""The experiment report: CSV/JSON tables, figures and ``report.md`` for a runner folder.

The runner writes one JSON *record* per finished job into ``<out>/results/``::

    {"target": "EM", "selector": "consistency", "n_shots": 3, "repeat": 0, "miou": 0.62,
     "support": [[pool_image_index, row, col, score], ...], "pool_images": [...],
     "patch_size": 256, ...}

:func:`write_report` turns a folder of such records into the tables of :mod:`._tables`,
the figures of :mod:`._figures` and a Markdown report. ``"consistency"`` is the paper's
method (its tables' "Ours"); every selector is tested against random and the report ends
with the recommendation the table supports (:mod:`._recommend`). Every file is written atomically (:func:`kwtl.utils._atomic.atomic_write`), so an
interrupted report never leaves a half-written file behind.
"""

import csv
import io
import json
import math
import warnings
from pathlib import Path

import numpy as np

from ..utils._atomic import atomic_write_text as _atomic_write_text
from ._figures import _selection_for, plot_miou_vs_shots, plot_selection
from ._files import safe_name
from ._paper import PAPER_TABLE2, paper_comparison_rows
from ._recommend import (
    BASELINE,
    compare_with_random,
    default_selector_note,
    recommendation,
    selector_kind,
)
from ._tables import (
    _COMPARISON_COLUMNS,
    _SUMMARY_COLUMNS,
    _WILCOXON_COLUMNS,
    _format_value,
    _selector_shots_rows,
    _target_key,
    format_markdown_table,
    load_results,
    summary_table,
)

__all__ = ["write_report"]


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


# --------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------
def write_report(
    out_dir, records=None, images=None, metadata=None, paper_table=None, method="consistency"
):
    """Write tables, figures and ``report.md`` for a runner output folder.

    Files written (each atomically) into ``out_dir``:

    * ``results.csv`` — :func:`summary_table` (mean/std in %, ``ddof=0``);
    * ``results.json`` — ``{"metadata", "n_records", "summary", "wilcoxon"}`` (NaN → null);
    * ``wilcoxon.csv`` — every selector against random
      (:func:`~kwtl.experiments._recommend.compare_with_random`);
    * ``miou_vs_shots.png`` — :func:`plot_miou_vs_shots`;
    * ``selection_<target>.png`` — only with ``images``: for the first repeat of the
      largest-shot ``method`` run, the patches selected on the pool image that received the
      most of them (:func:`plot_selection`);
    * ``paper_comparison.csv`` — only with ``paper_table``;
    * ``report.md`` — metadata list, selector × shots table per target (each selector
      named as the paper's method, a paper baseline or label-free beyond the paper), the
      tests of every selector against random, figure links, with ``paper_table`` a "kwtl
      vs paper (Table 2)" section, and last the recommendation the table supports
      (:func:`~kwtl.experiments._recommend.recommendation`).

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
        The selector shown in the selection pictures.

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
    tests = compare_with_random(records)
    paths = {}

    paths["results_csv"] = _atomic_write_text(
        out / "results.csv", _csv_text(summary, _SUMMARY_COLUMNS)
    )
    payload = dict(metadata=metadata, n_records=len(records), summary=summary, wilcoxon=tests)
    paths["results_json"] = _atomic_write_text(
        out / "results.json", json.dumps(_jsonable(payload), indent=2, allow_nan=False) + "\n"
    )
    paths["wilcoxon_csv"] = _atomic_write_text(
        out / "wilcoxon.csv", _csv_text(tests, _WILCOXON_COLUMNS)
    )
    paths["miou_vs_shots"] = plot_miou_vs_shots(records, out / "miou_vs_shots.png")

    selections = []
    for target in sorted(images or {}, key=_target_key):
        found = _selection_for(records, target, method)
        if found is None:
            warnings.warn(
                f"no {method!r} run with a support set for target {target!r}; no selection picture",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        name, rows, patch_size, record = found
        image = images[target].get(name) if isinstance(images[target], dict) else None
        if image is None:
            warnings.warn(
                f"pool image {name!r} of target {target!r} not given; no selection picture",
                RuntimeWarning,
                stacklevel=2,
            )
            continue
        key = f"selection_{safe_name(target)}"
        title = (
            f"{target}: {method}, {record['n_shots']}-shot, repeat {record['repeat']}, image {name}"
        )
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

    selectors = sorted({r["selector"] for r in summary})
    kinds = [f"`{s}` ({selector_kind(s)})" for s in selectors if selector_kind(s)]
    lines += [
        "## mIoU (%) per selector and shots",
        "",
        "Mean ± std over repeats (numpy std, ddof = 0), in %. "
        + (f"Selectors: {', '.join(kinds)}." if kinds else ""),
        "",
    ]
    targets = sorted({r["target"] for r in summary}, key=_target_key)
    if not targets:
        lines += ["No results.", ""]
    for target in targets:
        columns, rows = _selector_shots_rows([r for r in summary if r["target"] == target])
        lines += [f"### {target}", "", format_markdown_table(rows, columns)]

    lines += [
        "## Wilcoxon signed-rank tests: every selector against random",
        "",
        f"One-sided (H1: selector > `{BASELINE}`), paired by repeat, α = 0.05 "
        "(the test of the paper's Table 5).",
        "",
    ]
    if tests:
        lines.append(
            format_markdown_table(
                tests,
                [
                    "target",
                    "n_shots",
                    "method",
                    "n_pairs",
                    "statistic",
                    "p_value",
                    "significant",
                    "note",
                ],
                headers=["target", "shots", "selector", "pairs", "W", "p", "p < 0.05", "note"],
                floatfmt={"statistic": ".1f", "p_value": ".4g"},
            )
        )
        n_sig = sum(r["significant"] for r in tests)
        lines += [f"Significant in {n_sig} of {len(tests)} comparisons.", ""]
    else:
        lines += ["No pairs to test.", ""]

    lines += ["## Figures", "", "![mIoU vs shots](miou_vs_shots.png)", ""]
    for target, name, file in selections:
        lines += [f"![{target}: patches selected on {name}]({file})", ""]

    if comparison is not None:
        lines += [
            "## kwtl vs paper (Table 2)",
            "",
            "Paper: Table 2 (TNBC, EM, ssTEM) and supplement Tab. 11 (B39, B5); "
            "difference = kwtl − paper, percentage points.",
            "",
        ]
        if comparison:
            rows = [
                dict(
                    target=r["target"],
                    selector=r["selector"],
                    n_shots=r["n_shots"],
                    kwtl=f"{r['kwtl_mean']:.1f} ± {r['kwtl_std']:.1f}",
                    paper=f"{r['paper_mean']:.1f} ± {r['paper_std']:.1f}",
                    # + 0.0 turns a rounded -0.0 into 0.0
                    difference=round(r["difference"], 1) + 0.0,
                )
                for r in comparison
            ]
            lines.append(
                format_markdown_table(
                    rows,
                    ["target", "selector", "n_shots", "kwtl", "paper", "difference"],
                    headers=["target", "selector", "shots", "kwtl", "paper", "difference"],
                    floatfmt={"difference": "+.1f"},
                )
            )
        else:
            lines += ["No cell in common with the paper's table.", ""]

    lines += ["## Recommendation", "", recommendation(summary, tests), ""]
    note = default_selector_note(selectors)
    lines += [note, ""] if note else []
    return "\n".join(lines).rstrip("\n") + "\n"
