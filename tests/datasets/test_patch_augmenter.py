"""PatchAugmenter and dihedral: every transform against an independent computation."""

import numpy as np
import pytest

from kwtl.datasets import PatchAugmenter, dihedral
from kwtl.datasets._augment import zoom_pair


def quarter_turn(a):
    """Counter-clockwise quarter turn by explicit indexing: out[i][j] = a[j][n - 1 - i]."""
    n = len(a)
    return np.array([[a[j][n - 1 - i] for j in range(n)] for i in range(n)])


def mirror(a):
    """Left-right flip by explicit indexing."""
    return np.array([[row[len(row) - 1 - j] for j in range(len(row))] for row in a])


@pytest.mark.parametrize("k", range(8))
def test_dihedral_matches_explicit_index_maps(k):
    a = np.arange(9).reshape(3, 3)
    expected = a
    for _ in range(k % 4):
        expected = quarter_turn(expected)
    if k >= 4:
        expected = mirror(expected)
    np.testing.assert_array_equal(dihedral(a, k), expected)


def test_dihedral_gives_eight_distinct_symmetries():
    a = np.arange(16).reshape(4, 4)
    assert len({dihedral(a, k).tobytes() for k in range(8)}) == 8


def test_dihedral_refuses_quarter_turns_of_non_square_arrays():
    with pytest.raises(ValueError, match="quarter turn"):
        dihedral(np.zeros((2, 3)), 1)
    assert dihedral(np.zeros((2, 3)), 6).shape == (2, 3)
    with pytest.raises(ValueError, match="0..7"):
        dihedral(np.zeros((2, 2)), 8)


def test_no_transform_is_the_identity():
    image = np.random.default_rng(0).integers(0, 256, (8, 8), dtype=np.uint8)
    mask = image > 100
    x, y = PatchAugmenter(flips=False).transform_pair(image, mask, np.random.default_rng(1))
    np.testing.assert_array_equal(x, image)
    np.testing.assert_array_equal(y, mask)
    assert PatchAugmenter(flips=False).is_identity and not PatchAugmenter().is_identity


def test_flips_move_image_and_mask_together_and_reach_all_symmetries():
    rng = np.random.default_rng(0)
    mask = rng.random((6, 6)) > 0.5
    image = np.where(mask, 200, 30).astype(np.uint8)
    image[0, 0] = 90  # breaks every symmetry of the picture
    variants = {dihedral(image, k).tobytes(): k for k in range(8)}
    seen = set()
    for _ in range(200):
        x, y = PatchAugmenter(flips=True).transform_pair(image, mask, rng)
        k = variants[x.tobytes()]  # KeyError if x is not a symmetry of the image
        np.testing.assert_array_equal(y, dihedral(mask, k))
        seen.add(k)
    assert seen == set(range(8))


def test_intensity_is_contrast_about_the_mean_plus_an_offset():
    image = np.random.default_rng(3).integers(40, 200, (5, 7), dtype=np.uint8)
    mask = image > 120
    a = 0.3
    x, y = PatchAugmenter(flips=False, intensity=a).transform_pair(
        image, mask, np.random.default_rng(11)
    )
    draws = np.random.default_rng(11)
    c = draws.uniform(1 - a, 1 + a)
    b = draws.uniform(-a, a) * 128
    m = image.mean()
    expected = [
        [min(255, max(0, round(m + c * (v - m) + b))) for v in row] for row in image.astype(float)
    ]
    np.testing.assert_array_equal(x, np.array(expected))
    np.testing.assert_array_equal(y, mask)


def test_gamma_by_hand():
    image = np.array([[0, 64, 128], [192, 255, 10]], dtype=np.uint8)
    x, _ = PatchAugmenter(flips=False, gamma=0.5).transform_pair(
        image, image > 0, np.random.default_rng(4)
    )
    g = np.exp(np.random.default_rng(4).uniform(-0.5, 0.5))
    expected = [[round(255 * (v / 255) ** g) for v in row] for row in image.tolist()]
    np.testing.assert_array_equal(x, np.array(expected))


def bilinear(a, y, x):
    """Bilinear sample of ``a`` at an in-bounds point, written out."""
    y0, x0 = int(np.floor(y)), int(np.floor(x))
    y1, x1 = min(y0 + 1, a.shape[0] - 1), min(x0 + 1, a.shape[1] - 1)
    dy, dx = y - y0, x - x0
    return (
        (1 - dy) * (1 - dx) * a[y0, x0]
        + (1 - dy) * dx * a[y0, x1]
        + dy * (1 - dx) * a[y1, x0]
        + dy * dx * a[y1, x1]
    )


@pytest.mark.parametrize("factor", [2.0, 1.5])
def test_zoom_samples_the_centred_grid_bilinearly(factor):
    rng = np.random.default_rng(0)
    image = rng.random((5, 5)) * 255
    mask = rng.random((5, 5)) > 0.5
    zoomed, zoomed_mask = zoom_pair(image, mask, factor)
    c = 2.0
    for yy in range(5):
        for xx in range(5):
            sy, sx = c + (yy - c) / factor, c + (xx - c) / factor
            assert zoomed[yy, xx] == pytest.approx(bilinear(image, sy, sx), abs=1e-9)
            if factor == 1.5:  # no ties at this factor: nearest neighbour is unambiguous
                assert zoomed_mask[yy, xx] == mask[int(round(sy)), int(round(sx))]


@pytest.mark.parametrize("factor", [0.8, 1.3, 2.5])
def test_zoom_agrees_with_scipy_affine_transform(factor):
    from scipy import ndimage

    rng = np.random.default_rng(2)
    image = rng.random((13, 17)) * 255
    zoomed, _ = zoom_pair(image, image > 128, factor)
    centre = np.array([6.0, 8.0])
    matrix = np.eye(2) / factor
    want = ndimage.affine_transform(
        image, matrix, offset=centre - matrix @ centre, order=1, mode="mirror"
    )
    np.testing.assert_allclose(zoomed, want, atol=1e-9)


def test_scale_draws_stay_in_their_range_and_keep_masks_binary():
    image = np.tile(np.arange(16, dtype=np.uint8) * 16, (16, 1))
    mask = image >= 128
    aug = PatchAugmenter(flips=False, scale=0.25)
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = aug.transform_pair(image, mask, rng)
        assert y.dtype == bool and x.shape == image.shape
        # a zoom about the centre keeps the left-right split at the centre column
        assert not y[:, :6].any() and y[:, 10:].all()


@pytest.mark.parametrize(
    "params, match",
    [
        ({"intensity": 1.0}, "intensity"),
        ({"gamma": -0.1}, "gamma"),
        ({"scale": "x"}, "scale"),
        ({"flips": 1}, "flips"),
    ],
)
def test_bad_parameters_are_named(params, match):
    with pytest.raises(ValueError, match=match):
        PatchAugmenter(**params).transform_pair(
            np.zeros((4, 4), np.uint8), np.zeros((4, 4)), np.random.default_rng(0)
        )


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="uint8"):
        PatchAugmenter().transform_pair(
            np.zeros((4, 4)), np.zeros((4, 4)), np.random.default_rng(0)
        )
