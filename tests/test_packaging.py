"""The declared dependency ranges, the minimum and lock files and the licence agree."""

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
RUNTIME = [Requirement(r) for r in PROJECT["dependencies"]]
TESTS = [Requirement(r) for r in PROJECT["optional-dependencies"]["tests"]]
ALL = RUNTIME + [
    Requirement(r) for extra in PROJECT["optional-dependencies"].values() for r in extra
]


def _pins(name):
    pins = {}
    for line in (ROOT / "requirements" / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(req.name)] = Version(spec.version)
    return pins


@pytest.mark.parametrize("req", ALL, ids=str)
def test_every_dependency_has_a_lower_and_an_upper_bound(req):
    operators = {spec.operator for spec in req.specifier}
    assert ">=" in operators and "<" in operators, f"{req} is not a bounded range"


def test_minimum_file_pins_exactly_the_lower_bounds():
    pins = _pins("minimum.txt")
    for req in RUNTIME + TESTS:
        (lower,) = [Version(s.version) for s in req.specifier if s.operator == ">="]
        name = canonicalize_name(req.name)
        if name == "torch":  # only the CPU build of constraints.txt is available to test
            continue
        assert pins[name] == lower, f"minimum.txt has {name}=={pins[name]}, pyproject {req}"
        if req.extras:  # dask[distributed]: the extra's package at the same release
            assert pins["distributed"] == lower


def test_lock_file_lies_within_every_range():
    locked = _pins("lock.txt")
    assert "kwtl" not in locked
    for req in RUNTIME + TESTS:
        version = locked[canonicalize_name(req.name)]
        assert req.specifier.contains(version, prereleases=True), f"{version} not in {req}"


def test_constraints_pin_the_torch_the_ranges_allow():
    pinned = _pins("constraints.txt")["torch"]
    (torch_req,) = [r for r in RUNTIME if canonicalize_name(r.name) == "torch"]
    assert torch_req.specifier.contains(pinned)


def test_a_package_has_one_range_in_every_extra():
    ranges = {}
    for extra, reqs in PROJECT["optional-dependencies"].items():
        for req in map(Requirement, reqs):
            ranges.setdefault(canonicalize_name(req.name), {})[extra] = str(req.specifier)
    for name, by_extra in ranges.items():
        assert len(set(by_extra.values())) == 1, f"{name} has different ranges: {by_extra}"


def test_docs_extra_installs_what_the_api_reference_imports():
    # docs/api.rst documents kwtl.napari, which imports napari and Qt: without them the
    # documented build (pip install ".[docs]"; sphinx) stops at that import
    extras = PROJECT["optional-dependencies"]
    documented = re.findall(r"automodule:: kwtl\.(\w+)", (ROOT / "docs/api.rst").read_text())
    docs = {canonicalize_name(Requirement(r).name) for r in extras["docs"]}
    for module in set(documented) & set(extras):
        needed = {canonicalize_name(Requirement(r).name) for r in extras[module]}
        assert needed <= docs, f"kwtl.{module} needs {sorted(needed - docs)} in the docs extra"


def test_mit_licence_is_shipped_and_declared():
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "kwtl developers" in text
