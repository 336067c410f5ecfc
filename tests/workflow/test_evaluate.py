"""kwtl evaluate: per-image and mean IoU (and instance F1) of predicted masks."""

import numpy as np
import pandas as pd
import pytest

from kwtl.cli import main
from kwtl.datasets import write_image, write_mask
from kwtl.metrics import iou_score
from kwtl.workflow import evaluate, predict


def _pair(tmp_path):
    """Two images' predicted and true masks with IoUs computed by hand: 2/4 and 1."""
    a_true = np.zeros((8, 8), bool)
    a_true[0:2, 0:2] = True  # 4 px
    a_pred = np.zeros((8, 8), bool)
    a_pred[0:2, 0:1] = True  # 2 of them, nothing else: IoU 2/4
    b = np.zeros((8, 8), bool)
    b[4:6, 4:8] = True
    for name, true, pred in (("a", a_true, a_pred), ("b", b, b)):
        write_mask(tmp_path / "pred" / f"{name}.png", pred)
        write_mask(tmp_path / "truth" / f"{name}.png", true)
    return tmp_path / "pred", tmp_path / "truth"


def test_per_image_and_mean_iou_by_hand(tmp_path):
    pred, truth = _pair(tmp_path)
    result = evaluate(pred, truth)
    table = result.table.set_index("image")
    assert table.loc["a", "iou"] == pytest.approx(0.5, abs=1e-4)
    assert table.loc["b", "iou"] == pytest.approx(1.0)
    assert table.loc["all", "iou"] == pytest.approx(0.75, abs=1e-4)
    assert result.mean_iou == pytest.approx(0.75, abs=1e-4)


def test_cli_prints_the_table_and_writes_csv(tmp_path, capsys):
    pred, truth = _pair(tmp_path)
    out = tmp_path / "scores.csv"
    assert (
        main(["evaluate", str(pred), "--truth", str(truth), "--instances", "--out", str(out)]) == 0
    )
    printed = capsys.readouterr().out
    assert "mean IoU over 2 image(s): 75.0%" in printed and "F1 %" in printed
    csv = pd.read_csv(out)
    assert list(csv["image"]) == ["a", "b", "all"]
    assert list(csv.columns) == [
        "image",
        "iou",
        "true_objects",
        "found_objects",
        "matched",
        "precision",
        "recall",
        "f1",
    ]
    # a: the one true object is half found (IoU 0.5, not > 0.5): no match; b: matched
    assert list(csv["matched"]) == [0, 1, 1]
    assert csv["f1"].iloc[-1] == pytest.approx(2 * 1 / (2 + 2))
    # an existing CSV is kept unless --force
    assert main(["evaluate", str(pred), "--truth", str(truth), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err


def test_instance_labels_and_cellpose_truth(tmp_path):
    truth = np.zeros((10, 10), np.uint16)
    truth[0:4, 0:4] = 1
    truth[0:4, 4:8] = 2  # touching: two objects
    pred = np.zeros((10, 10), np.uint16)
    pred[0:4, 0:8] = 5  # merged into one object
    write_image(tmp_path / "truth" / "x.png", np.zeros((10, 10), np.uint8))  # an image, skipped
    write_mask(tmp_path / "truth" / "x_masks.tif", truth)
    write_mask(tmp_path / "pred" / "x.tif", pred)
    result = evaluate(tmp_path / "pred", tmp_path / "truth", instances=True)
    row = result.table.iloc[0]
    assert (row["true_objects"], row["found_objects"], row["matched"]) == (2, 1, 0)


def test_missing_prediction_and_size_mismatch_are_named(tmp_path):
    pred, truth = _pair(tmp_path)
    write_mask(truth / "c.png", np.zeros((8, 8), bool))
    with pytest.raises(ValueError, match="1 of 3 true masks have no predicted mask.*c"):
        evaluate(pred, truth)
    (truth / "c.png").unlink()
    write_mask(pred / "b.png", np.zeros((6, 6), bool), overwrite=True)
    with pytest.raises(ValueError, match="differ in size"):
        evaluate(pred, truth)


def test_jpeg_truth_is_named_lossy(tmp_path):
    pred, _ = _pair(tmp_path)
    write_image(tmp_path / "jpg" / "a.jpg", np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="JPEG is lossy.*PNG or TIFF"):
        evaluate(pred, tmp_path / "jpg")


@pytest.mark.parametrize("where", ["pred", "truth"])
def test_csv_inside_an_input_is_refused_even_with_force(tmp_path, capsys, where):
    pred, truth = _pair(tmp_path)
    target = tmp_path / where / "scores.csv"
    assert (
        main(["evaluate", str(pred), "--truth", str(truth), "--out", str(target), "--force"]) == 2
    )
    assert "lies inside" in capsys.readouterr().err
    assert not target.exists()


def test_a_predict_folder_is_read_through_its_record(tiny_data, tmp_path):
    """kwtl predict's --out holds overlays and a record; evaluate scores only the masks."""
    out = tmp_path / "predicted"
    predict(tiny_data["target"], tiny_data["model"], out, mask_suffix="_masks", progress=False)
    truth = tmp_path / "truth"
    for i, mask in enumerate(tiny_data["target_masks"]):
        write_mask(truth / f"img{i:02d}.png", mask)
    result = evaluate(out, truth)
    from kwtl.datasets import read_mask
    from kwtl.utils import as_mask

    expected = [
        iou_score(mask, as_mask(read_mask(next(out.rglob(f"img{i:02d}_masks.png")))))
        for i, mask in enumerate(tiny_data["target_masks"])
    ]
    assert result.mean_iou == pytest.approx(np.mean(expected))
    assert len(result.table) == len(expected) + 1
