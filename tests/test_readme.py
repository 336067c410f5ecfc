"""The README's quick start runs as written."""

import re
from pathlib import Path

import numpy as np
import sklearn

README = Path(__file__).resolve().parents[1] / "README.rst"


def test_readme_quick_start_runs(capsys):
    text = README.read_text()
    block = re.search(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", text).group(1)
    code = "\n".join(line[4:] for line in block.splitlines())
    namespace = {}
    try:
        exec(compile(code, str(README), "exec"), namespace)
    finally:
        sklearn.set_config(enable_metadata_routing=False)
    results = namespace["grid"].cv_results_
    means = results["mean_test_score"]
    # 2 selectors x 2 shot counts, each scored on 3 targets x 2 repeats, all finite
    assert means.shape == (4,) and np.all(np.isfinite(means))
    splits = np.array([results[f"split{k}_test_score"] for k in range(6)])
    np.testing.assert_allclose(splits.mean(axis=0), means)
    assert capsys.readouterr().out.strip() == str(means)


def _literal_blocks(section):
    """The literal blocks (``::`` then lines indented by four spaces) of a README section."""
    return [block.strip() for block in re.findall(r"::\n\n((?:    .*\n)+)", section)]


def test_readme_commands_are_exactly_what_ci_runs():
    text = README.read_text()
    section = re.search(r"^Install and test[^\n]*\n-+\n(.*?)\n\S[^\n]*\n-+\n", text, re.S | re.M)
    install, tests = _literal_blocks(section.group(1))[:2]
    ci = (README.parent / ".ci" / "run").read_text()
    ci_install = re.search(r"^INSTALL='(.*)'$", ci, re.M).group(1)
    ci_tests = re.search(r"^TEST='(.*)'$", ci, re.M).group(1)
    assert (ci_install, ci_tests) == (install, tests)
    # a fresh machine: a new virtual environment, torch constrained, the tests' extras
    assert install.startswith("python -m venv .venv && . .venv/bin/activate && ")
    assert '-c requirements/constraints.txt -e ".[tests]"' in install
    assert tests == "python -m pytest"
    assert 'eval "$INSTALL"' in ci and 'eval "$TEST"' in ci
