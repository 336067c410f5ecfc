from pathlib import Path

import numpy as np
import pytest

from kwtl.utils import (
    as_mask,
    as_uint8_image,
    check_images,
    check_masks,
    derive_seed,
    normalize_uint8,
)


def test_uint8_conversion_rules():
    assert as_uint8_image(np.array([[0, 200]], np.uint8)).tolist() == [[0, 200]]
    assert as_uint8_image(np.array([[True, False]])).tolist() == [[255, 0]]
    # 16-bit: kept when the values are 8-bit data, else percentile-normalised:
    # p1 = 0 + 0.02 * 1000 = 20, p99.8 = 1000 + 0.996 * 3000 = 3988,
    # (1000 - 20) * 255 / 3968 = 62.98 -> 63
    assert as_uint8_image(np.array([[10, 200]], np.uint16)).tolist() == [[10, 200]]
    assert as_uint8_image(np.array([[0, 1000, 4000]], np.uint16)).tolist() == [[0, 63, 255]]
    # floats: [0, 1] scaled by 255, whole numbers in 0..255 kept, other ranges percentiles
    assert as_uint8_image(np.array([[0.0, 1.0]])).tolist() == [[0, 255]]
    assert as_uint8_image(np.array([[25.0, 53.0]])).tolist() == [[25, 53]]
    # p1 = -2 + 0.02 * 2 = -1.96, p99.8 = 0 + 0.996 * 2 = 1.992: 1.96 * 255 / 3.952 = 126.5
    assert as_uint8_image(np.array([[-2.0, 0.0, 2.0]])).tolist() == [[0, 126, 255]]
    # RGB -> ITU-R 601 luma: 0.299*10 + 0.587*200 + 0.114*30 = 123.81
    rgb = np.zeros((1, 1, 3), np.uint8) + np.array([10, 200, 30], np.uint8)
    assert as_uint8_image(rgb).tolist() == [[124]]
    rgba = np.concatenate([rgb, np.zeros((1, 1, 1), np.uint8)], axis=-1)
    assert as_uint8_image(rgba).tolist() == [[124]]


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.array([[np.nan, 1.0]]), "NaN"),
        (np.zeros((2, 2, 2)), "2-D"),
        (np.zeros((0, 3)), "empty"),
        (np.array([["a"]]), "dtype"),
    ],
)
def test_uint8_conversion_errors(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        as_uint8_image(bad)


def test_check_images_and_masks():
    imgs = check_images([np.zeros((3, 4)), np.ones((5, 5), np.uint16)])
    assert [im.dtype for im in imgs] == [np.uint8, np.uint8]
    assert len(check_images(np.zeros((2, 8, 8)))) == 2
    with pytest.raises(ValueError, match="single 2-D array"):
        check_images(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="empty"):
        check_images([])
    with pytest.raises(ValueError, match=r"X\[1\] contains NaN"):
        check_images([np.zeros((2, 2)), np.full((2, 2), np.nan)])
    with pytest.raises(ValueError, match="1 masks but there are 2 images"):
        check_masks([np.zeros((3, 4))], imgs)
    with pytest.raises(
        ValueError, match=r"y\[1\] has shape \(4, 4\) but its image has shape \(5, 5\)"
    ):
        check_masks([np.zeros((3, 4)), np.zeros((4, 4))], imgs)
    masks = check_masks([np.zeros((3, 4)), np.full((5, 5), 255)], imgs)
    assert masks[1].dtype == bool and masks[1].all()
    assert as_mask(np.array([[0, 2]])).tolist() == [[False, True]]


def test_normalize_and_seeds():
    x = normalize_uint8(np.array([0, 255], np.uint8))
    assert x.tolist() == [-1.0, 1.0]
    assert derive_seed(3, "a") == derive_seed(3, "a") != derive_seed(4, "a")
    with pytest.raises(TypeError):
        derive_seed("seed")


def test_tune_malloc_is_idempotent_and_checks_its_argument():
    # in a child process: the setting is process-wide, and the test process keeps its own
    import subprocess
    import sys

    code = """
import sys
from kwtl.utils._allocator import _glibc, tune_malloc
first = tune_malloc()
assert first == (_glibc() is not None)
if sys.platform.startswith("linux") and _glibc() is not None:
    assert first is True
assert tune_malloc() is first
for bad in (0, 2**31):
    try:
        tune_malloc(bad)
    except ValueError as err:
        assert "threshold" in str(err)
    else:
        raise AssertionError("no error for threshold %d" % bad)
print("ok")
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_malloc_environment_matches_tune_malloc_thresholds():
    from kwtl.utils._allocator import malloc_environment

    assert malloc_environment(1 << 20) == {
        "MALLOC_MMAP_THRESHOLD_": "1048576",
        "MALLOC_TRIM_THRESHOLD_": "1048576",
    }
