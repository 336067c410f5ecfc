"""Tests of the experiment report module and the paper's numbers as data."""

import csv
import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from kwtl.experiments._paper import (
    PAPER_SHOTS,
    PAPER_TABLE2,
    PAPER_TABLE4_PLFT,
    PAPER_TARGETS,
    paper_comparison_rows,
)
from kwtl.experiments._figures import plot_miou_vs_shots, plot_selection
from kwtl.experiments._report import write_report
from kwtl.experiments._tables import (
    format_markdown_table,
    load_results,
    selector_shots_table,
    summary_table,
    wilcoxon_table,
)
from kwtl.utils._atomic import atomic_write as _atomic_write

SELECTORS = ("consistency", "entropy", "mc_dropout", "random")
TARGETS = ("EM", "TNBC")
SHOTS = (1, 3)
N_REPEATS = 5
SPEC = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "SPEC.md"


def _miou_values():
    """``{(target, selector, shots): array of N_REPEATS mIoUs in [0, 1]}``, seeded."""
    rng = np.random.default_rng(42)
    base = {"EM": 0.60, "TNBC": 0.40}
    offset = {"consistency": 0.05, "entropy": 0.0, "mc_dropout": -0.01, "random": -0.03}
    out = {}
    for t in TARGETS:
        for s in SELECTORS:
            for n in SHOTS:
                out[(t, s, n)] = base[t] + offset[s] + 0.02 * n + rng.normal(0, 0.02, N_REPEATS)
    return out


def _record(target, selector, n_shots, repeat, miou, **extra):
    rec = dict(
        target=target,
        selector=selector,
        n_shots=n_shots,
        repeat=repeat,
        miou=float(miou),
        per_image_iou=[float(miou)],
        test_images=["t0"],
        plft_miou=0.1,
        n_support=3,
        support=[],
        pool_images=["p0", "p1"],
        patch_size=8,
        seconds=1.0,
        profile="cpu",
        seed=0,
    )
    rec.update(extra)
    return rec


@pytest.fixture
def values():
    return _miou_values()


@pytest.fixture
def records(values):
    recs = []
    for (t, s, n), arr in values.items():
        for r, m in enumerate(arr):
            support = []
            if s == "consistency":
                # pool image 1 receives most patches
                support = [[1, 0, 0, 0.9], [1, 8, 8, 0.5], [0, 0, 8, 0.7], [1, 16, 0, 0.1]]
            recs.append(_record(t, s, n, r, m, support=support))
    return recs


# -------------------------------------------------------------------------------------------
# summary_table
# -------------------------------------------------------------------------------------------
def test_summary_table_matches_numpy(records, values):
    rows = summary_table(records)
    assert len(rows) == len(TARGETS) * len(SELECTORS) * len(SHOTS)
    for row in rows:
        arr = values[(row["target"], row["selector"], row["n_shots"])]
        assert row["mean"] == pytest.approx(100 * np.mean(arr), abs=1e-10)
        assert row["std"] == pytest.approx(100 * np.std(arr, ddof=0), abs=1e-10)
        assert row["std"] != pytest.approx(100 * np.std(arr, ddof=1))
        assert row["n_repeats"] == N_REPEATS
        assert set(row) == {"target", "selector", "n_shots", "mean", "std", "n_repeats"}


def test_summary_table_order(records):
    extra = [_record("EM", name, 1, 0, 0.5) for name in ("zzz", "aaa")]
    rows = summary_table(list(reversed(records)) + extra)
    keys = [(r["target"], r["selector"], r["n_shots"]) for r in rows]
    em = [k for k in keys if k[0] == "EM"]
    assert [k[0] for k in keys[-len(em) :]] == ["EM"] * len(em)  # paper order: TNBC, EM
    assert [k[1] for k in em if k[2] == 1] == list(SELECTORS) + ["aaa", "zzz"]
    assert em[:2] == [("EM", "consistency", 1), ("EM", "consistency", 3)]


def test_summary_table_duplicate_repeat_warns():
    recs = [_record("EM", "random", 1, 0, 0.2), _record("EM", "random", 1, 0, 0.4)]
    with pytest.warns(RuntimeWarning, match="duplicate"):
        rows = summary_table(recs)
    assert rows[0]["n_repeats"] == 1 and rows[0]["mean"] == pytest.approx(40.0)


def test_summary_table_rejects_incomplete_record():
    with pytest.raises(ValueError, match="miou"):
        summary_table([dict(target="EM", selector="random", n_shots=1, repeat=0)])


# -------------------------------------------------------------------------------------------
# wilcoxon_table
# -------------------------------------------------------------------------------------------
def test_wilcoxon_matches_scipy(records, values):
    rows = wilcoxon_table(records)
    assert len(rows) == len(TARGETS) * len(SHOTS) * 3
    for row in rows:
        assert row["method"] == "consistency" and row["baseline"] != "consistency"
        x = values[(row["target"], "consistency", row["n_shots"])]
        y = values[(row["target"], row["baseline"], row["n_shots"])]
        expected = stats.wilcoxon(x, y, alternative="greater")
        assert row["n_pairs"] == N_REPEATS
        assert row["p_value"] == pytest.approx(float(expected.pvalue), rel=1e-12)
        assert row["statistic"] == pytest.approx(float(expected.statistic))
        assert row["significant"] == (expected.pvalue < 0.05)
        assert row["note"] == ""
    baselines = [r["baseline"] for r in rows if r["target"] == "EM" and r["n_shots"] == 1]
    assert baselines == ["entropy", "mc_dropout", "random"]


def test_wilcoxon_pairs_by_repeat_only(values):
    x = values[("EM", "consistency", 1)]
    y = values[("EM", "random", 1)]
    recs = [_record("EM", "consistency", 1, r, x[r]) for r in range(N_REPEATS)]
    # baseline lacks repeat 0 and has an extra repeat 9 the method does not have
    recs += [_record("EM", "random", 1, r, y[r]) for r in range(1, N_REPEATS)]
    recs += [_record("EM", "random", 1, 9, 0.0)]
    (row,) = wilcoxon_table(recs)
    expected = stats.wilcoxon(x[1:], y[1:], alternative="greater")
    assert row["n_pairs"] == N_REPEATS - 1
    assert row["p_value"] == pytest.approx(float(expected.pvalue))
    two = wilcoxon_table(recs, alternative="two-sided")[0]
    assert two["p_value"] == pytest.approx(
        float(stats.wilcoxon(x[1:], y[1:], alternative="two-sided").pvalue)
    )


def test_wilcoxon_significant_when_always_better():
    recs = []
    for r in range(10):
        recs.append(_record("EM", "consistency", 1, r, 0.7 + 0.01 * r))
        recs.append(_record("EM", "random", 1, r, 0.5 + 0.013 * r))
    (row,) = wilcoxon_table(recs)
    assert row["p_value"] == pytest.approx(1 / 1024)
    assert row["significant"] is True
    (worse,) = wilcoxon_table(recs, method="random")
    assert worse["baseline"] == "consistency" and worse["significant"] is False
    assert worse["p_value"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "ours, theirs, match",
    [
        ([0.7], [0.5], "only 1"),
        ([0.7, 0.6, 0.5], [0.7, 0.6, 0.5], "zero"),
    ],
)
def test_wilcoxon_degenerate(ours, theirs, match):
    recs = [_record("EM", "consistency", 1, r, m) for r, m in enumerate(ours)]
    recs += [_record("EM", "random", 1, r, m) for r, m in enumerate(theirs)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (row,) = wilcoxon_table(recs)
    assert math.isnan(row["p_value"]) and math.isnan(row["statistic"])
    assert row["significant"] is False
    assert match in row["note"]


def test_wilcoxon_no_overlap_and_missing_method():
    recs = [
        _record("EM", "consistency", 1, 0, 0.7),
        _record("EM", "random", 1, 1, 0.5),
        _record("EM", "random", 3, 0, 0.5),
    ]
    (row,) = wilcoxon_table(recs)
    assert row["n_pairs"] == 0 and math.isnan(row["p_value"]) and "only 0" in row["note"]
    assert wilcoxon_table(recs, method="entropy") == []
    assert wilcoxon_table([]) == []


# -------------------------------------------------------------------------------------------
# load_results
# -------------------------------------------------------------------------------------------
def _dump(folder, name, rec):
    (folder / name).write_text(json.dumps(rec))


def test_load_results_sorted_skips_corrupt_and_tmp(tmp_path, records):
    folder = tmp_path / "results"
    folder.mkdir()
    for i, rec in enumerate(reversed(records)):
        _dump(folder, f"job_{i:03d}.json", rec)
    (folder / "broken.json").write_text('{"target": "EM", "sel')
    (folder / "partial.json.tmp").write_text('{"target": "EM"')
    _dump(folder, "job_999.json.tmp", _record("ZZ", "random", 1, 0, 0.5))
    _dump(folder, ".job_998.json.abc.tmp", _record("ZZ", "random", 1, 0, 0.5))
    _dump(folder, "incomplete.json", dict(target="EM", selector="random"))
    with pytest.warns(RuntimeWarning) as caught:
        loaded = load_results(tmp_path)
    messages = " ".join(str(w.message) for w in caught)
    assert "broken.json" in messages and "incomplete.json" in messages
    assert ".tmp" not in messages
    assert len(loaded) == len(records)
    keys = [(r["target"], r["selector"], r["n_shots"], r["repeat"]) for r in loaded]
    assert keys == sorted(keys)
    assert load_results(tmp_path / "nowhere") == []


# -------------------------------------------------------------------------------------------
# tables
# -------------------------------------------------------------------------------------------
def test_format_markdown_table():
    rows = [dict(a="x|y", b=0.123456, c=math.nan, d=True), dict(a="z", b=None, d=False)]
    text = format_markdown_table(
        rows, ["a", "b", "c", "d"], headers=["A", "B", "C", "D"], floatfmt={"b": ".2f"}
    )
    lines = text.splitlines()
    assert len(lines) == 4 and text.endswith("\n")
    assert lines[0].split("|")[1].strip() == "A"
    assert re.fullmatch(r"\|(-+\|)+", lines[1])
    assert "x\\|y" in lines[2] and "0.12" in lines[2] and "NaN" in lines[2] and "yes" in lines[2]
    assert "no" in lines[3]
    assert len({len(line) for line in lines}) == 1  # padded columns
    with pytest.raises(ValueError):
        format_markdown_table(rows, ["a"], headers=["A", "B"])


def test_selector_shots_table(records, values):
    text = selector_shots_table(records)
    lines = text.splitlines()
    assert "1-shot" in lines[0] and "3-shot" in lines[0]
    assert len(lines) == 2 + len(TARGETS) * len(SELECTORS)
    arr = values[("EM", "consistency", 3)]
    cell = f"{100 * np.mean(arr):.1f} ± {100 * np.std(arr):.1f}"
    em_consistency = [line for line in lines if "EM" in line and "consistency" in line][0]
    assert cell in em_consistency
    assert lines[2].split("|")[2].strip() == "consistency"
    only = selector_shots_table(records, target="TNBC")
    assert "EM" not in only and only.count("TNBC") == len(SELECTORS)
    sparse = selector_shots_table(
        [_record("EM", "random", 1, 0, 0.5), _record("EM", "entropy", 3, 0, 0.5)]
    )
    assert "| -" in sparse


# -------------------------------------------------------------------------------------------
# figures and report
# -------------------------------------------------------------------------------------------
def _png_size(path):
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG"
        return img.size


def test_plots(tmp_path, records):
    path = plot_miou_vs_shots(records, tmp_path / "curve.png")
    w, h = _png_size(path)
    assert w > 300 and h > 200
    assert _png_size(plot_miou_vs_shots([], tmp_path / "empty.png"))[0] > 100
    rgb = np.random.default_rng(0).random((40, 60, 3))
    support = [(r, c, s) for r, c, s in zip(range(0, 30, 3), range(0, 50, 5), range(10))]
    path = plot_selection(rgb, support, (8, 10), tmp_path / "sel.png", title="t", max_patches=4)
    assert min(_png_size(path)) > 100
    path = plot_selection(np.zeros((16, 16)), [], 8, tmp_path / "none.png")
    assert min(_png_size(path)) > 100
    with pytest.raises(ValueError):
        plot_selection(np.zeros(5), [], 8, tmp_path / "bad.png")
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*"))


def test_write_report(tmp_path, records):
    folder = tmp_path / "results"
    folder.mkdir()
    for i, rec in enumerate(records):
        _dump(folder, f"job_{i:03d}.json", rec)
    images = {
        "EM": {"p0": np.zeros((32, 32)), "p1": np.arange(1024.0).reshape(32, 32)},
        "TNBC": {"p0": np.zeros((32, 32))},
    }  # TNBC lacks the chosen image p1
    metadata = {
        "command": "kwtl-run --profile cpu",
        "machine": "test box",
        "wall_time_s": 12.5,
        "profile": "cpu",
        "options": {"n_repeats": 5, "targets": ["EM", "TNBC"]},
    }
    with pytest.warns(RuntimeWarning, match="p1"):
        paths = write_report(tmp_path, images=images, metadata=metadata, paper_table=PAPER_TABLE2)
    expected = {
        "results_csv": "results.csv",
        "results_json": "results.json",
        "wilcoxon_csv": "wilcoxon.csv",
        "miou_vs_shots": "miou_vs_shots.png",
        "selection_EM": "selection_EM.png",
        "paper_comparison": "paper_comparison.csv",
        "report": "report.md",
    }
    assert {k: Path(v).name for k, v in paths.items()} == expected
    for name in expected.values():
        assert (tmp_path / name).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp") or p.name[0] == "."]

    summary = summary_table(records)
    with open(tmp_path / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(summary)
    assert float(rows[0]["mean"]) == pytest.approx(summary[0]["mean"])
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["metadata"] == metadata and data["n_records"] == len(records)
    # row by row: pytest.approx does not compare nested structures (a TypeError since pytest 9)
    assert len(data["summary"]) == len(summary)
    for got, want in zip(data["summary"], summary):
        assert got == pytest.approx(want)
    with open(tmp_path / "wilcoxon.csv", newline="") as f:
        written = list(csv.DictReader(f))
    from kwtl.experiments._recommend import compare_with_random

    assert len(written) == len(compare_with_random(records))
    assert {row["baseline"] for row in written} == {"random"}

    report = (tmp_path / "report.md").read_text()
    for key in ("command", "machine", "wall_time_s", "profile"):
        assert f"**{key}**: {metadata[key]}" in report
    assert '`{"n_repeats": 5, "targets": ["EM", "TNBC"]}`' in report
    for row in summary:
        assert f"{row['mean']:.1f} ± {row['std']:.1f}" in report
    assert "## Wilcoxon" in report and "(miou_vs_shots.png)" in report
    assert "(selection_EM.png)" in report and "selection_TNBC" not in report
    assert "kwtl vs paper (Table 2)" in report
    assert "62.0 ± 3.2" in report  # EM consistency 1-shot from the paper

    assert min(_png_size(tmp_path / "miou_vs_shots.png")) > 200
    assert min(_png_size(tmp_path / "selection_EM.png")) > 200


def test_write_report_is_deterministic_and_minimal(tmp_path, records):
    a, b = tmp_path / "a", tmp_path / "b"
    pa = write_report(a, records=records, metadata={"profile": "cpu"})
    pb = write_report(b, records=list(reversed(records)), metadata={"profile": "cpu"})
    assert set(pa) == {"results_csv", "results_json", "wilcoxon_csv", "miou_vs_shots", "report"}
    for key in pa:
        assert Path(pa[key]).read_bytes() == Path(pb[key]).read_bytes(), key
    assert "kwtl vs paper" not in Path(pa["report"]).read_text()
    # no results at all still gives a report
    paths = write_report(tmp_path / "empty")
    assert "No results" in Path(paths["report"]).read_text()


def test_atomic_write_failure_leaves_old_file_and_no_temp(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")

    def failing(f):
        f.write(b"partial")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        _atomic_write(target, failing)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


# -------------------------------------------------------------------------------------------
# paper numbers
# -------------------------------------------------------------------------------------------
def test_paper_table_spot_checks():
    assert PAPER_TABLE2["EM"]["consistency"][1] == (62.0, 3.2)
    assert PAPER_TABLE2["ssTEM"]["entropy"][1] == (49.5, 3.6)
    assert PAPER_TABLE2["B39"]["random"][10] == (92.8, 0.5)
    assert PAPER_TABLE2["TNBC"]["random"][1] == (37.0, 9.4)
    assert PAPER_TABLE2["B5"]["consistency"][1] == (98.9, 0.0)
    assert PAPER_TABLE2["EM"]["mc_dropout"][7] == (68.0, 1.8)
    assert set(PAPER_TABLE2) == set(PAPER_TARGETS)
    for by_selector in PAPER_TABLE2.values():
        assert set(by_selector) == set(SELECTORS)
        for cells in by_selector.values():
            assert tuple(cells) == PAPER_SHOTS
    assert PAPER_TABLE4_PLFT == {
        "TNBC": (31.0, 4.7),
        "EM": (11.0, 0.5),
        "ssTEM": (8.0, 0.5),
        "B5": (99.0, 0.0),
        "B39": (92.0, 0.4),
    }


@pytest.mark.skipif(not SPEC.is_file(), reason="reference SPEC.md not available")
def test_paper_table_matches_spec():
    names = {
        "Entropy": "entropy",
        "MC-dropout": "mc_dropout",
        "Random": "random",
        "**Ours**": "consistency",
        "Ours": "consistency",
    }
    pattern = re.compile(
        r"\| (TNBC|EM|ssTEM|B39|B5) \| (Entropy|MC-dropout|Random|\*\*Ours\*\*"
        r"|Ours) \|(.*)\|$"
    )
    seen = 0
    for line in SPEC.read_text(encoding="utf-8").splitlines():
        m = pattern.match(line)
        if not m:
            continue
        cells = [tuple(float(v) for v in c.strip().split("±")) for c in m.group(3).split("|")]
        got = [PAPER_TABLE2[m.group(1)][names[m.group(2)]][n] for n in PAPER_SHOTS]
        assert got == cells, line
        seen += 1
    assert seen == 20


def test_paper_comparison_rows():
    summary = [
        dict(target="EM", selector="consistency", n_shots=1, mean=64.5, std=1.0, n_repeats=5),
        dict(target="B39", selector="random", n_shots=10, mean=90.0, std=0.2, n_repeats=5),
        dict(target="EM", selector="consistency", n_shots=2, mean=64.5, std=1.0, n_repeats=5),
        dict(target="XYZ", selector="random", n_shots=1, mean=1.0, std=0.0, n_repeats=5),
        dict(target="EM", selector="other", n_shots=1, mean=1.0, std=0.0, n_repeats=5),
    ]
    rows = paper_comparison_rows(summary)
    assert [(r["target"], r["selector"], r["n_shots"]) for r in rows] == [
        ("EM", "consistency", 1),
        ("B39", "random", 10),
    ]
    assert rows[0]["difference"] == pytest.approx(2.5)
    assert rows[0]["paper_mean"] == 62.0 and rows[0]["paper_std"] == 3.2
    assert rows[0]["kwtl_mean"] == 64.5 and rows[0]["kwtl_std"] == 1.0
    assert rows[1]["difference"] == pytest.approx(-2.8)
    custom = {"XYZ": {"random": {1: (2.0, 0.5)}}}
    (row,) = paper_comparison_rows(summary, custom)
    assert row["difference"] == pytest.approx(-1.0)
