"""The four workflow steps on tiny synthetic folders: outputs, resume, refusals."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import kwtl.workflow._pretrain as pretrain_module
from workflow_helpers import TINY, draw_masks
from kwtl import FewShotSegmentation
from kwtl.datasets import read_image
from kwtl.models import ModelFileError
from kwtl.selection import DEFAULT_SELECTOR, BaseSelector, make_selector
from kwtl.workflow._display import stretch
from kwtl.workflow import (
    SELECTION_COLUMNS,
    finetune,
    load_model,
    predict,
    pretrain,
    read_annotations,
    read_selection,
    select,
)


def _state(segmenter):
    return {k: v.clone() for k, v in segmenter.module_.state_dict().items()}


def _same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _truth(tiny_data):
    return {f"img{i:02d}": m for i, m in enumerate(tiny_data["target_masks"])}


@pytest.fixture(scope="module")
def package(tiny_data, tmp_path_factory):
    todo = tmp_path_factory.mktemp("todo") / "todo"
    result = select(tiny_data["target"], tiny_data["model"], 5, todo, progress=False)
    return todo, result


# ------------------------------------------------------------------ pretrain
def test_pretrain_sidecar_records_provenance_and_loads_back(tiny_data):
    meta = json.loads((tiny_data["model"].parent / "model.kwtl.json").read_text())
    training = meta["training"]
    assert meta["architecture"]["width"] == TINY["width"]
    assert training["step"] == "pretrain" and training["n_images"] == 3
    (source,) = training["sources"]
    assert source["name"] == "source" and len(source["sha256"]) == 64
    assert training["parameters"]["meta_iterations"] == TINY["meta_iterations"]
    seg = load_model(tiny_data["model"])
    assert (seg.patch_size, seg.stride) == (TINY["patch_size"], TINY["stride"])
    assert seg.module_.width == TINY["width"]


def test_pretrain_resumes_to_the_same_weights(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(pretrain_module, "CHECKPOINT_EVERY", 1)
    params = dict(TINY, meta_iterations=3)
    whole = pretrain([tiny_data["source"]], tmp_path / "whole.kwtl", progress=False, **params)

    from kwtl.models import FCRNSegmenter

    calls = {"n": 0}
    real = FCRNSegmenter.meta_fit

    def dies_on_second_block(self, *args):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(FCRNSegmenter, "meta_fit", dies_on_second_block)
    with pytest.raises(KeyboardInterrupt):
        pretrain([tiny_data["source"]], tmp_path / "resumed.kwtl", progress=False, **params)
    assert not (tmp_path / "resumed.kwtl").exists()
    monkeypatch.setattr(FCRNSegmenter, "meta_fit", real)
    resumed = pretrain([tiny_data["source"]], tmp_path / "resumed.kwtl", progress=False, **params)
    assert _same_state(_state(whole), _state(resumed))
    assert not list(tmp_path.glob(".*kwtl-work"))  # checkpoints removed when done


def test_pretrain_never_replaces_another_file(tiny_data, tmp_path, capsys):
    out = tmp_path / "mine.kwtl"
    out.write_text("my notes")
    with pytest.raises(FileExistsError, match="exists"):
        pretrain([tiny_data["source"]], out, progress=False, **TINY)
    assert out.read_text() == "my notes"
    with pytest.raises(ValueError, match="nothing to pre-train"):
        pretrain([], tmp_path / "m.kwtl")


def test_pretrain_rerun_with_same_inputs_loads_the_file(tiny_data, capsys):
    before = tiny_data["model"].stat().st_mtime_ns
    pretrain([tiny_data["source"]], tiny_data["model"], progress=False, **TINY)
    assert capsys.readouterr().out == ""  # the library prints nothing unless verbose
    pretrain([tiny_data["source"]], tiny_data["model"], progress=False, verbose=True, **TINY)
    assert "already pre-trained" in capsys.readouterr().out
    assert tiny_data["model"].stat().st_mtime_ns == before


# ------------------------------------------------------------------ select
def test_select_writes_the_annotation_package(tiny_data, package):
    todo, result = package
    table = read_selection(todo)
    assert tuple(table.columns) == SELECTION_COLUMNS
    assert len(table) == 5 and table["rank"].tolist() == [1, 2, 3, 4, 5]
    assert table["score"].isna().all()  # the default (random) draws: no score (issue 23)
    size = TINY["patch_size"]
    images = dict(zip([f"img{i:02d}" for i in range(3)], tiny_data["target_images"]))
    for row in table.itertuples():
        assert row.image_file == f"images/{row.source_image}_r{row.row:04d}_c{row.col:04d}.png"
        assert row.mask_file == row.image_file.replace("images/", "masks/")
        source = images[row.source_image]
        window = source[row.row : row.row + size, row.col : row.col + size]
        model_input = np.asarray(
            Image.open(todo / row.image_file.replace("images/", "model_input/"))
        )
        assert np.array_equal(model_input, window)  # the model's input, unchanged
        picture = np.asarray(Image.open(todo / row.image_file))  # for people: stretched
        assert np.array_equal(
            picture, stretch(source)[row.row : row.row + size, row.col : row.col + size]
        )
    # chosen patches of one image do not overlap
    for _, group in table.groupby("source_image"):
        corners = group[["row", "col"]].to_numpy()
        for a in range(len(corners)):
            for b in range(a + 1, len(corners)):
                assert np.any(np.abs(corners[a] - corners[b]) >= size)
    assert sorted(p.name for p in (todo / "overview").iterdir()) == sorted(
        f"{name}.png" for name in set(table["source_image"])
    )  # images holding picks only
    assert (todo / "contact_sheet.png").is_file()
    readme = (todo / "README.txt").read_text()
    assert "masks/" in readme and "instance labels" in readme and "kwtl finetune" in readme
    meta = json.loads((todo / "selection.json").read_text())
    assert meta["selector"]["name"] == DEFAULT_SELECTOR
    # the fast whole-image mode whenever the selector has one
    has_dense = "dense" in make_selector(DEFAULT_SELECTOR).get_params()
    assert meta["dense"] is (True if has_dense else None)
    assert meta["budget"] == 5 and meta["n_candidates"] == 3 * 25  # 48x48, 16 by 8: 5x5
    assert (todo / "model_plft.kwtl").is_file() and not (todo / ".kwtl-work").exists()
    # the drawn area: 5 non-overlapping 16x16 patches of three 48x48 images
    assert meta["drawn_area"] == {
        "pixels": 5 * 16 * 16,
        "image_equivalents": round(5 * 16 * 16 / (48 * 48), 3),
        "fraction": round(5 * 16 * 16 / (3 * 48 * 48), 3),
    }


def test_default_selector_is_one_name(tiny_data):
    chosen = FewShotSegmentation()._components()[2]
    assert type(chosen) is type(make_selector(DEFAULT_SELECTOR))


def test_select_resumes_without_rescoring(tiny_data, tmp_path, monkeypatch):
    from kwtl.selection import ConsistencySelector

    args = (tiny_data["target"], tiny_data["model"], 5)
    whole = select(*args, tmp_path / "whole", selector="consistency", progress=False)
    real = ConsistencySelector._score_pool
    calls = []

    def dies_on_third_image(self, pool, estimator):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, pool, estimator)

    monkeypatch.setattr(ConsistencySelector, "_score_pool", dies_on_third_image)
    todo = tmp_path / "todo"
    with pytest.raises(KeyboardInterrupt):
        select(*args, todo, selector="consistency", progress=False)
    # the selector's score cache holds the two images scored before the interruption
    assert len(list((todo / ".kwtl-work").rglob("kwtl_scores/*.npy"))) == 2
    calls.clear()
    monkeypatch.setattr(
        ConsistencySelector,
        "_score_pool",
        lambda self, pool, est: (calls.append(1), real(self, pool, est))[1],
    )
    select(*args, todo, selector="consistency", progress=False)
    assert len(calls) == 1  # only the image not scored before the interruption
    pd.testing.assert_frame_equal(read_selection(todo), whole.table)


def test_select_refusals(tiny_data, package, tmp_path):
    users = tmp_path / "users"
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and was not made by kwtl"):
        select(tiny_data["target"], tiny_data["model"], 2, users, progress=False)
    with pytest.raises(ValueError, match="budget 76 is more than"):
        select(tiny_data["target"], tiny_data["model"], 76, tmp_path / "t", progress=False)
    with pytest.raises(ValueError, match="unknown selector"):
        select(
            tiny_data["target"],
            tiny_data["model"],
            2,
            tmp_path / "t",
            selector="best",
            progress=False,
        )
    todo = tmp_path / "again"
    select(tiny_data["target"], tiny_data["model"], 2, todo, progress=False, selector="random")
    (todo / "masks" / "drawn.png").write_bytes(b"annotator's work")
    with pytest.raises(FileExistsError, match="1 mask"):
        select(tiny_data["target"], tiny_data["model"], 3, todo, progress=False, selector="random")
    select(
        tiny_data["target"],
        tiny_data["model"],
        3,
        todo,
        progress=False,
        selector="random",
        overwrite=True,
    )
    assert (todo / "masks" / "drawn.png").read_bytes() == b"annotator's work"
    assert len(pd.read_csv(todo / "selection.csv")) == 3


def test_select_with_a_whole_pool_selector_and_unit_checks(tiny_data, tmp_path):
    result = select(
        tiny_data["target"],
        tiny_data["model"],
        3,
        tmp_path / "todo",
        selector="representative",
        progress=False,
    )
    assert len(result.table) == 3 and result.metadata["selector"]["name"] == "representative"
    # the registry's compositions take unit="image" too
    whole = select(
        tiny_data["target"],
        tiny_data["model"],
        1,
        tmp_path / "t2",
        unit="image",
        selector="stratified_consistency",
        progress=False,
    )
    assert len(whole.table) == 1 and set(whole.table["row"]) == {0}
    assert whole.metadata["selector"]["name"] == "stratified_consistency"

    class PatchOnly(BaseSelector):
        """A selector without a ``unit`` parameter: it chooses patches only."""

        unit = "patch"

        def __init__(self, random_state=None):
            self.random_state = random_state

        def _score_pool(self, pool, estimator):
            return np.arange(len(pool), dtype=np.float64)

    with pytest.raises(ValueError, match="chooses patches only"):
        select(
            tiny_data["target"],
            tiny_data["model"],
            1,
            tmp_path / "t3",
            unit="image",
            selector=PatchOnly(),
            progress=False,
        )


def test_select_whole_images(tiny_data, tmp_path):
    todo = tmp_path / "todo"
    result = select(tiny_data["target"], tiny_data["model"], 2, todo, unit="image", progress=False)
    table = result.table
    assert table["image_file"].tolist() == [f"images/{n}.png" for n in table["source_image"]]
    assert set(table["size"]) == {"48x48"} and set(table["row"]) == {0}
    for row in table.itertuples():
        assert read_image(todo / row.image_file).shape == (48, 48)


# ------------------------------------------------------------------ finetune
def test_finetune_lists_missing_and_wrong_size_masks(tiny_data, package, tmp_path):
    import shutil

    todo = tmp_path / "todo"
    shutil.copytree(package[0], todo)
    table = read_selection(todo)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(todo / table.mask_file[0])
    with pytest.raises(ValueError) as err:
        finetune(todo, tmp_path / "t.kwtl", epochs=1, progress=False)
    message = str(err.value)
    assert "4 of 5 masks are missing" in message and table.mask_file[1] in message
    assert "1 masks have the wrong size" in message and "8x8" in message
    assert not (tmp_path / "t.kwtl").exists()


def test_finetune_trains_records_sources_and_resumes(tiny_data, package, tmp_path, monkeypatch):
    import shutil

    todo = tmp_path / "todo"
    shutil.copytree(package[0], todo)
    table = draw_masks(todo, _truth(tiny_data))
    data = read_annotations(todo)
    size = TINY["patch_size"]
    for row, mask in zip(table.itertuples(), data["masks"]):
        truth = _truth(tiny_data)[row.source_image]
        assert np.array_equal(mask, truth[row.row : row.row + size, row.col : row.col + size])
    whole = finetune(todo, tmp_path / "whole.kwtl", epochs=3, progress=False)
    meta = json.loads((tmp_path / "whole.kwtl.json").read_text())["training"]
    assert meta["step"] == "finetune" and len(meta["sources"]) == 5
    assert meta["start"]["name"].endswith("model_plft.kwtl") and len(meta["losses"]) == 3

    from kwtl.models import FCRNSegmenter

    real = FCRNSegmenter.on_epoch_begin
    calls = {"n": 0}

    def dies_in_second_epoch(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(FCRNSegmenter, "on_epoch_begin", dies_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        finetune(todo, tmp_path / "resumed.kwtl", epochs=3, progress=False)
    monkeypatch.setattr(FCRNSegmenter, "on_epoch_begin", real)
    resumed = finetune(todo, tmp_path / "resumed.kwtl", epochs=3, progress=False)
    assert calls["n"] == 2  # the resumed run did not start again from the first epoch
    assert _same_state(_state(whole), _state(resumed))
    assert _same_state(_state(whole), _state(load_model(tmp_path / "resumed.kwtl")))

    # the workflow's fine-tuning is the method's step, kwtl.few_shot.fine_tune
    from kwtl.datasets import PatchSet
    from kwtl.few_shot import fine_tune
    from kwtl.utils import derive_seed

    start = load_model(todo / "model_plft.kwtl")
    patches = PatchSet.from_images(data["images"], start.patch_size, start.stride)
    direct = fine_tune(
        start,
        patches,
        patches.with_arrays(data["masks"]),
        epochs=3,
        random_state=derive_seed(0, "finetune"),
    )
    assert _same_state(_state(whole), _state(direct))


# ------------------------------------------------------------------ predict
def test_predict_masks_instances_probabilities_and_resume(tiny_data, tmp_path, capsys):
    out = tmp_path / "pred"
    result = predict(
        tiny_data["target"],
        tiny_data["model"],
        out,
        instances=True,
        probabilities=True,
        mask_suffix="_masks",
        format="tif",
        progress=False,
    )
    seg = load_model(tiny_data["model"])
    for i, image in enumerate(tiny_data["target_images"]):
        labels = read_image_labels(out / "masks" / f"img{i:02d}_masks.tif")
        assert labels.dtype == np.uint16  # the documented depth, whatever the cell count
        proba = seg.predict_proba([image])[0]
        assert labels.shape == image.shape
        # the objects are the predicted foreground without specks under 16 pixels
        # (kwtl.postprocess.label_instances' min_size, 8-connected)
        from scipy import ndimage

        parts, _ = ndimage.label(proba >= seg.threshold, structure=np.ones((3, 3)))
        big = np.bincount(parts.ravel()) >= 16
        big[0] = False
        assert np.array_equal(labels > 0, big[parts])
        stored = read_image_labels(out / "probabilities" / f"img{i:02d}_prob.tif") / 65535
        assert np.abs(stored - proba).max() <= 0.5 / 65535 + 1e-6
        assert (out / "overlays" / f"img{i:02d}_overlay.png").is_file()
    assert sorted(p.name for p in (out / "masks").iterdir()) == [
        f"img{i:02d}_masks.tif" for i in range(3)
    ]  # masks alone in their folder
    assert set(result.masks) == {"img00", "img01", "img02"}
    again = predict(
        tiny_data["target"],
        tiny_data["model"],
        out,
        instances=True,
        probabilities=True,
        mask_suffix="_masks",
        format="tif",
        progress=False,
    )
    assert again.skipped == ["img00", "img01", "img02"]
    with pytest.raises(FileExistsError, match="another model or other options"):
        predict(tiny_data["target"], tiny_data["model"], out, progress=False)


def test_predict_binary_png(tiny_data, tmp_path):
    out = tmp_path / "pred"
    predict(tiny_data["target"], tiny_data["model"], out, overlay=False, progress=False)
    mask = np.asarray(Image.open(out / "masks" / "img00.png"))
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    assert not (out / "overlays").exists()
    assert np.array_equal(
        mask > 0, load_model(tiny_data["model"]).predict([tiny_data["target_images"][0]])[0]
    )


def read_image_labels(path):
    import tifffile

    return tifffile.imread(path)


# ------------------------------------------------------------------ model files
def test_model_file_of_a_newer_or_unknown_format_is_refused(tiny_data, tmp_path):
    import shutil

    for version, match in ((99, "newer than"), ("x", "unknown format version")):
        model = tmp_path / f"m{version}.kwtl"
        shutil.copy(tiny_data["model"], model)
        meta = json.loads((tiny_data["model"].parent / "model.kwtl.json").read_text())
        meta["format_version"] = version
        (tmp_path / f"m{version}.kwtl.json").write_text(json.dumps(meta))
        with pytest.raises(ModelFileError, match=match):
            load_model(model)
    with pytest.raises(ModelFileError, match="no such file"):
        load_model(tmp_path / "absent.kwtl")
    with pytest.raises(ModelFileError, match="unknown pretrained model"):
        load_model("authors:XYZ")


def test_finetune_default_recipe_runs_its_steps_and_resumes(
    tiny_data, package, tmp_path, monkeypatch
):
    import shutil

    from kwtl.models import FCRNSegmenter

    todo = tmp_path / "todo"
    shutil.copytree(package[0], todo)
    draw_masks(todo, _truth(tiny_data))
    whole = finetune(todo, tmp_path / "whole.kwtl", steps=60, progress=False)
    meta = json.loads((tmp_path / "whole.kwtl.json").read_text())["training"]
    assert meta["parameters"]["steps"] == 60 and meta["parameters"]["batch_size"] == 8
    assert len(meta["losses"]) == 3  # checkpoints after 25, 50 and 60 steps
    assert meta["parameters"]["recipe"]["augment"] == "'default'"  # flips, quarter turns

    real = FCRNSegmenter.on_epoch_begin
    calls = {"n": 0}

    def dies_in_second_chunk(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(FCRNSegmenter, "on_epoch_begin", dies_in_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        finetune(todo, tmp_path / "resumed.kwtl", steps=60, progress=False)
    monkeypatch.setattr(FCRNSegmenter, "on_epoch_begin", real)
    resumed = finetune(todo, tmp_path / "resumed.kwtl", steps=60, progress=False)
    assert calls["n"] == 2  # the resumed run started at the second chunk
    assert _same_state(_state(whole), _state(resumed))
    with pytest.raises(ValueError, match="not both"):
        finetune(todo, tmp_path / "x.kwtl", steps=3, epochs=2, progress=False)
