"""``kwtl run --out``: nothing a user made is overwritten; bad paths are one-line errors."""

import hashlib
import json
from pathlib import Path

import pytest

from kwtl.cli import OUTPUT_MARKER, OutputFolderError, main, prepare_output_dir


def _snapshot(root):
    return {
        str(p.relative_to(root)): (
            None if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        )
        for p in sorted(Path(root).rglob("*"))
    }


@pytest.fixture
def users_folder(tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "report.md").write_text("my own notes\n")
    (out / "results.csv").write_text("a,b\n1,2\n")
    (out / "results.json").write_text("{}\n")
    return out


def _run(capsys, *argv):
    code = main(["run", "--no-progress", "--repeats", "1", "--shots", "1", *argv])
    err = capsys.readouterr().err
    return code, err


CASES = {
    "a user's non-empty folder": (
        lambda tmp, users: ["--out", str(users)],
        "not empty and was not made by kwtl",
    ),
    "a file": (lambda tmp, users: ["--out", str(users / "report.md")], "is a file"),
    "a path below a file": (
        lambda tmp, users: ["--out", str(users / "report.md" / "x")],
        "cannot write there|is a file|Not a directory",
    ),
    "--resume of a user's folder": (
        lambda tmp, users: ["--out", str(users), "--resume"],
        "holds no kwtl run",
    ),
    "--resume of a missing folder": (
        lambda tmp, users: ["--out", str(tmp / "nope"), "--resume"],
        "nothing to resume",
    ),
    "--shots 0": (
        lambda tmp, users: ["--out", str(tmp / "new"), "--shots", "0"],
        "--shots must be positive",
    ),
    "missing --data": (
        lambda tmp, users: ["--out", str(tmp / "new2"), "--data", str(tmp / "absent")],
        "not found",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_refused_with_one_line_and_exit_2(case, tmp_path, users_folder, capsys):
    argv, match = CASES[case]
    before = _snapshot(tmp_path)
    code, err = _run(capsys, *argv(tmp_path, users_folder))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kwtl: error:"), err
    import re

    assert re.search(match, lines[0]), lines[0]
    after = _snapshot(tmp_path)
    # nothing of the user's changed; at most an empty output folder was claimed
    assert {k: v for k, v in after.items() if k in before} == before
    assert all(k.startswith("new") for k in set(after) - set(before))


def test_policy_accepts_new_empty_and_own_folders(tmp_path):
    new = prepare_output_dir(tmp_path / "a" / "b")
    assert json.loads((new / OUTPUT_MARKER).read_text())["made_by"] == "kwtl run"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert prepare_output_dir(empty) == empty
    (new / "results").mkdir()
    assert prepare_output_dir(new, resume=True) == new  # kwtl's own: resumed
    older = tmp_path / "older"  # a folder of an earlier kwtl (experiment.json, no marker)
    older.mkdir()
    (older / "experiment.json").write_text("{}")
    assert prepare_output_dir(older, resume=True) == older


def test_force_writes_into_a_users_folder_but_keeps_other_files(users_folder):
    (users_folder / "keep.txt").write_text("mine")
    with pytest.raises(OutputFolderError, match="overwrite=True"):
        prepare_output_dir(users_folder)
    prepare_output_dir(users_folder, force=True)
    assert (users_folder / OUTPUT_MARKER).exists()
    assert (users_folder / "keep.txt").read_text() == "mine"


def test_resume_and_force_are_exclusive(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["run", "--out", str(tmp_path), "--resume", "--force"])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_shots_larger_than_the_pool_fail_before_any_training(tmp_path, capsys, monkeypatch):
    import torch

    def trap(*args, **kwargs):
        raise AssertionError("training started before the budget was checked")

    monkeypatch.setattr(torch.optim.Adam, "step", trap)
    code = main(
        [
            "run",
            "--no-progress",
            "--repeats",
            "1",
            "--shots",
            "100000",
            "--selectors",
            "random",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "more shots than candidates" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "results").exists() or not any(
        (tmp_path / "out" / "results").iterdir()
    )
