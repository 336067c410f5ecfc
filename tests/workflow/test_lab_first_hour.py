"""Issue 23 through the command line: --model auto / --from auto, the mask checks of
kwtl finetune, honest messages, colour pictures, consistent reuse messages."""

import json
import shlex
import shutil

import numpy as np
import pytest
from PIL import Image

import kwtl.workflow._auto as auto
from kwtl.cli import main
from kwtl.datasets import make_cells, write_image
from kwtl.workflow import read_selection, select
from workflow_helpers import draw_masks


@pytest.fixture
def package(tiny_data, tmp_path):
    todo = tmp_path / "my todo"  # a space: the printed command must be quoted
    select(tiny_data["target"], tiny_data["model"], 2, todo, progress=False)
    return todo


def _truth(tiny_data):
    return {f"img{i:02d}": m for i, m in enumerate(tiny_data["target_masks"])}


def test_inverted_masks_are_refused_with_the_numbers_unless_accepted(
    tiny_data, package, tmp_path, capsys
):
    draw_masks(package, {k: ~v for k, v in _truth(tiny_data).items()})
    argv = [
        "finetune",
        str(package),
        "--out",
        str(tmp_path / "t.kwtl"),
        "--epochs",
        "1",
        "--no-progress",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "inverted" in err[0] and "--accept-masks" in err[0], err
    assert "% of the pixels as cells" in err[0]
    assert not (tmp_path / "t.kwtl").exists()
    assert main(argv + ["--accept-masks"]) == 0


def test_right_masks_pass_the_checks(tiny_data, package, tmp_path):
    draw_masks(package, _truth(tiny_data))
    assert (
        main(
            [
                "finetune",
                str(package),
                "--out",
                str(tmp_path / "t.kwtl"),
                "--epochs",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )


def test_a_painted_picture_is_refused_with_how_to_save_it(tiny_data, package, tmp_path, capsys):
    table = draw_masks(package, _truth(tiny_data))
    first = table.iloc[0]
    picture = np.asarray(Image.open(package / first["image_file"]))
    big = np.kron(picture, np.ones((1, 1), np.uint8))
    painted = np.repeat(big[..., None], 3, axis=2).copy()
    rng = np.random.default_rng(0)
    painted = np.clip(painted.astype(int) + rng.integers(0, 40, painted.shape), 0, 255)
    painted = painted.astype(np.uint8)
    painted[:3, :3] = (255, 0, 0)  # a red brush stroke on the picture
    (package / first["mask_file"]).unlink()
    write_image(package / first["mask_file"], painted)
    assert main(["finetune", str(package), "--out", str(tmp_path / "t.kwtl"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "painted" in err and "on black" in err


def test_a_jpeg_mask_is_named_lossy_not_missing(tiny_data, package, tmp_path, capsys):
    table = draw_masks(package, _truth(tiny_data))
    mask_file = package / table.iloc[0]["mask_file"]
    mask_file.unlink()
    write_image(mask_file.with_suffix(".jpg"), np.zeros((16, 16), np.uint8))
    assert main(["finetune", str(package), "--out", str(tmp_path / "t.kwtl"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "saved as JPEG" in err and ".jpg" in err and "PNG or TIFF" in err
    assert "missing" not in err


def test_readme_quotes_the_command_and_says_what_random_did(package):
    readme = (package / "README.txt").read_text()
    assert f"kwtl finetune {shlex.quote(str(package))} --out" in readme
    assert "random sample" in readme and "there is no score" in readme
    assert "teach the model most" not in readme


def test_a_scoring_selector_is_described_by_its_score(tiny_data, tmp_path, capsys):
    todo = tmp_path / "todo"
    assert (
        main(
            [
                "select",
                str(tiny_data["target"]),
                "--model",
                str(tiny_data["model"]),
                "--budget",
                "3",
                "--selector",
                "entropy",
                "--out",
                str(todo),
                "--no-progress",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "'entropy' selector" in out and "uncertain" in out
    readme = (todo / "README.txt").read_text()
    assert "mean binary entropy" in readme and "random sample" not in readme
    table = read_selection(todo)
    assert table["score"].notna().all() and table["score"].is_monotonic_decreasing


def test_colour_images_keep_their_colour_for_people_only(tmp_path, tiny_data, capsys):
    grey, _ = make_cells(2, 48, domain="histology", random_state=3)
    for i, g in enumerate(grey):
        rgb = np.stack([g, (g * 0.6).astype(np.uint8), 255 - g], axis=2)
        write_image(tmp_path / "he" / f"tile{i}.png", rgb)
    assert (
        main(
            [
                "select",
                str(tmp_path / "he"),
                "--model",
                str(tiny_data["model"]),
                "--budget",
                "2",
                "--out",
                str(tmp_path / "todo"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "2 of 2 images are colour (RGB): the model sees them in grey" in capsys.readouterr().out
    table = read_selection(tmp_path / "todo")
    for row in table.itertuples():
        picture = np.asarray(Image.open(tmp_path / "todo" / row.image_file))
        model_input = np.asarray(
            Image.open(tmp_path / "todo" / "model_input" / row.image_file.split("/")[-1])
        )
        assert picture.ndim == 3 and picture.shape[2] == 3
        assert model_input.ndim == 2
    sheet = np.asarray(Image.open(tmp_path / "todo" / "contact_sheet.png"))
    assert sheet.ndim == 3


def test_model_auto_chooses_among_the_released_models(tiny_data, tmp_path, monkeypatch, capsys):
    other = tmp_path / "other.kwtl"
    shutil.copy(tiny_data["model"], other)
    shutil.copy(str(tiny_data["model"]) + ".json", str(other) + ".json")
    monkeypatch.setattr(auto, "AUTO_MODELS", (str(tiny_data["model"]), str(other)))
    todo = tmp_path / "todo"
    assert (
        main(
            [
                "select",
                str(tiny_data["target"]),
                "--model",
                "auto",
                "--budget",
                "2",
                "--out",
                str(todo),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "model auto: starting from" in capsys.readouterr().out
    meta = json.loads((todo / "selection.json").read_text())
    assert meta["auto_model"]["choice"] in (str(tiny_data["model"]), str(other))
    assert len(meta["auto_model"]["table"]) == 2


def test_pretrain_from_auto_needs_images_and_records_the_choice(
    tiny_data, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr(auto, "AUTO_MODELS", (str(tiny_data["model"]),))
    out = tmp_path / "m.kwtl"
    assert main(["pretrain", "--from", "auto", "--out", str(out), "--no-progress"]) == 2
    assert "--images" in capsys.readouterr().err
    assert (
        main(
            [
                "pretrain",
                "--from",
                "auto",
                "--images",
                str(tiny_data["target"]),
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    meta = json.loads((tmp_path / "m.kwtl.json").read_text())
    assert meta["training"]["auto_model"]["choice"] == str(tiny_data["model"])


def test_reuse_says_nothing_to_do_even_without_progress(tiny_data, package, tmp_path, capsys):
    draw_masks(package, _truth(tiny_data))
    for argv in (
        ["finetune", str(package), "--out", str(tmp_path / "t.kwtl"), "--epochs", "1"],
        [
            "predict",
            str(tiny_data["target"]),
            "--model",
            str(tiny_data["model"]),
            "--out",
            str(tmp_path / "pred"),
        ],
    ):
        assert main(argv + ["--no-progress"]) == 0
        capsys.readouterr()
        assert main(argv + ["--no-progress"]) == 0
        assert "nothing to do" in capsys.readouterr().out


def test_a_chosen_channel_is_what_people_see_too(tmp_path, tiny_data):
    """With --channel the model sees that channel, and so do the pictures (stretched)."""
    from kwtl.workflow._display import stretch

    grey, _ = make_cells(2, 48, domain="fluorescence", random_state=4)
    for i, g in enumerate(grey):
        write_image(tmp_path / "rgb" / f"t{i}.png", np.stack([g // 4, g, 255 - g], axis=2))
    assert (
        main(
            [
                "select",
                str(tmp_path / "rgb"),
                "--model",
                str(tiny_data["model"]),
                "--budget",
                "1",
                "--channel",
                "0",
                "--out",
                str(tmp_path / "todo"),
                "--no-progress",
            ]
        )
        == 0
    )
    row = read_selection(tmp_path / "todo").iloc[0]
    picture = np.asarray(Image.open(tmp_path / "todo" / row["image_file"]))
    red = grey[int(row["source_image"][1:])] // 4
    s, r, c = int(row["size"]), int(row["row"]), int(row["col"])
    assert picture.ndim == 2
    np.testing.assert_array_equal(picture, stretch(red)[r : r + s, c : c + s])
