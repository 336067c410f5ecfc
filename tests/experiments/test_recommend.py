"""The kwtl run report: every selector against random, the paper's selector named as the
paper's, label-free selectors named, and the recommendation the table supports."""

import re

import numpy as np
import pytest
from scipy import stats

from kwtl.experiments import write_report
from kwtl.experiments._recommend import compare_with_random, recommendation
from kwtl.experiments._tables import summary_table


def _records(gains, repeats=6, seed=0):
    """random at 50 % ± noise; each selector at random + its gain, per target and shots."""
    rng = np.random.default_rng(seed)
    recs = []
    for target in ("EM", "ssTEM"):
        for shots in (1, 3):
            base = 0.5 + 0.02 * rng.standard_normal(repeats)
            recs += [
                dict(target=target, selector="random", n_shots=shots, repeat=r, miou=float(b))
                for r, b in enumerate(base)
            ]
            for name, gain in gains.items():
                noise = 0.005 * rng.standard_normal(repeats)
                recs += [
                    dict(
                        target=target,
                        selector=name,
                        n_shots=shots,
                        repeat=r,
                        miou=float(b + gain + n),
                    )
                    for r, (b, n) in enumerate(zip(base, noise))
                ]
    return recs


def test_every_selector_is_tested_against_random_as_scipy_does():
    recs = _records({"consistency": -0.01, "stratified_consistency": 0.03})
    rows = compare_with_random(recs)
    assert {r["method"] for r in rows} == {"consistency", "stratified_consistency"}
    assert {r["baseline"] for r in rows} == {"random"}
    assert len(rows) == 2 * 2 * 2  # selectors x targets x shots
    row = next(
        r
        for r in rows
        if (r["method"], r["target"], r["n_shots"]) == ("stratified_consistency", "EM", 3)
    )
    x = [
        r["miou"]
        for r in recs
        if (r["selector"], r["target"], r["n_shots"]) == ("stratified_consistency", "EM", 3)
    ]
    y = [
        r["miou"] for r in recs if (r["selector"], r["target"], r["n_shots"]) == ("random", "EM", 3)
    ]
    assert row["p_value"] == pytest.approx(stats.wilcoxon(x, y, alternative="greater").pvalue)


def test_a_selector_that_always_wins_significantly_is_recommended():
    recs = _records({"consistency": -0.02, "stratified_consistency": 0.04, "entropy": 0.01})
    text = recommendation(summary_table(recs), compare_with_random(recs))
    assert text.startswith("Use **stratified_consistency** (label-free, beyond the paper)")
    assert "all 4 target × shots cells" in text


def test_random_is_recommended_when_nothing_beats_it_everywhere():
    recs = _records({"consistency": 0.05})
    for r in recs:  # consistency loses one cell
        if (r["selector"], r["target"], r["n_shots"]) == ("consistency", "ssTEM", 3):
            r["miou"] -= 0.2
    text = recommendation(summary_table(recs), compare_with_random(recs))
    assert text.startswith("Use **random**")


def test_report_names_the_papers_selector_and_ends_with_the_recommendation(tmp_path):
    recs = _records({"consistency": -0.01, "gate_random": 0.0, "entropy": -0.02})
    write_report(tmp_path, records=recs)
    report = (tmp_path / "report.md").read_text()
    assert "Ours" not in report and "ours" not in report
    assert "`consistency` (the paper's method)" in report
    assert "`gate_random` (label-free, beyond the paper)" in report
    assert "every selector against random" in report
    tests = report.split("every selector against random")[1].split("## Figures")[0]
    for name in ("consistency", "gate_random", "entropy"):
        assert re.search(rf"\| {name}\s+\| 6 ", tests), name
    last = report.rstrip().split("\n## ")[-1]
    assert last.startswith("Recommendation") and "Use **random**" in last


def test_report_says_the_library_default_beside_selectors_beyond_the_paper(tmp_path):
    from kwtl.selection import DEFAULT_SELECTOR

    recs = _records({"typicality": 0.05, "consistency": 0.0})
    write_report(tmp_path, records=recs)
    last = (tmp_path / "report.md").read_text().rstrip().split("\n## ")[-1]
    assert f"kwtl's default selector is **{DEFAULT_SELECTOR}**" in last
    assert "`typicality`" in last.split("default selector")[1]
    # it says how the rule came out, consistently with the default it names
    assert ("None has met it" in last) == (DEFAULT_SELECTOR == "random")
    # a run of the paper's selectors only gets no such note
    write_report(tmp_path / "paper", records=_records({"consistency": 0.0}))
    report = (tmp_path / "paper" / "report.md").read_text()
    assert "default selector is" not in report


def test_kwtl_runs_embedded_default_shows_the_new_selectors_beside_random():
    from kwtl.experiments import get_profile

    selectors = get_profile("quick")["selectors"]
    for name in ("random", "consistency", "spread_random", "object_richness", "typicality"):
        assert name in selectors
