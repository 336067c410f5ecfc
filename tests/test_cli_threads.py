"""``kwtl run --threads``: a deliberate, documented thread default (issue 10, item 8)."""

import os

import pytest
import torch

from kwtl import cli


@pytest.fixture
def restore_threads():
    before, env = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    yield
    torch.set_num_threads(before)
    if env is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = env


def test_threads_option_sets_torch_and_workers(restore_threads):
    assert cli._set_threads(1, n_jobs=1) == 1
    assert torch.get_num_threads() == 1
    assert os.environ["OMP_NUM_THREADS"] == "1"


def test_default_threads_split_the_cores_between_jobs(restore_threads):
    torch.set_num_threads(4)
    assert cli._set_threads(None, n_jobs=2) == 2
    torch.set_num_threads(4)
    assert cli._set_threads(None, n_jobs=8) == 1


def test_bad_threads_is_a_clear_error_before_anything_runs(tmp_path, capsys, restore_threads):
    out = tmp_path / "out"
    assert cli.main(["run", "--threads", "0", "--out", str(out), "--no-progress"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err
    assert not out.exists()
