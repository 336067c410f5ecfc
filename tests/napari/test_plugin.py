"""The napari plugin, driven as a person would: open a package, paint, save, run the steps."""

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("napari")  # in the tests extra: present wherever the tests run

from kwtl.datasets import make_cells, read_image, read_mask, write_image, write_mask  # noqa: E402
from kwtl.napari import AnnotateWidget, StepsWidget  # noqa: E402
from kwtl.napari._annotate import MASK_LAYER, PATCHES_LAYER, SOURCE_LAYER  # noqa: E402
from kwtl.workflow import load_model, pretrain, read_selection  # noqa: E402
from qtpy.QtCore import Qt  # noqa: E402

LEFT = Qt.MouseButton.LeftButton

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_MS = 600_000  # a bound on waiting, not a speed requirement


def _tiny_model(folder):
    src_x, src_y = make_cells(3, 48, domain="em", random_state=0)
    for i, (x, y) in enumerate(zip(src_x, src_y)):
        write_image(folder / "source" / "images" / f"s{i}.png", x)
        write_mask(folder / "source" / "masks" / f"s{i}.png", y)
    model = folder / "model.kwtl"
    pretrain(
        [folder / "source"],
        model,
        width=4,
        patch_size=32,
        stride=16,
        meta_iterations=2,
        inner_steps=1,
        progress=False,
    )
    return model


@pytest.fixture(scope="module")
def real_folder(tmp_path_factory):
    """Three 128x128 crops of real ssTEM images (and their ground truth), a tiny model."""
    import os

    shared = Path(os.environ.get("KWTL_SHARED_DATA", ROOT.parent / "shared" / "data"))
    if not shared.is_dir():  # as the shared_data fixture of tests/conftest.py
        pytest.skip(f"real datasets not found at {shared}")
    root = tmp_path_factory.mktemp("napari")
    truth = {}
    for name in ("00", "01", "02"):
        image = read_image(shared / "ssTEM" / "images" / f"{name}.png")[256:384, 256:384]
        mask = read_mask(shared / "ssTEM" / "masks" / f"{name}.png")[256:384, 256:384]
        write_image(root / "images" / f"{name}.png", image)
        truth[name] = mask
    return {"root": root, "images": root / "images", "truth": truth, "model": _tiny_model(root)}


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def _draw_all_from_truth(annotate, truth, qtbot):
    """The annotator: every item's mask from the ground truth, painted and saved."""
    items = annotate.items
    for k in range(len(items)):
        annotate.go(k, force=True)
        r, c, h, w = items.box(k)
        layer = annotate.viewer.layers[MASK_LAYER]
        layer.data = (truth[str(items.row(k)["source_image"])][r : r + h, c : c + w] > 0).astype(
            np.uint32
        )
        qtbot.mouseClick(annotate.save_button, LEFT)
    assert annotate.progress_label.text() == f"{len(items)} of {len(items)} drawn"


def test_manifest_declares_both_widgets():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_file(ROOT / "kwtl" / "napari" / "napari.yaml")
    assert manifest.name == "kwtl"
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    assert commands == {
        "kwtl.annotate": "kwtl.napari._annotate:AnnotateWidget",
        "kwtl.steps": "kwtl.napari._steps:StepsWidget",
    }
    assert {w.command for w in manifest.contributions.widgets} == set(commands)
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["napari.manifest"] == {
        "kwtl": "kwtl.napari:napari.yaml"
    }


@pytest.mark.integration
def test_annotate_a_real_package(make_napari_viewer, qtbot, real_folder, tmp_path, screenshot_dir):
    from kwtl.workflow import select

    todo = tmp_path / "todo"
    select(real_folder["images"], real_folder["model"], 4, todo, progress=False)
    viewer = make_napari_viewer(show=True)
    annotate = AnnotateWidget(viewer)
    viewer.window.add_dock_widget(annotate)
    annotate.folder_edit.setText(str(todo))
    qtbot.mouseClick(annotate.open_button, LEFT)
    table = read_selection(todo).sort_values("rank")
    first = table.iloc[0]
    assert annotate.progress_label.text() == "0 of 4 drawn"
    assert f"#{first['rank']}" in annotate.item_label.text()
    # the source image, its chosen regions numbered by rank, a labels layer on the region
    source = viewer.layers[SOURCE_LAYER].data
    np.testing.assert_array_equal(
        source, read_image(real_folder["images"] / f"{first['source_image']}.png")
    )
    shapes = viewer.layers[PATCHES_LAYER]
    same = table[table["source_image"] == first["source_image"]]
    assert len(shapes.data) == len(same)
    assert sorted(shapes.features["rank"]) == sorted(same["rank"])
    labels = viewer.layers[MASK_LAYER]
    assert labels.data.shape == (32, 32)
    np.testing.assert_array_equal(labels.translate, [first["row"], first["col"]])
    # paint two cells as two instance labels, as the brush would
    labels.brush_size = 5
    labels.paint((8, 8), 1)
    labels.paint((20, 24), 2)
    drawn = np.array(labels.data)
    assert set(np.unique(drawn)) == {0, 1, 2}
    viewer.screenshot(path=str(screenshot_dir / "napari_annotate.png"), canvas_only=False)
    qtbot.mouseClick(annotate.save_button, LEFT)
    saved = read_mask(todo / first["mask_file"])
    np.testing.assert_array_equal(saved, drawn)  # instance labels kept
    assert annotate.progress_label.text() == "1 of 4 drawn"
    # next and previous; reopening shows the mask already drawn
    qtbot.mouseClick(annotate.next_button, LEFT)
    assert annotate.index == 1 and not viewer.layers[MASK_LAYER].data.any()
    qtbot.mouseClick(annotate.previous_button, LEFT)
    np.testing.assert_array_equal(viewer.layers[MASK_LAYER].data, drawn)
    again = AnnotateWidget(viewer)
    again.open_package(todo)
    assert again.progress_label.text() == "1 of 4 drawn"
    assert again.index == 1  # opens on the first item still to draw
    again.go(0)
    np.testing.assert_array_equal(viewer.layers[MASK_LAYER].data, drawn)
    grab = np.asarray(viewer.screenshot(canvas_only=True))
    assert grab.ndim == 3 and grab[..., :3].std() > 1  # a picture, not a blank


def test_unsaved_drawing_is_not_left_silently(make_napari_viewer, qtbot, tmp_path):
    from kwtl.workflow import select

    model = _tiny_model(tmp_path)
    images, _ = make_cells(2, 96, domain="em", random_state=3)
    for i, image in enumerate(images):
        write_image(tmp_path / "imgs" / f"i{i}.png", image)
    select(tmp_path / "imgs", model, 3, tmp_path / "todo", progress=False)
    viewer = make_napari_viewer(show=True)
    annotate = AnnotateWidget(viewer)
    annotate.open_package(tmp_path / "todo")
    viewer.layers[MASK_LAYER].paint((4, 4), 1)
    qtbot.mouseClick(annotate.next_button, LEFT)
    assert annotate.index == 0 and "unsaved" in annotate.status_label.text()
    qtbot.mouseClick(annotate.next_button, LEFT)  # a second press leaves it unsaved
    assert annotate.index == 1
    assert annotate.items.n_drawn() == 0
    annotate.open_package(tmp_path / "nothing")
    assert "not a kwtl select package" in annotate.status_label.text()


@pytest.mark.integration
def test_two_rounds_through_the_widgets(
    make_napari_viewer, qtbot, real_folder, tmp_path, screenshot_dir
):
    viewer = make_napari_viewer(show=True)
    annotate = AnnotateWidget(viewer)
    steps = StepsWidget(viewer)
    viewer.window.add_dock_widget(annotate)
    viewer.window.add_dock_widget(steps)
    truth = real_folder["truth"]
    # round 1: select, draw, fine-tune
    steps.select_images.setText(str(real_folder["images"]))
    steps.select_model.setText(str(real_folder["model"]))
    steps.select_budget.setValue(3)
    steps.select_out.setText(str(tmp_path / "todo1"))
    qtbot.mouseClick(steps.select_button, LEFT)
    _wait(qtbot, steps)
    assert steps.error is None, steps.error
    assert annotate.items is not None and annotate.items.folder == tmp_path / "todo1"
    _draw_all_from_truth(annotate, truth, qtbot)
    steps.finetune_steps.setValue(4)
    steps.finetune_out.setText(str(tmp_path / "tuned1.kwtl"))
    assert steps.finetune_packages.text() == str(tmp_path / "todo1")
    qtbot.mouseClick(steps.finetune_button, LEFT)
    _wait(qtbot, steps)
    assert steps.error is None, steps.error
    assert (tmp_path / "tuned1.kwtl").is_file()
    # round 2: select excluding round 1, draw, fine-tune on both
    steps.select_exclude.setText(str(tmp_path / "todo1"))
    steps.select_out.setText(str(tmp_path / "todo2"))
    qtbot.mouseClick(steps.select_button, LEFT)
    _wait(qtbot, steps)
    assert steps.error is None, steps.error
    assert annotate.items.folder == tmp_path / "todo2"
    _assert_no_overlap(tmp_path / "todo1", tmp_path / "todo2")
    _draw_all_from_truth(annotate, truth, qtbot)
    assert steps.finetune_packages.text() == f"{tmp_path / 'todo1'};{tmp_path / 'todo2'}"
    steps.finetune_out.setText(str(tmp_path / "tuned2.kwtl"))
    qtbot.mouseClick(steps.finetune_button, LEFT)
    _wait(qtbot, steps)
    assert steps.error is None, steps.error
    record = json.loads((tmp_path / "tuned2.kwtl.json").read_text())["training"]
    assert len(record["sources"]) == 6 and len(record["selections"]) == 2
    # predict: masks appear as labels layers
    assert steps.predict_model.text() == str(tmp_path / "tuned2.kwtl")
    steps.predict_images.setText(str(real_folder["images"]))
    steps.predict_out.setText(str(tmp_path / "masks"))
    steps.predict_instances.setChecked(True)
    qtbot.mouseClick(steps.predict_button, LEFT)
    _wait(qtbot, steps)
    assert steps.error is None, steps.error
    for name in ("00", "01", "02"):
        layer = viewer.layers[f"{name} mask"]
        np.testing.assert_array_equal(
            layer.data, read_mask(tmp_path / "masks" / "masks" / f"{name}.png")
        )
    assert steps.progress_bar.value() == steps.progress_bar.maximum()
    viewer.screenshot(path=str(screenshot_dir / "napari_steps.png"), canvas_only=False)


def _assert_no_overlap(first, second):
    a, b = read_selection(first), read_selection(second)
    for _, x in a.iterrows():
        for _, y in b[b["source_image"] == x["source_image"]].iterrows():
            size = int(x["size"])
            assert abs(x["row"] - y["row"]) >= size or abs(x["col"] - y["col"]) >= size


def test_cancel_then_resume(make_napari_viewer, qtbot, tmp_path):
    from kwtl.workflow import select

    model = _tiny_model(tmp_path)
    images, masks = make_cells(2, 64, domain="em", random_state=4)
    for i, image in enumerate(images):
        write_image(tmp_path / "imgs" / f"i{i}.png", image)
    select(tmp_path / "imgs", model, 2, tmp_path / "todo", progress=False)
    truth = dict(zip(["i0", "i1"], masks))
    for row in read_selection(tmp_path / "todo").itertuples():
        write_mask(
            tmp_path / "todo" / row.mask_file,
            truth[row.source_image][row.row : row.row + 32, row.col : row.col + 32],
        )
    viewer = make_napari_viewer(show=True)
    steps = StepsWidget(viewer)
    ticks = []
    steps._relay.progressed.connect(lambda d, n, t: ticks.append((d, n, t)))
    steps._relay.progressed.connect(lambda d, n, t: n >= 3 and steps.cancel())
    steps.finetune_packages.setText(str(tmp_path / "todo"))
    steps.finetune_steps.setValue(4000)
    steps.finetune_out.setText(str(tmp_path / "tuned.kwtl"))
    qtbot.mouseClick(steps.finetune_button, LEFT)
    _wait(qtbot, steps)
    assert "cancelled" in steps.status_label.text()
    assert not (tmp_path / "tuned.kwtl").exists()
    assert any(d == "fine-tuning" for d, _, _ in ticks)
    steps._relay.progressed.disconnect()
    steps._relay.progressed.connect(steps._on_progress)
    steps.finetune_steps.setValue(8)
    qtbot.mouseClick(steps.finetune_button, LEFT)
    _wait(qtbot, steps)
    assert steps.error is None, steps.error
    assert load_model(tmp_path / "tuned.kwtl") is not None
