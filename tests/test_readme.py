"""The README's quick start runs as written."""
import re
from pathlib import Path

import sklearn

README = Path(__file__).resolve().parents[1] / "README.rst"


def test_readme_quick_start_runs(capsys):
    text = README.read_text()
    block = re.search(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", text).group(1)
    code = "\n".join(line[4:] for line in block.splitlines())
    try:
        exec(compile(code, str(README), "exec"), {})
    finally:
        sklearn.set_config(enable_metadata_routing=False)
    assert "[" in capsys.readouterr().out


def test_readme_commands_match_ci():
    text = README.read_text()
    ci = (README.parent / ".ci" / "run").read_text()
    install = re.search(r"^    (python -m pip install .*)$", text, re.M).group(1)
    tests = re.search(r"^    (python -m pytest.*)$", text, re.M).group(1)
    assert install in ci and tests in ci
