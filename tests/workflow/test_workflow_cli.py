"""The four commands as a new user runs them: ``kwtl pretrain/select/finetune/predict``."""

import json
import re

import numpy as np
import pytest
from PIL import Image
from skimage.measure import label

from kwtl.cli import main
from kwtl.datasets import read_image, read_mask, write_image, write_mask
from kwtl.workflow import SELECTION_COLUMNS, read_selection
from workflow_helpers import draw_masks


def _one_line_error(capsys, argv, pattern):
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert len(err) == 1 and err[0].startswith("kwtl: error:"), err
    assert re.search(pattern, err[0]), err[0]


def test_bad_input_gets_one_line_and_exit_2(tiny_data, tmp_path, capsys):
    target, model = str(tiny_data["target"]), str(tiny_data["model"])
    cases = [
        (
            [
                "select",
                str(tmp_path / "absent"),
                "--model",
                model,
                "--budget",
                "2",
                "--out",
                str(tmp_path / "t1"),
            ],
            "image folder not found",
        ),
        (
            [
                "select",
                target,
                "--model",
                str(tmp_path / "nope.kwtl"),
                "--budget",
                "2",
                "--out",
                str(tmp_path / "t2"),
            ],
            "no such file",
        ),
        (
            ["select", target, "--model", model, "--budget", "0", "--out", str(tmp_path / "t3")],
            r"--budget must be an int in the range \[1, inf\); got 0",
        ),
        (
            [
                "select",
                target,
                "--model",
                model,
                "--budget",
                "2",
                "--selector",
                "best",
                "--out",
                str(tmp_path / "t4"),
            ],
            "unknown selector",
        ),
        (
            ["finetune", str(tmp_path), "--out", str(tmp_path / "t.kwtl")],
            "not a finished kwtl select folder",
        ),
        (["pretrain", "--out", str(tmp_path / "m.kwtl")], "nothing to pre-train"),
        (
            ["pretrain", "--from", "authors:nothing", "--out", str(tmp_path / "m.kwtl")],
            "unknown pretrained model",
        ),
        (
            ["pretrain", str(tmp_path / "absent"), "--out", str(tmp_path / "m.kwtl")],
            "source folder not found",
        ),
        (
            ["predict", target, "--model", model, "--out", str(tmp_path / "p"), "--threads", "0"],
            "--threads must be at least 1",
        ),
    ]
    for argv, pattern in cases:
        _one_line_error(capsys, argv + ["--no-progress"], pattern)


def test_from_authors_weights_converts_them_with_provenance(shared_data, tmp_path, monkeypatch):
    weights = shared_data.parent / "weights"
    if not (weights / "authors_plft_ssTEM.pth").is_file():
        pytest.skip("the authors' weights are not in ../shared/weights")
    monkeypatch.setenv("KWTL_WEIGHTS", str(weights.resolve()))
    out = tmp_path / "authors.kwtl"
    assert main(["pretrain", "--from", "authors:ssTEM", "--out", str(out), "--no-progress"]) == 0
    meta = json.loads((tmp_path / "authors.kwtl.json").read_text())
    assert meta["architecture"]["width"] == 32 and meta["architecture"]["affine_batchnorm"]
    from kwtl.models import PRETRAINED, load_pretrained
    from kwtl.workflow import load_model

    theirs = load_pretrained("authors:ssTEM").module_.state_dict()
    ours = load_model(out).module_.state_dict()
    assert all(np.array_equal(theirs[k].numpy(), ours[k].numpy()) for k in theirs)

    assert meta["training"]["start"] == {
        "name": "authors:ssTEM",
        "sha256": PRETRAINED["authors:ssTEM"][2],
    }


@pytest.mark.integration
def test_four_commands_on_real_images(shared_data, tmp_path, capsys):
    """pretrain on EM (images/ + masks/) and B5 (Cellpose pairs), select on ssTEM, the
    annotator's masks from the ground truth, finetune, predict --instances."""

    def centre(array, size=128):
        top, left = (array.shape[0] - size) // 2, (array.shape[1] - size) // 2
        return array[top : top + size, left : left + size]

    for name, layout in (("EM", "folders"), ("B5_sub_DSB2018_fluo360", "pairs")):
        files = sorted((shared_data / name / "images").iterdir())[:2]
        for f in files:
            image, mask = read_image(f), read_mask(shared_data / name / "masks" / f.name)
            if layout == "folders":
                write_image(tmp_path / name / "images" / f"{f.stem}.png", centre(image))
                write_mask(tmp_path / name / "masks" / f"{f.stem}.png", centre(mask) > 0)
            else:  # Cellpose style, instance labels
                write_image(tmp_path / name / f"{f.stem}.tif", centre(image))
                write_mask(tmp_path / name / f"{f.stem}_masks.tif", label(centre(mask) > 0))
    target, truth = tmp_path / "ssTEM", {}
    for f in sorted((shared_data / "ssTEM" / "images").iterdir())[:3]:
        write_image(target / f"{f.stem}.png", centre(read_image(f)))
        truth[f.stem] = centre(read_mask(shared_data / "ssTEM" / "masks" / f.name)) > 0
    model, todo, tuned, masks = (
        tmp_path / "model.kwtl",
        tmp_path / "todo",
        tmp_path / "tuned.kwtl",
        tmp_path / "masks",
    )
    run = ["--no-progress", "--threads", "1"]
    assert (
        main(
            [
                "pretrain",
                str(tmp_path / "EM"),
                str(tmp_path / "B5_sub_DSB2018_fluo360"),
                "--out",
                str(model),
                "--width",
                "8",
                "--patch-size",
                "32",
                "--stride",
                "16",
                "--meta-iterations",
                "2",
                "--inner-steps",
                "2",
                *run,
            ]
        )
        == 0
    )
    sources = json.loads((tmp_path / "model.kwtl.json").read_text())["training"]["sources"]
    assert [(s["name"], s["n_images"]) for s in sources] == [
        ("EM", 2),
        ("B5_sub_DSB2018_fluo360", 2),
    ]

    assert (
        main(
            [
                "select",
                str(target),
                "--model",
                str(model),
                "--budget",
                "6",
                "--out",
                str(todo),
                *run,
            ]
        )
        == 0
    )
    table = read_selection(todo)
    assert tuple(table.columns) == SELECTION_COLUMNS and len(table) == 6
    assert set(table["source_image"]) <= set(truth) and set(table["size"]) == {32}
    assert sorted(p.stem for p in (todo / "overview").glob("*.png")) == sorted(truth)
    for row in table.itertuples():
        assert read_image(todo / row.image_file).shape == (32, 32)
    assert "mask" in (todo / "README.txt").read_text()

    # the annotator: instance-label masks cut from the ground truth, saved where asked
    def as_instances(mask):
        return label(mask).astype(np.uint16)

    draw_masks(todo, {k: as_instances(v) for k, v in truth.items()})
    assert main(["finetune", str(todo), "--out", str(tuned), "--epochs", "2", *run]) == 0
    said = capsys.readouterr().out
    assert "fine-tuned" in said and "2 epochs on 6 patches" in said
    recorded = json.loads((tmp_path / "tuned.kwtl.json").read_text())
    assert [s["mask"] for s in recorded["training"]["sources"]] == table["mask_file"].tolist()
    assert recorded["kwtl_version"] and recorded["architecture"]["width"] == 8

    assert (
        main(
            [
                "predict",
                str(target),
                "--model",
                str(tuned),
                "--out",
                str(masks),
                "--instances",
                "--suffix",
                "_masks",
                *run,
            ]
        )
        == 0
    )
    for name, gt in truth.items():
        labels = np.asarray(Image.open(masks / "masks" / f"{name}_masks.png"))
        assert labels.shape == gt.shape and labels.dtype in (np.uint8, np.uint16)
        values = np.unique(labels)
        assert values[0] == 0 or len(values) == 1
        assert np.array_equal(values, np.arange(len(values)))  # 0 then 1..n, no gaps
        assert (masks / "overlays" / f"{name}_overlay.png").is_file()
