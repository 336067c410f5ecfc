"""One intensity policy: the same picture gives the same input whatever its container."""

import numpy as np
import pytest

from kwtl.datasets import make_cells
from kwtl.pseudo_label import PseudoLabeler
from kwtl.utils import PERCENTILES, check_images


@pytest.fixture(scope="module")
def picture():
    image = make_cells(1, 64, random_state=0)[0][0]
    assert image.dtype == np.uint8
    return image


@pytest.mark.parametrize(
    "convert",
    [
        lambda x: x.astype(np.uint16),
        lambda x: x.astype(np.int64),
        lambda x: x.astype(np.float32),
        lambda x: x.astype(np.float64) / 255.0,
        lambda x: np.repeat(x[..., None], 3, axis=-1),  # grey stored as RGB: luma is exact
    ],
    ids=["uint16", "int64", "float32 0..255", "float 0..1", "grey RGB"],
)
def test_same_picture_same_input(picture, convert):
    np.testing.assert_array_equal(check_images([convert(picture)])[0], picture)


def test_uint8_is_never_changed(picture):
    dim = (picture // 4).astype(np.uint8)  # a dim 8-bit picture is not stretched
    np.testing.assert_array_equal(check_images([dim])[0], dim)


def test_one_hot_pixel_does_not_flatten_a_16_bit_image(picture):
    wide = picture.astype(np.uint16) * 200 + 1000  # 16-bit data: 1000 .. 52000
    hot = wide.copy()
    hot[0, 0] = 65535
    a, b = check_images([wide])[0], check_images([hot])[0]
    assert len(np.unique(b)) > 100  # not squeezed into a few grey levels
    assert np.mean(np.abs(a.astype(int) - b.astype(int))) < 2
    flips = np.mean(
        PseudoLabeler().fit_transform([wide])[0] != PseudoLabeler().fit_transform([hot])[0]
    )
    assert flips < 0.01  # the issue measured 81 % flips with the former 255 / max rule


def test_percentiles_against_a_second_implementation(rng):
    image = rng.gamma(2.0, 900.0, (40, 50)).astype(np.uint16) + 300
    lo, hi = np.sort(image.ravel().astype(float))[[0, -1]]
    values = np.sort(image.ravel().astype(float))

    def percentile(q):  # numpy's default "linear" method, written out
        pos = (len(values) - 1) * q / 100.0
        k = int(np.floor(pos))
        return values[k] + (values[min(k + 1, len(values) - 1)] - values[k]) * (pos - k)

    p1, p2 = percentile(PERCENTILES[0]), percentile(PERCENTILES[1])
    expected = np.clip(np.rint((image - p1) * 255.0 / (p2 - p1)), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(check_images([image])[0], expected)
    assert lo < p1 < p2 < hi
