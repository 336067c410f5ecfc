"""The vectorised augmentations reproduce Pillow bit for bit."""

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from kwtl.selection import AUGMENTATIONS, autocontrast, brightness, sharpness
from kwtl.selection._augment import smooth

FACTORS = [0.0, 0.5, 1.0, 1.3, 1.6, 1.7, 2.5, -0.4, 0.3333]
SHAPES = [(1, 1), (2, 5), (3, 3), (7, 4), (16, 16), (33, 20), (64, 64)]


def _pil(batch, op):
    return np.stack([np.asarray(op(Image.fromarray(p))) for p in batch])


def _batches(shape, rng):
    h, w = shape
    yield rng.integers(0, 256, (4, h, w), dtype=np.uint8)  # full range
    yield rng.integers(90, 140, (3, h, w)).astype(np.uint8)  # narrow range
    yield rng.choice(np.array([0, 255], np.uint8), (3, h, w))  # extremes only
    yield np.stack([np.full((h, w), v, np.uint8) for v in (0, 37, 128, 255)])  # constant
    yield (rng.integers(0, 256, (2, h, w)) // 7).astype(np.uint8)  # dark


@pytest.mark.parametrize("shape", SHAPES)
def test_autocontrast_matches_pil(shape, rng):
    for batch in _batches(shape, rng):
        np.testing.assert_array_equal(autocontrast(batch), _pil(batch, ImageOps.autocontrast))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("factor", FACTORS)
def test_brightness_matches_pil(shape, factor, rng):
    for batch in _batches(shape, rng):
        expected = _pil(batch, lambda im: ImageEnhance.Brightness(im).enhance(factor))
        np.testing.assert_array_equal(brightness(batch, factor), expected)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("factor", FACTORS)
def test_sharpness_matches_pil(shape, factor, rng):
    for batch in _batches(shape, rng):
        expected = _pil(batch, lambda im: ImageEnhance.Sharpness(im).enhance(factor))
        np.testing.assert_array_equal(sharpness(batch, factor), expected)


@pytest.mark.parametrize("shape", SHAPES)
def test_smooth_matches_pil_including_border(shape, rng):
    for batch in _batches(shape, rng):
        out = smooth(batch)
        np.testing.assert_array_equal(out, _pil(batch, lambda im: im.filter(ImageFilter.SMOOTH)))
        # the one-pixel border is copied unchanged
        for edge in (np.s_[:, 0, :], np.s_[:, -1, :], np.s_[:, :, 0], np.s_[:, :, -1]):
            np.testing.assert_array_equal(out[edge], batch[edge])


def test_random_factors_large_patches_match_pil():
    rng = np.random.default_rng(123)
    batch = rng.integers(0, 256, (2, 256, 256), dtype=np.uint8)
    for factor in rng.uniform(-1.0, 4.0, size=6):
        factor = float(factor)
        np.testing.assert_array_equal(
            sharpness(batch, factor),
            _pil(batch, lambda im: ImageEnhance.Sharpness(im).enhance(factor)),
        )
        np.testing.assert_array_equal(
            brightness(batch, factor),
            _pil(batch, lambda im: ImageEnhance.Brightness(im).enhance(factor)),
        )


def test_constant_patch_unchanged_by_autocontrast_and_sharpness():
    batch = np.full((2, 8, 8), 77, np.uint8)
    np.testing.assert_array_equal(autocontrast(batch), batch)
    np.testing.assert_array_equal(sharpness(batch, 1.7), batch)


def test_autocontrast_is_per_patch():
    a = np.linspace(10, 20, 64).reshape(8, 8).astype(np.uint8)
    b = np.linspace(0, 255, 64).reshape(8, 8).astype(np.uint8)
    out = autocontrast(np.stack([a, b]))
    assert out[0].min() == 0 and out[0].max() == 255
    np.testing.assert_array_equal(out[1], b)


def test_empty_batch_and_input_validation():
    empty = np.empty((0, 8, 8), np.uint8)
    for fn in (autocontrast, smooth):
        assert fn(empty).shape == (0, 8, 8)
    assert brightness(empty, 1.3).shape == (0, 8, 8)
    assert sharpness(empty, 1.3).shape == (0, 8, 8)
    with pytest.raises(ValueError, match="uint8"):
        brightness(np.zeros((1, 4, 4), np.float32), 1.3)
    with pytest.raises(ValueError, match="batch"):
        sharpness(np.zeros((4, 4), np.uint8), 1.3)
    with pytest.raises(ValueError, match="finite"):
        brightness(np.zeros((1, 4, 4), np.uint8), float("nan"))


def test_inputs_are_not_modified(rng):
    batch = rng.integers(0, 256, (3, 9, 9), dtype=np.uint8)
    before = batch.copy()
    for fn in AUGMENTATIONS.values():
        fn(batch, 1.3)
    np.testing.assert_array_equal(batch, before)


def test_registry():
    assert sorted(AUGMENTATIONS) == ["autocontrast", "brightness", "sharpness"]
    batch = np.arange(64, dtype=np.uint8).reshape(1, 8, 8)
    np.testing.assert_array_equal(AUGMENTATIONS["autocontrast"](batch, 9.9), autocontrast(batch))
    np.testing.assert_array_equal(AUGMENTATIONS["brightness"](batch, 1.3), brightness(batch, 1.3))
    np.testing.assert_array_equal(AUGMENTATIONS["sharpness"](batch, 1.3), sharpness(batch, 1.3))
