import numpy as np
import pytest
from sklearn.base import BaseEstimator

from kwtl.metrics import iou_score, mean_iou, mean_iou_scorer
from kwtl.metrics._iou import SMOOTH


def test_iou_hand_cases():
    a = np.array([[1, 1, 0], [0, 0, 0]])
    b = np.array([[1, 0, 0], [1, 0, 0]])
    assert iou_score(a, b) == pytest.approx((1 + SMOOTH) / (3 + SMOOTH))
    assert iou_score(a, a) == pytest.approx(1.0)
    assert iou_score(np.zeros((2, 2)), np.zeros((2, 2))) == 1.0  # empty vs empty
    assert iou_score(np.ones((2, 2)), np.zeros((2, 2))) == pytest.approx(SMOOTH / (4 + SMOOTH))
    # non-zero values of any magnitude are foreground (e.g. 255 masks)
    assert iou_score(a * 255, a.astype(bool)) == pytest.approx(1.0)


def test_mean_iou_is_mean_over_images():
    t = [np.eye(3), np.ones((2, 4))]
    p = [np.eye(3), np.zeros((2, 4))]
    assert mean_iou(t, p) == pytest.approx((1.0 + SMOOTH / (8 + SMOOTH)) / 2)


def test_metric_errors():
    with pytest.raises(ValueError, match="shape"):
        iou_score(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="2 true masks but 1"):
        mean_iou([np.zeros((2, 2))] * 2, [np.zeros((2, 2))])
    with pytest.raises(ValueError, match="at least one"):
        mean_iou([], [])
    with pytest.raises(ValueError, match="NaN"):
        iou_score(np.array([[np.nan]]), np.array([[1.0]]))


def test_scorer_calls_predict():
    class Fixed(BaseEstimator):
        def predict(self, X):
            return [np.ones_like(x, dtype=bool) for x in X]

    X = [np.zeros((2, 2)), np.zeros((2, 2))]
    y = [np.ones((2, 2)), np.zeros((2, 2))]
    assert mean_iou_scorer(Fixed(), X, y) == pytest.approx((1.0 + SMOOTH / (4 + SMOOTH)) / 2)
