"""Issue 23, item 7: the rough edges a new user met (outside the workflow steps)."""

import stat
import subprocess
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def test_prediction_on_extreme_logits_warns_nothing():
    """numpy's 'overflow encountered in exp' reached the console of kwtl predict."""
    from kwtl.models import FCRNSegmenter

    seg = FCRNSegmenter(module__width=4, patch_size=16, random_state=0).initialize()
    with torch.no_grad():
        seg.module_.conv8.bias.fill_(-200.0)
    with warnings.catch_warnings(), np.errstate(all="warn"):
        warnings.simplefilter("error")
        proba = seg.predict_proba([np.zeros((16, 16), np.uint8)])[0]
    assert proba.max() == 0.0 and proba.dtype == np.float32


def test_model_files_are_readable_by_the_group(tmp_path):
    from kwtl.models import FCRN, save_weights

    save_weights(FCRN(width=2), tmp_path / "w.kwtl")
    for path in (tmp_path / "w.kwtl", tmp_path / "w.kwtl.json"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & stat.S_IRGRP and mode & stat.S_IROTH, oct(mode)


def test_every_command_has_its_generated_option_list_in_the_docs():
    """cli.rst includes generated/kwtl_COMMAND_help.txt, which the docs build writes (conf.py)
    for every command; the files are not kept in the repository."""
    from kwtl.cli import subcommands

    cli_rst = (ROOT / "docs" / "cli.rst").read_text()
    conf = (ROOT / "docs" / "conf.py").read_text()
    assert "subcommands()" in conf
    for command in subcommands():
        assert f"generated/kwtl_{command}_help.txt" in cli_rst, command
    tracked = subprocess.run(
        ["git", "ls-files", "docs/generated"], cwd=ROOT, text=True, capture_output=True
    ).stdout
    assert tracked == ""
    assert "docs/generated/" in (ROOT / ".gitignore").read_text()
