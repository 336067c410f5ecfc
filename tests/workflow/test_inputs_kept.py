"""Issue 23, item 1: no command writes into, over or around one of its inputs, --force or not.

The new user's case: ``kwtl predict imgs --out imgs --force`` replaced every image by its
mask. Every command is tried with its output at, inside and around each input; each must
end with one line naming the input, exit code 2, and every input file unchanged.
"""

import hashlib
import shutil

import pytest

from kwtl.cli import main
from kwtl.workflow import select
from workflow_helpers import draw_masks


def _snapshot(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def lab(tiny_data, tmp_path):
    """A copy of the tiny lab: images, a model, a finished package with masks."""
    root = tmp_path / "lab"
    shutil.copytree(tiny_data["target"], root / "imgs")
    shutil.copy(tiny_data["model"], root / "model.kwtl")
    shutil.copy(str(tiny_data["model"]) + ".json", root / "model.kwtl.json")
    shutil.copytree(tiny_data["source"], root / "src")
    select(root / "imgs", root / "model.kwtl", 2, root / "todo", progress=False)
    truth = {f"img{i:02d}": m for i, m in enumerate(tiny_data["target_masks"])}
    draw_masks(root / "todo", truth)
    return root


def _refused(capsys, argv, what):
    code = main(argv + ([] if argv[0] == "evaluate" else ["--no-progress"]))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("kwtl: error:"), err
    assert what in err[0] and "even with --force" in err[0], err[0]


@pytest.mark.parametrize(
    "out, what",
    [
        ("imgs", "is the images folder"),
        ("imgs/masks", "lies inside the images folder"),
        (".", "contains the images folder"),
        ("model.kwtl", "is the model"),
    ],
)
def test_predict(lab, capsys, monkeypatch, out, what):
    monkeypatch.chdir(lab)
    before = _snapshot(lab)
    _refused(capsys, ["predict", "imgs", "--model", "model.kwtl", "--out", out, "--force"], what)
    assert _snapshot(lab) == before


@pytest.mark.parametrize(
    "out, what",
    [
        ("imgs", "is the images folder"),
        ("imgs/todo", "lies inside the images folder"),
        (".", "contains the images folder"),
    ],
)
def test_select(lab, capsys, monkeypatch, out, what):
    monkeypatch.chdir(lab)
    before = _snapshot(lab)
    _refused(
        capsys,
        ["select", "imgs", "--model", "model.kwtl", "--budget", "1", "--out", out, "--force"],
        what,
    )
    assert _snapshot(lab) == before


@pytest.mark.parametrize(
    "out, what",
    [
        ("todo/tuned.kwtl", "lies inside the annotation package"),
        ("todo/model_plft.kwtl", "lies inside the annotation package"),
        ("model.kwtl", "is the starting model"),
        ("model.kwtl.json", "is the starting model"),
    ],
)
def test_finetune(lab, capsys, monkeypatch, out, what):
    monkeypatch.chdir(lab)
    before = _snapshot(lab)
    _refused(capsys, ["finetune", "todo", "--model", "model.kwtl", "--out", out, "--force"], what)
    assert _snapshot(lab) == before


@pytest.mark.parametrize(
    "argv, what",
    [
        (["src", "--out", "src/model.kwtl"], "lies inside a source folder"),
        (["--from", "model.kwtl", "--out", "model.kwtl"], "is the starting model"),
        (["src", "--from", "model.kwtl", "--out", "model.kwtl.json"], "is the starting model"),
    ],
)
def test_pretrain(lab, capsys, monkeypatch, argv, what):
    monkeypatch.chdir(lab)
    before = _snapshot(lab)
    _refused(capsys, ["pretrain"] + argv + ["--force", "--meta-iterations", "1"], what)
    assert _snapshot(lab) == before


def test_evaluate(lab, capsys, monkeypatch):
    monkeypatch.chdir(lab)
    before = _snapshot(lab)
    _refused(
        capsys,
        [
            "evaluate",
            "todo/masks",
            "--truth",
            "todo/masks",
            "--out",
            "todo/masks/scores.csv",
            "--force",
        ],
        "lies inside the predicted masks",
    )
    assert _snapshot(lab) == before


def test_outputs_apart_from_the_inputs_still_work(lab, monkeypatch):
    monkeypatch.chdir(lab)
    assert main(["predict", "imgs", "--model", "model.kwtl", "--out", "pred", "--no-progress"]) == 0
    assert main(["finetune", "todo", "--out", "tuned.kwtl", "--epochs", "1", "--no-progress"]) == 0
