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


def test_readme_commands_match_ci():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    install = re.search(r"^    (python -m pip install .*)$", text, re.M).group(1)
    tests = re.search(r"^    (python -m pytest.*)$", text, re.M).group(1)
    assert install in ci and tests in ci
