"""Instance labels from a foreground map, on synthetic touching discs."""

import numpy as np
import pytest
from scipy import ndimage

from kwtl.datasets import read_mask, write_mask
from kwtl.postprocess import label_instances

SHAPE = (48, 64)


def _disc(centre, radius, shape=SHAPE):
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def _assert_one_label_per_disc(labels, discs):
    """Each disc's centre region is one label of its own, and that label is mostly it."""
    assert labels.max() == len(discs)
    np.testing.assert_array_equal(np.unique(labels), np.arange(len(discs) + 1))
    seen = set()
    for disc in discs:
        values, counts = np.unique(labels[disc], return_counts=True)
        main = int(values[np.argmax(counts)])
        assert main != 0 and main not in seen
        seen.add(main)
        obj = labels == main
        iou = (obj & disc).sum() / (obj | disc).sum()
        assert iou > 0.85, iou


@pytest.mark.parametrize("gap", [0, 2, 4])  # centre distance = r1 + r2 - gap: touching/overlapping
def test_two_touching_discs_give_two_labels(gap):
    a = _disc((24, 18), 10)
    b = _disc((24, 18 + 20 - gap), 10)
    union = a | b
    assert ndimage.label(union, np.ones((3, 3)))[1] == 1  # one blob to split
    labels = label_instances(union)
    assert labels.dtype == np.uint16
    _assert_one_label_per_disc(labels, [a, b])
    np.testing.assert_array_equal(labels != 0, union)  # nothing lost, nothing added


def test_discs_of_different_sizes_and_a_chain_of_three():
    discs = [_disc((24, 10), 7), _disc((24, 26), 10), _disc((24, 45), 10)]
    union = np.logical_or.reduce(discs)
    labels = label_instances(union)
    _assert_one_label_per_disc(labels, discs)
    # raster order of first pixel: the big discs start higher up than the small one
    assert labels[24, 26] == 1 and labels[24, 45] == 2 and labels[24, 10] == 3


def test_one_disc_and_one_rectangle_are_one_label_each():
    disc = _disc((24, 32), 15)
    np.testing.assert_array_equal(label_instances(disc), disc.astype(np.uint16))
    rect = np.zeros(SHAPE, bool)
    rect[20:28, 4:60] = True  # a flat distance ridge: not one seed every few pixels
    np.testing.assert_array_equal(label_instances(rect), rect.astype(np.uint16))


def test_empty_map_gives_zeros():
    out = label_instances(np.zeros(SHAPE))
    assert out.dtype == np.uint16 and out.shape == SHAPE and not out.any()


def test_specks_below_min_size_are_removed():
    disc = _disc((24, 32), 8)
    mask = disc.copy()
    mask[2:4, 2:4] = True  # 4 pixels
    mask[45, 60] = True  # 1 pixel
    np.testing.assert_array_equal(label_instances(mask, min_size=5), disc.astype(np.uint16))
    kept = label_instances(mask, min_size=0)
    assert kept.max() == 3 and kept[2, 2] == 1 and kept[45, 60] == 3


def test_probability_map_thresholded():
    a, b = _disc((24, 18), 10), _disc((24, 37), 10)
    proba = np.where(a | b, 0.9, 0.1)
    np.testing.assert_array_equal(label_instances(proba), label_instances(a | b))
    assert not label_instances(proba, threshold=0.95).any()
    np.testing.assert_array_equal(label_instances((a | b) * np.uint8(255)), label_instances(a | b))


def test_min_distance_merges_close_seeds():
    a, b = _disc((24, 18), 10), _disc((24, 37), 10)
    assert label_instances(a | b, min_distance=5).max() == 2
    assert label_instances(a | b, min_distance=25).max() == 1  # seeds 19 px apart


def test_output_is_a_cellpose_mask(tmp_path):
    a, b = _disc((24, 18), 10), _disc((24, 37), 10)
    labels = label_instances(a | b)
    path = write_mask(tmp_path / "x_masks.png", labels)
    np.testing.assert_array_equal(read_mask(path), labels)


@pytest.mark.parametrize(
    "bad, error",
    [
        (np.zeros((2, 2, 2)), ValueError),
        (np.array([[np.nan, 0.0]]), ValueError),
        (np.zeros((0, 3)), ValueError),
    ],
)
def test_bad_input(bad, error):
    with pytest.raises(error):
        label_instances(bad)
    with pytest.raises(ValueError, match="min_distance"):
        label_instances(np.zeros((4, 4)), min_distance=0)
    with pytest.raises(ValueError, match="min_size"):
        label_instances(np.zeros((4, 4)), min_size=-1)
