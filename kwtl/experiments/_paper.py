"""The paper's headline numbers as data (SPEC §8), for side-by-side comparisons.

All values are mIoU in %, ``(mean, std)`` over the authors' 10 runs, exactly as printed in
the paper (one decimal).  Selector names follow :mod:`kwtl.selection`:
``"consistency"`` is the paper's "Ours", ``"mc_dropout"`` its "MC-dropout".
"""

import math

__all__ = [
    "PAPER_SHOTS",
    "PAPER_TABLE2",
    "PAPER_TABLE4_PLFT",
    "PAPER_TARGETS",
    "paper_comparison_rows",
]

#: Shot counts (columns) of the paper's Table 2 and supplement Tab. 11.
PAPER_SHOTS = (1, 3, 5, 7, 10)

#: Targets in the paper's order (Table 2, then supplement Tab. 11).
PAPER_TARGETS = ("TNBC", "EM", "ssTEM", "B39", "B5")

# (mean, std) per shot count in PAPER_SHOTS order.
_TABLE2_ROWS = {
    # ---- Table 2 (main paper) ----
    "TNBC": {
        "entropy": ((40.8, 3.9), (44.1, 3.1), (43.8, 4.7), (45.6, 5.4), (46.7, 5.8)),
        "mc_dropout": ((40.8, 4.0), (43.9, 3.1), (43.7, 4.7), (45.4, 5.4), (46.8, 5.8)),
        "random": ((37.0, 9.4), (44.7, 4.7), (42.1, 2.3), (45.7, 4.7), (46.8, 4.8)),
        "consistency": ((47.1, 3.5), (47.8, 5.8), (47.7, 5.0), (48.0, 5.2), (49.2, 4.9)),
    },
    "EM": {
        "entropy": ((61.0, 2.9), (67.1, 2.7), (68.6, 2.3), (70.1, 1.9), (72.9, 1.6)),
        "mc_dropout": ((61.7, 2.6), (63.4, 2.4), (66.1, 2.1), (68.0, 1.8), (70.0, 2.4)),
        "random": ((58.9, 5.0), (65.2, 2.9), (68.6, 3.4), (71.2, 2.9), (72.2, 3.2)),
        "consistency": ((62.0, 3.2), (69.8, 2.7), (70.6, 3.3), (73.1, 2.9), (73.7, 3.2)),
    },
    "ssTEM": {
        "entropy": ((49.5, 3.6), (62.6, 2.6), (65.4, 3.7), (67.7, 2.7), (68.6, 3.6)),
        "mc_dropout": ((49.3, 3.0), (62.2, 3.1), (64.6, 3.5), (67.9, 3.6), (68.2, 4.5)),
        "random": ((47.0, 4.8), (60.6, 4.0), (63.1, 2.8), (66.4, 4.1), (67.1, 4.1)),
        "consistency": ((51.3, 3.2), (63.3, 3.2), (64.2, 3.2), (67.3, 2.9), (68.7, 2.6)),
    },
    # ---- Supplement Tab. 11 ----
    "B39": {
        "entropy": ((80.9, 5.6), (85.9, 3.5), (87.3, 5.0), (89.4, 2.7), (90.1, 1.7)),
        "mc_dropout": ((72.1, 3.0), (71.3, 3.2), (73.1, 3.3), (76.6, 2.6), (77.9, 3.9)),
        "random": ((93.2, 0.3), (92.7, 0.9), (92.9, 0.5), (92.9, 0.4), (92.8, 0.5)),
        "consistency": ((90.1, 1.6), (91.9, 1.6), (92.7, 0.7), (93.0, 0.3), (92.9, 0.4)),
    },
    "B5": {
        "entropy": ((99.1, 0.1), (99.1, 0.1), (99.1, 0.1), (99.1, 0.1), (99.0, 0.5)),
        "mc_dropout": ((99.1, 0.1), (99.1, 0.1), (99.0, 0.2), (99.0, 0.1), (99.0, 0.2)),
        "random": ((99.1, 0.0), (99.1, 0.0), (99.0, 0.2), (99.1, 0.0), (99.1, 0.0)),
        "consistency": ((98.9, 0.0), (99.0, 0.0), (99.0, 0.0), (99.0, 0.0), (99.0, 0.0)),
    },
}

#: Paper Table 2 (TNBC, EM, ssTEM) and supplement Tab. 11 (B39, B5):
#: ``{target: {selector: {n_shots: (mean, std)}}}``, mIoU in %.
PAPER_TABLE2 = {
    target: {selector: dict(zip(PAPER_SHOTS, cells)) for selector, cells in by_selector.items()}
    for target, by_selector in _TABLE2_ROWS.items()
}

#: Paper Table 4: the PLFT model alone (no support fine-tuning), ``{target: (mean, std)}``, %.
PAPER_TABLE4_PLFT = {
    "TNBC": (31.0, 4.7),
    "EM": (11.0, 0.5),
    "ssTEM": (8.0, 0.5),
    "B39": (92.0, 0.4),
    "B5": (99.0, 0.0),
}


def paper_comparison_rows(summary_rows, paper_table=None):
    """Pair kwtl's summary cells with the paper's numbers.

    Parameters
    ----------
    summary_rows : iterable of dict
        Rows with keys ``target``, ``selector``, ``n_shots``, ``mean``, ``std`` (in %), as
        returned by :func:`kwtl.experiments._report.summary_table`.
    paper_table : dict, optional
        ``{target: {selector: {n_shots: (mean, std)}}}``; defaults to :data:`PAPER_TABLE2`.

    Returns
    -------
    rows : list of dict
        One row per cell present in both, in the order of ``summary_rows``, with keys
        ``target, selector, n_shots, kwtl_mean, kwtl_std, paper_mean, paper_std, difference``
        where ``difference = kwtl_mean - paper_mean`` (percentage points).

    Examples
    --------
    >>> rows = paper_comparison_rows([dict(target="EM", selector="consistency", n_shots=1,
    ...                                    mean=60.0, std=2.0)])
    >>> rows[0]["paper_mean"], round(rows[0]["difference"], 1)
    (62.0, -2.0)
    >>> paper_comparison_rows([dict(target="EM", selector="consistency", n_shots=2,
    ...                             mean=60.0, std=2.0)])
    []
    """
    table = PAPER_TABLE2 if paper_table is None else paper_table
    out = []
    for row in summary_rows:
        try:
            shots = int(row["n_shots"])
        except (TypeError, ValueError):
            continue
        cell = table.get(row["target"], {}).get(row["selector"], {}).get(shots)
        if cell is None:
            continue
        paper_mean, paper_std = (float(v) for v in cell)
        kwtl_mean = float(row["mean"])
        out.append(
            dict(
                target=row["target"],
                selector=row["selector"],
                n_shots=shots,
                kwtl_mean=kwtl_mean,
                kwtl_std=float(row["std"]),
                paper_mean=paper_mean,
                paper_std=paper_std,
                difference=kwtl_mean - paper_mean if math.isfinite(kwtl_mean) else math.nan,
            )
        )
    return out
