"""Instance matching (kwtl evaluate --instances) against hand counts and a brute force."""

import itertools

import numpy as np
import pytest
from scipy import ndimage

from kwtl.metrics._instances import instance_labels, match_instances


def _brute_force(truth, found, threshold=0.5):
    """Every pair of objects, IoU computed from boolean masks; greedy one-to-one."""
    t, f = instance_labels(truth), instance_labels(found)
    pairs = []
    for a, b in itertools.product(range(1, t.max() + 1), range(1, f.max() + 1)):
        inter = np.sum((t == a) & (f == b))
        union = np.sum((t == a) | (f == b))
        if union and inter / union > threshold:
            pairs.append((a, b))
    used_a, used_b = set(), set()
    for a, b in pairs:
        if a not in used_a and b not in used_b:
            used_a.add(a)
            used_b.add(b)
    return len(used_a), int(t.max()), int(f.max())


def test_hand_counted_example():
    truth = np.zeros((6, 6), int)
    truth[0:2, 0:2] = 1  # 4 px
    truth[0:2, 4:6] = 2  # 4 px
    truth[4:6, 0:3] = 3  # 6 px
    found = np.zeros((6, 6), int)
    found[0:2, 0:2] = 9  # cell 1 exactly: IoU 1
    found[0:1, 4:6] = 4  # half of cell 2: IoU 2/4 = 0.5, not > 0.5
    found[4:6, 0:2] = 7  # 4 of cell 3's 6 px: IoU 4/6 > 0.5
    found[3, 5] = 8  # a speck: false positive
    counts = match_instances(truth, found)
    assert counts["true_objects"] == 3 and counts["found_objects"] == 4
    assert counts["matched"] == 2
    assert counts["precision"] == pytest.approx(2 / 4)
    assert counts["recall"] == pytest.approx(2 / 3)
    assert counts["f1"] == pytest.approx(2 * 2 / (3 + 4))


def test_binary_masks_become_connected_components():
    binary = np.zeros((5, 5), np.uint8)
    binary[0, 0] = binary[4, 4] = 255
    binary[1, 1] = 255  # diagonal neighbour of (0, 0): 8-connected, one object
    assert instance_labels(binary).max() == 2
    assert match_instances(binary, binary)["f1"] == 1.0


def test_empty_and_empty_is_perfect_and_missing_all_is_zero():
    empty = np.zeros((4, 4), np.uint8)
    assert match_instances(empty, empty)["f1"] == 1.0
    one = empty.copy()
    one[1:3, 1:3] = 1
    assert match_instances(one, empty) == {
        "true_objects": 1,
        "found_objects": 0,
        "matched": 0,
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
    }


@pytest.mark.parametrize("seed", range(5))
def test_agrees_with_brute_force(seed):
    rng = np.random.default_rng(seed)
    truth, _ = ndimage.label(ndimage.binary_opening(rng.random((40, 40)) > 0.55))
    shifted = np.roll(truth, shift=int(rng.integers(0, 2)), axis=int(rng.integers(0, 2)))
    found = np.where(rng.random((40, 40)) > 0.05, shifted, 0)
    counts = match_instances(truth, found)
    matched, n_true, n_found = _brute_force(truth, found)
    assert (counts["matched"], counts["true_objects"], counts["found_objects"]) == (
        matched,
        n_true,
        n_found,
    )


def test_threshold_below_half_is_refused():
    with pytest.raises(ValueError, match="iou_threshold"):
        match_instances(np.zeros((2, 2)), np.zeros((2, 2)), iou_threshold=0.3)
