"""Run every gallery example (``examples/plot_*.py``) as a script.

The examples are part of the documentation (sphinx-gallery executes them when the docs are
built); running them here keeps them working as the package changes. They use tiny
synthetic data and networks and finish in seconds on a CPU.
"""

import os
import runpy
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import sklearn  # noqa: E402
import torch  # noqa: E402

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("plot_*.py"))


def test_examples_are_found():
    assert EXAMPLES, f"no examples found in {EXAMPLES_DIR}"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(path, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)  # anything an example writes lands in a temporary folder
    plt.close("all")
    try:
        with sklearn.config_context(), warnings.catch_warnings():
            # config_context restores global settings (e.g. metadata routing) afterwards
            warnings.filterwarnings("ignore", message=".*non-interactive.*")
            runpy.run_path(str(path), run_name="__main__")
        assert plt.get_fignums(), f"{path.name} draws no figure"
    finally:
        plt.close("all")
