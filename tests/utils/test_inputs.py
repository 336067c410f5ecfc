"""check_out_apart: no output is, contains or lies inside one of the command's inputs."""

import pytest

from kwtl.utils._inputs import check_out_apart
from kwtl.utils._output import OutputFolderError


@pytest.fixture
def layout(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(b"x")
    (tmp_path / "model.kwtl").write_bytes(b"w")
    return tmp_path


@pytest.mark.parametrize(
    "out, problem",
    [
        ("imgs", "is the images folder"),
        ("imgs/masks", "lies inside the images folder"),
        ("imgs/./sub/../masks", "lies inside the images folder"),
        (".", "contains the images folder"),
    ],
)
def test_folder_inputs(layout, monkeypatch, out, problem):
    monkeypatch.chdir(layout)
    with pytest.raises(OutputFolderError, match=problem + r".*even with overwrite=True"):
        check_out_apart(out, [("the images folder", "imgs")])


@pytest.mark.parametrize(
    "out, problem", [("model.kwtl", "is the model"), ("model.kwtl.json", "is the model")]
)
def test_file_inputs_and_their_sidecar(layout, monkeypatch, out, problem):
    monkeypatch.chdir(layout)
    with pytest.raises(OutputFolderError, match=problem):
        check_out_apart(out, [("the model", "model.kwtl")])


def test_a_symbolic_link_to_the_input_is_caught(layout):
    (layout / "link").symlink_to(layout / "imgs")
    with pytest.raises(OutputFolderError, match="is the images folder"):
        check_out_apart(layout / "link", [("the images folder", layout / "imgs")])


def test_apart_is_accepted(layout):
    check_out_apart(
        layout / "masks",
        [
            ("the images folder", layout / "imgs"),
            ("the model", layout / "model.kwtl"),
            ("the model", "authors:EM"),
            ("nothing", None),
        ],
    )
    check_out_apart(layout / "imgs2", [("the images folder", layout / "imgs")])  # a prefix
