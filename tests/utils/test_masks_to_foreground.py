"""Instance labels become foreground without merging touching cells."""

import numpy as np
import pytest
from scipy import ndimage

from kwtl.utils import as_mask, check_images, check_masks, colour_labels, masks_to_foreground


def _two_touching_squares():
    labels = np.zeros((6, 8), np.uint16)
    labels[1:5, 1:4] = 1
    labels[1:5, 4:7] = 2
    return labels


def test_two_touching_squares_by_hand():
    expected = np.array(
        [
            [0, 0, 0, 0, 0, 0, 0, 0],
            [0, 1, 1, 0, 0, 1, 1, 0],
            [0, 1, 1, 0, 0, 1, 1, 0],
            [0, 1, 1, 0, 0, 1, 1, 0],
            [0, 1, 1, 0, 0, 1, 1, 0],
            [0, 0, 0, 0, 0, 0, 0, 0],
        ],
        bool,
    )
    out = masks_to_foreground(_two_touching_squares())
    np.testing.assert_array_equal(out, expected)
    # the merged foreground is one blob; the separated one two, even 8-connected
    assert ndimage.label(_two_touching_squares() != 0, np.ones((3, 3)))[1] == 1
    assert ndimage.label(out, np.ones((3, 3)))[1] == 2


def test_corner_contact_is_separated():
    labels = np.zeros((4, 4), np.uint8)
    labels[:2, :2] = 3
    labels[2:, 2:] = 9
    expected = labels != 0
    expected[1, 1] = expected[2, 2] = False  # the two diagonal neighbours
    np.testing.assert_array_equal(masks_to_foreground(labels), expected)


@pytest.mark.parametrize(
    "mask",
    [
        np.array([[0, 1], [1, 1]], np.uint8),
        np.array([[0, 255], [255, 255]], np.uint8),
        np.array([[False, True], [True, True]]),
        np.zeros((3, 3), np.int32),
    ],
)
def test_binary_masks_pass_unchanged(mask):
    np.testing.assert_array_equal(masks_to_foreground(mask), mask != 0)


def test_separate_touching_false_is_plain_foreground():
    labels = _two_touching_squares()
    np.testing.assert_array_equal(masks_to_foreground(labels, separate_touching=False), labels != 0)


def _slow_reference(labels):
    """Pixel by pixel: foreground unless an 8-neighbour holds another non-zero label."""
    out = labels != 0
    h, w = labels.shape
    for r in range(h):
        for c in range(w):
            if labels[r, c] == 0:
                continue
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < h and 0 <= cc < w and labels[rr, cc] not in (0, labels[r, c]):
                        out[r, c] = False
    return out


@pytest.mark.parametrize("seed", range(5))
def test_matches_a_pixel_loop_on_random_labels(seed):
    labels = np.random.default_rng(seed).integers(0, 4, (9, 11))
    np.testing.assert_array_equal(masks_to_foreground(labels), _slow_reference(labels))


def test_refuses_what_is_not_labels():
    with pytest.raises(ValueError, match="negative"):
        masks_to_foreground(np.array([[0, -1]]))
    with pytest.raises(ValueError, match="fractional"):
        masks_to_foreground(np.array([[0.0, 0.5]]))
    with pytest.raises(ValueError, match="2-D"):
        masks_to_foreground(np.zeros((2, 2, 2), np.uint8))


def test_as_mask_and_check_masks_route_instances_through_it():
    labels = _two_touching_squares()
    expected = masks_to_foreground(labels)
    np.testing.assert_array_equal(as_mask(labels), expected)
    images = check_images([np.zeros(labels.shape, np.uint8)])
    np.testing.assert_array_equal(check_masks([labels], images)[0], expected)
    # whole-number floats are labels too
    np.testing.assert_array_equal(as_mask(labels.astype(np.float32)), expected)


def test_colour_coded_instances_stay_apart():
    labels = _two_touching_squares()
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], np.uint8)
    rgb = palette[labels]
    np.testing.assert_array_equal(as_mask(rgb), masks_to_foreground(labels))
    white = np.repeat((labels != 0)[..., None] * np.uint8(255), 3, axis=-1)
    np.testing.assert_array_equal(as_mask(white), labels != 0)  # one colour: binary
    # red (0xFF0000) sorts after green (0x00FF00)
    np.testing.assert_array_equal(colour_labels(rgb), np.array([0, 2, 1])[labels])


def test_colour_masks_of_whole_floats_and_refusals():
    rgb = np.zeros((2, 2, 3))
    rgb[0, 0] = (255.0, 0.0, 0.0)
    np.testing.assert_array_equal(as_mask(rgb), [[True, False], [False, False]])
    with pytest.raises(ValueError, match="whole-number"):
        colour_labels(rgb / 3.7)
    with pytest.raises(ValueError, match="16 bits"):
        colour_labels(np.full((1, 1, 3), 70000, np.int64))
