"""The drawn-area benchmark's decision rules (``benchmarks/_effort_plan.py``,
``benchmarks/_effort_report.py``) on hand-made records whose answers are worked out by hand.

The rules decide kwtl's default selector, so they are tested like library code even though
the benchmark scripts are not part of the package.
"""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _effort_figures import curve_band  # noqa: E402
from _effort_plan import b1_gate, best_label_free_arms, next_arms  # noqa: E402
from _effort_report import (  # noqa: E402
    curve_stats,
    curves_table,
    draws_table,
    paired,
    rounds_table,
    selector_rule,
)

R = "recipe"
SPLITS = range(5)
TARGETS = ("ssTEM", "EM")


def rec(target, arm, split, seed, miou, budget=1, round_=1):
    return dict(
        target=target, arm=arm, split=split, seed=seed, miou=miou, budget=budget, recipe=R,
        round=round_,
    )  # fmt: skip


def grid(arm, miou, seeds=range(5), budgets=(1,), targets=TARGETS, splits=SPLITS):
    """Records of ``arm``; ``miou(target, split, seed, budget)`` or a constant."""
    value = miou if callable(miou) else (lambda *_: miou)
    return [
        rec(t, arm, s, k, value(t, s, k, b), budget=b)
        for t in targets
        for s in splits
        for k in seeds
        for b in budgets
    ]


def test_paired_matches_draw_by_draw_differences():
    records = grid("random", lambda t, s, k, b: 50.0 + k) + [
        rec("ssTEM", "a", 0, 0, 47.0),
        rec("ssTEM", "a", 0, 2, 55.0),
        rec("ssTEM", "a", 3, 1, 40.0),
        rec("ssTEM", "a", 4, 7, 99.0),  # no random draw 7: not paired
        rec("EM", "a", 0, 0, 10.0),  # other target
    ]
    assert paired(records, "a", 1, R, "ssTEM") == {0: [-3.0, 3.0], 3: [-11.0]}


def test_b1_gate_needs_five_complete_draws_below_the_bound():
    records = grid("random", 50.0)
    # a: -1.5 on every ssTEM draw (out); +1 on EM
    records += grid("a", lambda t, s, k, b: 48.5 if t == "ssTEM" else 51.0)
    # b: far behind on ssTEM but only four complete draws there (seed 4 lacks split 4); level on EM
    b = grid("b", lambda t, s, k, b: 40.0 if t == "ssTEM" else 50.0)
    records += [r for r in b if not (r["target"] == "ssTEM" and r["seed"] == 4 and r["split"] == 4)]
    # c: draw 0 at -5, draws 1-4 at +0.25: mean over draws (-5 + 4 * 0.25) / 5 = -0.8
    records += grid("c", lambda t, s, k, b: 45.0 if k == 0 else 50.25)
    gate = b1_gate(records, R, arms=("a", "b", "c", "d"))
    assert gate["a"][0] is True
    assert gate["a"][1]["ssTEM"] == (5, pytest.approx(-1.5))
    assert gate["a"][1]["EM"] == (5, pytest.approx(1.0))
    assert gate["b"][0] is False
    assert gate["b"][1]["ssTEM"] == (4, pytest.approx(-10.0))
    assert gate["b"][1]["EM"] == (5, pytest.approx(0.0))
    assert gate["c"][0] is False
    assert gate["c"][1]["ssTEM"] == (5, pytest.approx(-0.8))
    assert gate["d"][0] is False and np.isnan(gate["d"][1]["EM"][1])


def test_b1_gate_out_on_one_target_is_enough():
    records = grid("random", 50.0) + grid("b", 40.0)
    assert b1_gate(records, R, arms=("b",))["b"][0] is True


def test_next_arms_compares_draw0_with_randoms_mean_of_draws_0_to_2():
    # random per split: 50, 52, 54 (mean 52); draw 3 at 0 must not count
    records = grid("random", lambda t, s, k, b: [50.0, 52.0, 54.0, 0.0][k], seeds=range(4))
    records += grid("x", 44.5, seeds=[0])  # -7.5 on both targets: kept
    records += grid("y", lambda t, s, k, b: 43.5 if t == "ssTEM" else 60.0, seeds=[0])  # -8.5
    records += grid("x", 0.0, seeds=[1])  # later draws do not count
    assert next_arms(records, R, arms=("x", "y")) == ["x"]
    # y is out on ssTEM whatever its EM draw 0; x undecided while its EM draw 0 is incomplete
    no_em = [r for r in records if not (r["arm"] in ("x", "y") and r["target"] == "EM")]
    assert next_arms(no_em, R, arms=("y",)) == []
    assert next_arms(no_em, R, arms=("x", "y")) is None
    x_em = no_em + [rec("EM", "x", s, 0, 60.0) for s in range(4)]
    assert next_arms(x_em, R, arms=("x", "y")) is None
    assert next_arms(x_em + [rec("EM", "x", 4, 0, 60.0)], R, arms=("x", "y")) == ["x"]


def test_best_label_free_arms_ranks_mean_paired_difference():
    records = grid("random", 50.0, seeds=[0, 1])
    records += grid("spread_random", 51.0, seeds=[0, 1])
    records += grid("typicality", lambda t, s, k, b: 53.0 if k == 0 else 50.0, seeds=[0, 1])
    records += grid("gt_consistency", 60.0, seeds=[0, 1])  # reads labels: never ranked
    best = best_label_free_arms(records, R)
    assert [a for a, _ in best] == ["typicality", "spread_random"]
    assert best[0][1] == pytest.approx(1.5) and best[1][1] == pytest.approx(1.0)


def test_curve_area_is_the_mean_height_over_log2_budget():
    # linear in log2 B from 40 (B = 0.25) to 52 (B = 2): mean height (40 + 52) / 2 = 46
    height = {0.25: 40.0, 0.5: 44.0, 1: 48.0, 2: 52.0}
    records = grid("random", lambda t, s, k, b: height[b], seeds=[0], budgets=tuple(height))
    means, area = curve_stats(records, "random", R, "ssTEM")
    assert means == pytest.approx(height)
    assert area == pytest.approx(46.0)
    _, missing = curve_stats(records[:-1], "random", R, "EM")  # one split short at B = 2
    assert np.isnan(missing)


BUDGETS = (0.25, 0.5, 1, 2)


def test_selector_rule_passes_only_the_arm_meeting_every_condition():
    records = grid("random", 50.0, seeds=[0], budgets=BUDGETS)
    records += grid("p", 53.0, seeds=[0], budgets=BUDGETS)  # +3 everywhere: passes
    # q: +5 at B <= 1 but 1.5 behind at B = 2
    records += grid("q", lambda t, s, k, b: 48.5 if b == 2 else 55.0, seeds=[0], budgets=BUDGETS)
    # r: mean +2.5 at B <= 1, but wins only splits 0-2 (+5, +5, +5, -1.25, -1.25)
    records += grid("r", lambda t, s, k, b: 55.0 if s < 3 else 48.75, seeds=[0], budgets=BUDGETS)
    # s: +1.9 everywhere: wins every split, short of +2
    records += grid("s", 51.9, seeds=[0], budgets=BUDGETS)
    winner, verdicts = selector_rule(records, R, ["p", "q", "r", "s"])
    assert winner == "p"
    assert [verdicts[a][0] for a in "pqrs"] == [True, False, False, False]
    assert [verdicts[a].state for a in "pqrs"] == ["pass", "fail", "fail", "fail"]
    assert verdicts["p"][1] == pytest.approx(53.0)
    assert "worst -1.5" in verdicts["q"][2] and "wins 3/5" in verdicts["r"][2]


def test_selector_rule_keeps_random_when_an_arm_fails_on_one_target():
    records = grid("random", 50.0, seeds=[0], budgets=BUDGETS)
    records += grid(
        "p", lambda t, s, k, b: 53.0 if t == "ssTEM" else 50.5, seeds=[0], budgets=BUDGETS
    )
    winner, verdicts = selector_rule(records, R, ["p"])
    assert winner == "random" and not verdicts["p"][0] and verdicts["p"].state == "fail"
    incomplete = [r for r in records if not (r["arm"] == "p" and r["budget"] == 2)]
    assert selector_rule(incomplete, R, ["p"])[0] == "random"


def test_selector_rule_settles_a_failed_target_before_its_largest_budget_runs():
    small = (0.25, 0.5, 1)
    records = grid("random", 50.0, budgets=BUDGETS)
    # f: +1 at every budget B <= 1, five draws: the mean over B <= 1 is +1 < 2 whatever B = 2
    records += grid("f", 51.0, budgets=small)
    # g: the same with one draw only: more draws could still change it
    records += grid("g", 51.0, seeds=[0], budgets=small)
    # h: +3 at B <= 1 with five draws passes so far, but B = 2 can still put it 1 behind
    records += grid("h", 53.0, budgets=small)
    winner, verdicts = selector_rule(records, R, ["f", "g", "h"])
    assert winner == "random" and not any(v[0] for v in verdicts.values())
    assert verdicts["f"][2].count("→ fail, settled (B = 2 missing)") == 2
    assert "Δ(B≤1) +1.0, wins 5/5, worst +1.0" in verdicts["f"][2]
    assert verdicts["g"][2].count("→ open (B = 2 missing)") == 2
    assert verdicts["h"][2].count("→ open (B = 2 missing)") == 2
    assert np.isnan(verdicts["f"][1])  # no area under an unfinished curve
    assert [verdicts[a].state for a in "fgh"] == ["fail", "open", "open"]
    # k: 1.5 behind at B = 1 with five draws, nothing else: settled by the bound alone
    records += grid("k", 48.5, budgets=[1])
    records += grid("m", 48.5, seeds=[0], budgets=[1])  # the same with one draw: open
    verdicts = selector_rule(records, R, ["k", "m"])[1]
    assert verdicts["k"][2] == "ssTEM: B = 1: -1.5 → fail, settled; EM: B = 1: -1.5 → fail, settled"
    assert verdicts["m"][2] == "ssTEM: incomplete; EM: incomplete"
    assert (verdicts["k"].state, verdicts["m"].state) == ("fail", "open")


def test_draws_table_worked_by_hand():
    # random 50 everywhere; "spread_random" on ssTEM: draw 0 is +1 on splits 0-3 and -4 on
    # split 4 (mean 0.0), draw 1 is +2 everywhere (mean +2.0), draw 2 has two splits only
    records = grid("random", 50.0, targets=("ssTEM",))
    records += [rec("ssTEM", "spread_random", s, 0, 51.0 if s < 4 else 46.0) for s in SPLITS]
    records += [rec("ssTEM", "spread_random", s, 1, 52.0) for s in SPLITS]
    records += [rec("ssTEM", "spread_random", s, 2, 40.0) for s in (0, 1)]
    lines = draws_table(records, R)
    assert len(lines) == 3  # header, rule, one row: no EM runs, no other arm
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    # complete draws 0 and 1: mean (0 + 2) / 2 = 1, sd of (0, 2) with ddof 1 = sqrt(2);
    # split means over them: +1.5 (splits 0-3), -1.0 (split 4): 4 wins, worst -1.0
    assert cells == [
        "spread_random", "ssTEM", "+0.0", "+2.0", "-10.0 (2)", "—", "—", "+1.0 (2)",
        f"{np.sqrt(2):.1f}", "4 / 5", "-1.0",
    ]  # fmt: skip


def test_curves_table_marks_a_budget_with_missing_splits():
    # random 50 at every budget; "p" +2 at B = 0.25 and 1 (all splits), +4 at B = 0.5 on
    # splits 0-2 only, nothing at B = 2: its B = 0.5 mean is "—" and its Δ says "(3)"
    records = grid("random", 50.0, seeds=[0], budgets=BUDGETS, targets=("ssTEM",))
    records += grid("p", 52.0, seeds=[0], budgets=(0.25, 1), targets=("ssTEM",))
    records += grid("p", 54.0, seeds=[0], budgets=(0.5,), targets=("ssTEM",), splits=range(3))
    lines = curves_table(records, R, ["random", "p"])
    cells = [c.strip() for c in lines[3].strip("|").split("|")]
    assert cells == ["p", "ssTEM", "52.0", "—", "52.0", "—", "—", "+2.0, +4.0 (3), +2.0, —"]
    random_row = [c.strip() for c in lines[2].strip("|").split("|")]
    assert random_row[2:6] == ["50.0"] * 4 and random_row[-1] == "—"


def test_rounds_table_compares_with_random_on_the_same_draws_only():
    # random: 50 + 2k on draw k; two rounds ran draws 0-1 on ssTEM only, 1 point above
    # random on draw 0 and 3 below on draw 1; round 1 alone reached 40 and 44
    records = grid("random", lambda t, s, k, b: 50.0 + 2 * k)
    for k, (miou, first) in enumerate([(51.0, 40.0), (49.0, 44.0)]):
        for s in SPLITS:
            r = rec("ssTEM", "round2_entropy", s, k, miou, round_=2)
            records.append(dict(r, round1_miou=first))
    lines = rounds_table(records, R)
    assert len(lines) == 3  # header, rule, one row: no EM row without EM runs
    # two rounds 50.0 over 10 runs; round 1 42.0; random on draws 0-1: 51.0 (not 54.0 over
    # all five draws); paired Δ: (+1 - 3) / 2 = -1.0 in every split, so no split won
    assert lines[2] == "| 1 | ssTEM | 50.0 (10) | 42.0 | 51.0 | -1.0 | 0 / 5 |"


def test_curve_band_spans_the_draws_means_not_the_splits():
    # B = 1: draw 0 is 40 + split on every split (mean 42), draw 1 is 60 + split (mean 62);
    # draw 2 ran on splits 0-1 only (70, 71) and counts in the mean but not in the band.
    # Split means: split s holds 40+s, 60+s and, for s < 2, 70+s.
    records = [rec("EM", "random", s, 0, 40.0 + s) for s in SPLITS]
    records += [rec("EM", "random", s, 1, 60.0 + s) for s in SPLITS]
    records += [rec("EM", "random", s, 2, 70.0 + s) for s in range(2)]
    split_means = [(40 + 60 + 70 + 3 * s) / 3 for s in range(2)] + [50.0 + s for s in range(2, 5)]
    band = curve_band(records, "random", R, "EM")
    assert len(band) == 1
    budget, mean, low, high, n_draws = band[0]
    assert budget == 1 and n_draws == 2
    assert mean == pytest.approx(np.mean(split_means))
    assert (low, high) == pytest.approx((42.0, 62.0))
    # a budget missing a split has no point; one draw gives a band of zero width
    assert curve_band(records[:4], "random", R, "EM") == []
    (_, mean0, low0, high0, n0) = curve_band(records[:5], "random", R, "EM")[0]
    assert (mean0, low0, high0, n0) == pytest.approx((42.0, 42.0, 42.0, 1))
