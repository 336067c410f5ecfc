"""Tests of the one home for experiment file names (result files, figure names)."""

import re

import pytest

from kwtl.experiments._files import parse_result_filename, result_filename, safe_name
from kwtl.selection import SELECTORS

ODD_NAMES = ["EM", "ssTEM", "my data/set 2", "a__b", "x.y-z", "", "µ-cells", "../up", "_", "é"]


@pytest.mark.parametrize("name", ODD_NAMES)
def test_safe_name_is_safe_idempotent_and_one_for_one(name):
    safe = safe_name(name)
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", safe)
    assert safe_name(safe) == safe
    assert len(safe) == max(len(name), 1)  # one character for one, "" -> "_"
    if re.fullmatch(r"[A-Za-z0-9_.-]+", name):
        assert safe == name


def test_safe_name_values():
    assert safe_name("my data/set 2") == "my_data_set_2"
    assert safe_name("a  b") == "a__b"  # runs are not collapsed: earlier runs' names stay
    assert safe_name("") == "_"
    assert safe_name(3) == "3"


@pytest.mark.parametrize("target", ODD_NAMES)
@pytest.mark.parametrize("selector", sorted(SELECTORS))
def test_result_filename_round_trips(target, selector):
    name = result_filename(target, selector, 5, 12)
    assert "/" not in name and name.endswith(".json")
    assert parse_result_filename(name) == (safe_name(target), selector, 5, 12)


def test_result_filename_is_the_runners_layout():
    # the layout of the committed records under benchmarks/results/*/results/
    assert result_filename("EM", "consistency", 1, 0) == "EM__consistency__1shot__r0.json"
    assert result_filename("ssTEM", "mc_dropout", 10, 9) == "ssTEM__mc_dropout__10shot__r9.json"


@pytest.mark.parametrize(
    "name",
    [
        "results.json",
        "EM__random__1shot__r0.json.tmp",
        "EM__random__xshot__r0.json",
        "EM__random__1shot.json",
        "__random__1shot__r0.json",
    ],
)
def test_parse_result_filename_rejects_other_names(name):
    assert parse_result_filename(name) is None


def test_committed_records_are_named_by_result_filename():
    import json
    from pathlib import Path

    files = sorted(Path(__file__).resolve().parents[2].glob("benchmarks/results/*/results/*.json"))
    if not files:
        pytest.skip("no committed result records")
    for path in files:
        record = json.loads(path.read_text())
        key = (record["target"], record["selector"], record["n_shots"], record["repeat"])
        assert path.name == result_filename(*key)
        assert parse_result_filename(path.name) == key
