"""Rounds of annotation (select --exclude, finetune on several packages, --from-model) and
Dask --scheduler runs."""

import json

import numpy as np
import pytest

from kwtl.cli import main
from kwtl.datasets import read_image, read_mask, write_image
from kwtl.workflow import finetune, predict, read_selection, select
from kwtl.workflow._rounds import excluded_regions, overlaps_regions
from workflow_helpers import draw_masks


def _boxes(todo):
    table = read_selection(todo)
    return [(r.source_image, int(r.row), int(r.col), int(r.size)) for r in table.itertuples()]


def _overlap(a, b):
    return a[0] == b[0] and abs(a[1] - b[1]) < a[3] and abs(a[2] - b[2]) < a[3]


def test_overlaps_regions_by_hand():
    coords = np.array([[0, 0, 0], [0, 8, 8], [0, 16, 16], [0, 24, 0], [1, 0, 0]])
    regions = {"a": [(10, 10, 8, 8)]}  # rows 10..17, cols 10..17
    # windows of 8: (0,0) ends at 7 (clear); (8,8) covers 8..15 (hit); (16,16) covers
    # 16..23 (hit at 16..17); (24,0) clear; image "b" has no region
    blocked = overlaps_regions(coords, 8, [(32, 32)] * 2, ["a", "b"], regions)
    np.testing.assert_array_equal(blocked, [False, True, True, False, False])
    whole = overlaps_regions(coords, 8, [(32, 32)] * 2, ["a", "b"], regions, unit="image")
    np.testing.assert_array_equal(whole, [True, True, True, True, False])


def test_exclude_refuses_a_folder_that_is_not_a_package(tmp_path):
    with pytest.raises(ValueError, match="not a kwtl select package"):
        excluded_regions([tmp_path])


def test_two_rounds_never_overlap_and_finetune_on_both(tiny_data, tmp_path, capsys):
    truth = {f"img{i:02d}": m for i, m in enumerate(tiny_data["target_masks"])}
    first = select(tiny_data["target"], tiny_data["model"], 3, tmp_path / "todo1", progress=False)
    draw_masks(tmp_path / "todo1", truth)
    second = select(
        tiny_data["target"],
        tiny_data["model"],
        3,
        tmp_path / "todo2",
        exclude=[tmp_path / "todo1"],
        progress=False,
        verbose=True,
    )
    out = capsys.readouterr().out
    n = second.metadata["n_excluded"]
    assert n > 0 and f"excluded {n} of {second.metadata['n_candidates']} candidates" in out
    for a in _boxes(tmp_path / "todo1"):
        for b in _boxes(tmp_path / "todo2"):
            assert not _overlap(a, b), (a, b)
    # the count is every candidate overlapping a round-1 region (independent count)
    size, stride = 16, 8
    expected = 0
    for i, image in enumerate(tiny_data["target_images"]):
        h, w = image.shape
        rows = sorted(set(list(range(0, h - size + 1, stride)) + [h - size]))
        cols = sorted(set(list(range(0, w - size + 1, stride)) + [w - size]))
        for r in rows:
            for c in cols:
                expected += any(
                    _overlap((f"img{i:02d}", r, c, size), b) for b in _boxes(tmp_path / "todo1")
                )
    assert n == expected
    draw_masks(tmp_path / "todo2", truth)
    finetune(
        [tmp_path / "todo1", tmp_path / "todo2"], tmp_path / "tuned2.kwtl", epochs=1, progress=False
    )
    record = json.loads((tmp_path / "tuned2.kwtl.json").read_text())["training"]
    assert len(record["sources"]) == 6
    assert [s["folder"] for s in record["selections"]] == [
        str((tmp_path / p).resolve()) for p in ("todo1", "todo2")
    ]
    assert record["start"]["name"] == str((tmp_path / "todo1" / "model_plft.kwtl").resolve())
    # a different selection than without exclusion, so the fingerprint tells them apart
    assert first.metadata["fingerprint"] != second.metadata["fingerprint"]


def test_cli_rounds_with_from_model(tiny_data, tmp_path):
    truth = {f"img{i:02d}": m for i, m in enumerate(tiny_data["target_masks"])}
    common = ["--model", str(tiny_data["model"]), "--budget", "2", "--no-progress"]
    assert main(["select", str(tiny_data["target"]), *common, "--out", str(tmp_path / "t1")]) == 0
    draw_masks(tmp_path / "t1", truth)
    assert (
        main(
            [
                "finetune",
                str(tmp_path / "t1"),
                "--out",
                str(tmp_path / "m1.kwtl"),
                "--epochs",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "select",
                str(tiny_data["target"]),
                *common,
                "--exclude",
                str(tmp_path / "t1"),
                "--out",
                str(tmp_path / "t2"),
            ]
        )
        == 0
    )
    draw_masks(tmp_path / "t2", truth)
    assert (
        main(
            [
                "finetune",
                str(tmp_path / "t1"),
                str(tmp_path / "t2"),
                "--from-model",
                str(tmp_path / "m1.kwtl"),
                "--out",
                str(tmp_path / "m2.kwtl"),
                "--epochs",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    record = json.loads((tmp_path / "m2.kwtl.json").read_text())["training"]
    assert record["start"]["name"] == str((tmp_path / "m1.kwtl").resolve())
    assert len(record["sources"]) == 4
    too_many = main(
        [
            "select",
            str(tiny_data["target"]),
            "--model",
            str(tiny_data["model"]),
            "--budget",
            "40",
            "--exclude",
            str(tmp_path / "t1"),
            str(tmp_path / "t2"),
            "--out",
            str(tmp_path / "t3"),
            "--no-progress",
        ]
    )
    assert too_many == 2


def _spread_entropy_by_hand(model, images, size, stride, blocked_boxes, budget):
    """Round 2 worked out without the selectors: the model's whole-image probabilities, the
    binary entropy averaged over each window by loops, windows overlapping round 1 dropped,
    each image's best remaining window first (then the second best of each, ...), windows
    overlapping a chosen one skipped."""
    import torch

    candidates = []  # (entropy, image, row, col)
    for i, image in enumerate(images):
        p = torch.sigmoid(model.image_logits(image[None])[0]).double().cpu().numpy()
        p = np.clip(p, 1e-12, 1 - 1e-12)
        entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p))
        h, w = image.shape
        rows = sorted(set(range(0, h - size + 1, stride)) | {h - size})
        cols = sorted(set(range(0, w - size + 1, stride)) | {w - size})
        for r in rows:
            for c in cols:
                if not any(_overlap((f"img{i:02d}", r, c, size), b) for b in blocked_boxes):
                    candidates.append((entropy[r : r + size, c : c + size].mean(), i, r, c))
    ranked = {}  # image -> its candidates, best first
    for cand in sorted(candidates, key=lambda x: -x[0]):
        ranked.setdefault(cand[1], []).append(cand)
    order = []
    for k in range(max(len(v) for v in ranked.values())):
        layer = [v[k] for v in ranked.values() if k < len(v)]
        order += sorted(layer, key=lambda x: -x[0])
    chosen = []
    for _, i, r, c in order:
        box = (f"img{i:02d}", r, c, size)
        if any(_overlap(box, b) for b in chosen):
            continue
        chosen.append(box)
        if len(chosen) == budget:
            break
    return chosen


@pytest.mark.parametrize("scorer", ["round-1 model", "base model"])
def test_round_two_scores_with_the_round_one_model(tiny_data, tmp_path, scorer):
    """The round-2 selector of the user guide: ``spread_entropy`` with the round-1 model and
    no pseudo-label fine-tuning picks what the by-hand computation picks, never a round-1
    pixel. With the base model, round 1 took every image's most uncertain window, so round 2
    also checks that the images are spread again after the exclusion (each image's best
    remaining window first), not skipped until a later pass."""
    from kwtl.workflow import load_model

    truth = {f"img{i:02d}": m for i, m in enumerate(tiny_data["target_masks"])}
    first_selector = "random" if scorer == "round-1 model" else "spread_entropy"
    select(
        tiny_data["target"],
        tiny_data["model"],
        3,
        tmp_path / "todo1",
        selector=first_selector,
        pl_epochs=0 if scorer == "base model" else 1,
        progress=False,
    )
    draw_masks(tmp_path / "todo1", truth)
    finetune([tmp_path / "todo1"], tmp_path / "tuned1.kwtl", epochs=1, progress=False)
    scorer_file = tmp_path / "tuned1.kwtl" if scorer == "round-1 model" else tiny_data["model"]
    second = select(
        tiny_data["target"],
        scorer_file,
        3,
        tmp_path / "todo2",
        selector="spread_entropy",
        pl_epochs=0,
        exclude=[tmp_path / "todo1"],
        progress=False,
    )
    assert second.metadata["selector"]["name"] == "spread_entropy"
    round1 = _boxes(tmp_path / "todo1")
    # a tuned model scores as it is; a base model as PLFT's setup (with no epochs) leaves it
    model = load_model(scorer_file) if scorer == "round-1 model" else second.model
    expected = _spread_entropy_by_hand(
        model, tiny_data["target_images"], model.patch_size, model.stride, round1, 3
    )
    assert _boxes(tmp_path / "todo2") == expected


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as local:
        yield local


def test_predict_and_select_on_a_dask_cluster_equal_plain_runs(tiny_data, tmp_path, cluster):
    predict(
        tiny_data["target"],
        tiny_data["model"],
        tmp_path / "plain",
        instances=True,
        probabilities=True,
        progress=False,
    )
    predict(
        tiny_data["target"],
        tiny_data["model"],
        tmp_path / "dask",
        instances=True,
        probabilities=True,
        scheduler=cluster.scheduler_address,
        progress=False,
    )
    names = sorted(
        str(p.relative_to(tmp_path / "plain"))
        for p in (tmp_path / "plain").rglob("*")
        if p.suffix in (".png", ".tif")
    )
    assert len(names) == 9  # mask, probability, overlay of 3 images
    for name in names:
        assert (tmp_path / "plain" / name).read_bytes() == (
            tmp_path / "dask" / name
        ).read_bytes(), name
    a = select(
        tiny_data["target"],
        tiny_data["model"],
        3,
        tmp_path / "s_plain",
        selector="entropy",
        progress=False,
    )
    b = select(
        tiny_data["target"],
        tiny_data["model"],
        3,
        tmp_path / "s_dask",
        selector="entropy",
        scheduler=cluster.scheduler_address,
        progress=False,
    )
    np.testing.assert_array_equal(a.table["score"], b.table["score"])
    assert list(a.table["image_file"]) == list(b.table["image_file"])


def test_cli_predict_scheduler(tiny_data, tmp_path, cluster):
    assert (
        main(
            [
                "predict",
                str(tiny_data["target"]),
                "--model",
                str(tiny_data["model"]),
                "--out",
                str(tmp_path / "m"),
                "--scheduler",
                cluster.scheduler_address,
                "--no-progress",
            ]
        )
        == 0
    )
    assert len(list((tmp_path / "m" / "overlays").glob("img*_overlay.png"))) == 3


@pytest.mark.integration
def test_real_two_round_session_through_the_cli(shared_data, tmp_path):
    """select -> draw from ground truth -> finetune -> select --exclude -> finetune on both,
    on crops of real ssTEM images."""
    from kwtl.datasets import make_cells, write_mask

    src_x, src_y = make_cells(3, 48, domain="em", random_state=0)
    for i, (x, y) in enumerate(zip(src_x, src_y)):
        write_image(tmp_path / "src" / "images" / f"s{i}.png", x)
        write_mask(tmp_path / "src" / "masks" / f"s{i}.png", y)
    assert (
        main(
            [
                "pretrain",
                str(tmp_path / "src"),
                "--out",
                str(tmp_path / "base.kwtl"),
                "--width",
                "4",
                "--patch-size",
                "32",
                "--stride",
                "16",
                "--meta-iterations",
                "2",
                "--inner-steps",
                "1",
                "--no-progress",
            ]
        )
        == 0
    )
    truth = {}
    for name in ("03", "04", "05"):
        crop = (slice(300, 428), slice(300, 428))
        write_image(
            tmp_path / "imgs" / f"{name}.png",
            read_image(shared_data / "ssTEM" / "images" / f"{name}.png")[crop],
        )
        truth[name] = read_mask(shared_data / "ssTEM" / "masks" / f"{name}.png")[crop]
    sel = [
        "select",
        str(tmp_path / "imgs"),
        "--model",
        str(tmp_path / "base.kwtl"),
        "--budget",
        "4",
        "--no-progress",
    ]
    fin = ["--epochs", "2", "--no-progress"]
    assert main(sel + ["--out", str(tmp_path / "r1")]) == 0
    draw_masks(tmp_path / "r1", truth)
    assert main(["finetune", str(tmp_path / "r1"), "--out", str(tmp_path / "t1.kwtl")] + fin) == 0
    assert main(sel + ["--exclude", str(tmp_path / "r1"), "--out", str(tmp_path / "r2")]) == 0
    for a in _boxes(tmp_path / "r1"):
        for b in _boxes(tmp_path / "r2"):
            assert not _overlap(a, b)
    draw_masks(tmp_path / "r2", truth)
    assert (
        main(
            [
                "finetune",
                str(tmp_path / "r1"),
                str(tmp_path / "r2"),
                "--out",
                str(tmp_path / "t2.kwtl"),
            ]
            + fin
        )
        == 0
    )
    record = json.loads((tmp_path / "t2.kwtl.json").read_text())["training"]
    assert len(record["sources"]) == 8 and len(record["selections"]) == 2
