"""Tests for kwtl.pseudo_label (paper §3.2, SPEC §4.1)."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.validation import check_is_fitted

from kwtl.pseudo_label import PAPER_PRESETS, PseudoLabeler, estimate_polarity
from kwtl.pseudo_label._pseudo_label import dilate, equalize_hist


# --------------------------------------------------------------------------- helpers
def _loop_equalize(image):
    """Independent, literal re-implementation of OpenCV's equalizeHist loop (C code order)."""
    hist = [0] * 256
    for v in image.ravel().tolist():
        hist[v] += 1
    total = image.size
    i = 0
    while hist[i] == 0:
        i += 1
    if hist[i] == total:
        return image.copy()
    scale = np.float32(255.0) / np.float32(total - hist[i])
    lut = [0] * 256
    running = 0
    for j in range(i + 1, 256):
        running += hist[j]
        lut[j] = int(min(255, max(0, np.rint(np.float32(running) * scale))))
    out = np.empty_like(image)
    for r in range(image.shape[0]):
        for c in range(image.shape[1]):
            out[r, c] = lut[image[r, c]]
    return out


def _blobs(shape=(64, 80), seed=0, fg=200, bg=30, noise=8.0):
    """Synthetic 'cells': a few discs at level `fg` on a noisy background at level `bg`."""
    rng = np.random.default_rng(seed)
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    truth = np.zeros(shape, dtype=bool)
    for _ in range(6):
        r0, c0 = rng.integers(8, shape[0] - 8), rng.integers(8, shape[1] - 8)
        truth |= (rr - r0) ** 2 + (cc - c0) ** 2 <= rng.integers(3, 6) ** 2
    img = np.where(truth, fg, bg).astype(float) + rng.normal(0, noise, shape)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    assert truth.mean() < 0.35
    return img, truth


def _iou(a, b):
    return (np.logical_and(a, b).sum() + 1e-4) / (np.logical_or(a, b).sum() + 1e-4)


# --------------------------------------------------------------------------- equalisation
def test_equalize_hand_computed_2x3():
    img = np.array([[10, 10, 20], [20, 20, 30]], dtype=np.uint8)
    # hist: 10 -> 2, 20 -> 3, 30 -> 1; N = 6; cdf_min = cdf[10] = 2; N - cdf_min = 4
    # lut[10] = (2-2)*255/4 = 0; lut[20] = (5-2)*255/4 = 191.25 -> 191; lut[30] = 4*255/4 = 255
    expected = np.array([[0, 0, 191], [191, 191, 255]], dtype=np.uint8)
    out = equalize_hist(img)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected)


def test_equalize_hand_computed_rounding():
    # values 0, 100, 200, 255 once each: N = 4, cdf_min = 1, N - cdf_min = 3
    # lut = 0, 255/3 = 85, 510/3 = 170, 255
    img = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(equalize_hist(img), [[0, 85], [170, 255]])
    # 1 of 3 remaining pixels per step with denominator 2: 255/2 = 127.5 -> 128 (half to even)
    img = np.array([[5, 6, 7]], dtype=np.uint8)
    np.testing.assert_array_equal(equalize_hist(img), [[0, 128, 255]])


@pytest.mark.parametrize("seed", range(6))
def test_equalize_matches_loop_implementation(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 40, 2))
    if seed % 3 == 0:
        img = rng.integers(0, 256, shape).astype(np.uint8)
    elif seed % 3 == 1:
        img = np.clip(rng.normal(90, 12, shape), 0, 255).astype(np.uint8)
    else:
        img = rng.choice(np.array([3, 77, 78, 250], dtype=np.uint8), shape)
    np.testing.assert_array_equal(equalize_hist(img), _loop_equalize(img))


def test_equalize_properties():
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(60, 10, (50, 50)), 0, 255).astype(np.uint8)
    eq = equalize_hist(img)
    assert eq[img == img.min()].max() == 0
    assert eq[img == img.max()].min() == 255
    order = np.argsort(img.ravel(), kind="stable")
    assert np.all(np.diff(eq.ravel()[order].astype(int)) >= 0)  # monotone


def test_equalize_constant_image_unchanged():
    img = np.full((3, 4), 77, dtype=np.uint8)
    out = equalize_hist(img)
    np.testing.assert_array_equal(out, img)
    assert out is not img


def test_equalize_rejects_non_uint8():
    with pytest.raises(ValueError, match="uint8"):
        equalize_hist(np.zeros((3, 3), dtype=np.float64))
    with pytest.raises(ValueError, match="2-D"):
        equalize_hist(np.zeros((2, 3, 3), dtype=np.uint8))


# --------------------------------------------------------------------------- threshold
def test_threshold_polarity_tiny():
    img = np.array([[0, 100], [200, 255]], dtype=np.uint8)  # equalised: [[0, 85], [170, 255]]
    dark = PseudoLabeler(method="threshold", polarity="dark", threshold=100)
    np.testing.assert_array_equal(dark.fit_transform([img])[0], [[True, True], [False, False]])
    bright = PseudoLabeler(method="threshold", polarity="bright", threshold=170)
    np.testing.assert_array_equal(bright.fit_transform([img])[0], [[False, False], [True, True]])
    # tau is inclusive on both sides (cv2.THRESH_BINARY_INV keeps x <= tau)
    at85 = PseudoLabeler(method="threshold", polarity="dark", threshold=85)
    np.testing.assert_array_equal(at85.transform([img])[0], [[True, True], [False, False]])
    at85b = PseudoLabeler(method="threshold", polarity="bright", threshold=85)
    np.testing.assert_array_equal(at85b.transform([img])[0], [[False, True], [True, True]])


def test_threshold_uses_equalised_image():
    # raw values all below 140, but after equalisation the brightest maps to 255
    img = np.array([[10, 20], [30, 40]], dtype=np.uint8)  # equalised: 0, 85, 170, 255
    out = PseudoLabeler(method="threshold", polarity="dark", threshold=140).transform([img])[0]
    np.testing.assert_array_equal(out, [[True, True], [False, False]])


def test_threshold_constant_image_follows_rule():
    img = np.full((4, 4), 100, dtype=np.uint8)  # equalisation leaves it at 100
    out = PseudoLabeler(method="threshold", polarity="dark", threshold=140).transform([img])[0]
    assert out.all()
    out = PseudoLabeler(method="threshold", polarity="bright", threshold=140).transform([img])[0]
    assert not out.any()


def test_b39_rule_is_eq_greater_than_zero():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 5, (10, 12)).astype(np.uint8)
    out = PseudoLabeler.for_dataset("B39").transform([img])[0]
    np.testing.assert_array_equal(out, equalize_hist(img) > 0)
    np.testing.assert_array_equal(out, img > img.min())


# --------------------------------------------------------------------------- dilation
def test_dilation_tiny_by_hand():
    m = np.zeros((5, 5), dtype=bool)
    m[1, 1] = True
    m[4, 4] = True  # at the corner: nothing leaks in from outside the image
    once = np.array(
        [
            [0, 0, 0, 0, 0],
            [0, 1, 1, 0, 0],
            [0, 1, 1, 0, 0],
            [0, 0, 0, 0, 0],
            [0, 0, 0, 0, 1],
        ],
        dtype=bool,
    )
    twice = np.array(
        [
            [0, 0, 0, 0, 0],
            [0, 1, 1, 1, 0],
            [0, 1, 1, 1, 0],
            [0, 1, 1, 1, 0],
            [0, 0, 0, 0, 1],
        ],
        dtype=bool,
    )
    np.testing.assert_array_equal(dilate(m, 2, 1), once)
    np.testing.assert_array_equal(dilate(m, 2, 2), twice)
    # odd kernel is centred
    three = np.zeros((5, 5), dtype=bool)
    three[0:3, 0:3] = True
    three[3:5, 3:5] = True
    np.testing.assert_array_equal(dilate(m, 3, 1), three)


def test_dilation_noops():
    m = np.eye(4, dtype=bool)
    np.testing.assert_array_equal(dilate(m, 2, 0), m)
    np.testing.assert_array_equal(dilate(m, 1, 3), m)
    assert not dilate(np.zeros((3, 3)), 2, 2).any()


def test_dilation_small_image_large_kernel():
    # regression: scipy's iterations shortcut with origin=-1 leaked a pixel here
    m = np.zeros((9, 3), dtype=bool)
    m[0, 1] = True
    expected = np.zeros((9, 3), dtype=bool)
    expected[0:5, :] = True  # 4x4 kernel twice spreads rows -2..+4, cols -2..+4
    np.testing.assert_array_equal(dilate(m, 4, 2), expected)


def test_labeler_applies_dilation():
    img = np.full((6, 6), 200, dtype=np.uint8)
    img[2, 2] = 10
    pl = PseudoLabeler(method="otsu", polarity="dark", dilation_size=2, dilation_iterations=2)
    out = pl.transform([img])[0]
    expected = np.zeros((6, 6), dtype=bool)
    expected[2:5, 2:5] = True
    np.testing.assert_array_equal(out, expected)


# --------------------------------------------------------------------------- otsu / kmeans
@pytest.mark.parametrize("method", ["otsu", "kmeans"])
def test_dark_and_bright_clusters(method):
    img = np.array([[10, 12, 200], [11, 210, 205]], dtype=np.uint8)
    dark = PseudoLabeler(method=method, polarity="dark", random_state=0).transform([img])[0]
    bright = PseudoLabeler(method=method, polarity="bright", random_state=0).transform([img])[0]
    np.testing.assert_array_equal(dark, img < 100)
    np.testing.assert_array_equal(bright, img > 100)


@pytest.mark.parametrize("method", ["otsu", "kmeans"])
def test_constant_image_gives_empty_mask(method):
    img = np.full((5, 7), 42, dtype=np.uint8)
    for polarity in ("dark", "bright", "auto"):
        out = PseudoLabeler(method=method, polarity=polarity).transform([img])[0]
        assert out.shape == (5, 7) and not out.any()


def test_kmeans_recovers_blobs_and_is_deterministic():
    img, truth = _blobs(seed=3)
    pl = PseudoLabeler(method="kmeans", polarity="bright", random_state=0)
    out = pl.transform([img])[0]
    assert _iou(out, truth) > 0.95
    other, _ = _blobs(seed=4)
    a = pl.transform([img, other])
    b = pl.transform([other, img])
    np.testing.assert_array_equal(a[0], b[1])  # independent of the position in X
    np.testing.assert_array_equal(a[1], b[0])
    np.testing.assert_array_equal(a[0], clone(pl).transform([img])[0])


# --------------------------------------------------------------------------- auto polarity
def test_estimate_polarity_synthetic():
    bright_img, _ = _blobs(seed=0, fg=200, bg=30)
    dark_img, _ = _blobs(seed=1, fg=40, bg=150)
    assert estimate_polarity(bright_img) == "bright"
    assert estimate_polarity(dark_img) == "dark"
    assert estimate_polarity(np.full((4, 4), 9, dtype=np.uint8)) == "dark"


@pytest.mark.parametrize("method", ["otsu", "kmeans"])
def test_auto_polarity_segments_both_kinds(method):
    bright_img, bright_truth = _blobs(seed=0, fg=200, bg=30)
    dark_img, dark_truth = _blobs(seed=1, fg=40, bg=150)
    out = PseudoLabeler(method=method, random_state=0).transform([bright_img, dark_img])
    assert _iou(out[0], bright_truth) > 0.95
    assert _iou(out[1], dark_truth) > 0.95
    # and the explicit polarities agree with what auto chose
    bright = PseudoLabeler(method=method, polarity="bright", random_state=0)
    dark = PseudoLabeler(method=method, polarity="dark", random_state=0)
    np.testing.assert_array_equal(out[0], bright.transform([bright_img])[0])
    np.testing.assert_array_equal(out[1], dark.transform([dark_img])[0])


def test_auto_polarity_with_threshold_method():
    dark_img, _ = _blobs(seed=1, fg=40, bg=150)
    auto = PseudoLabeler(method="threshold", polarity="auto", threshold=60).transform([dark_img])
    dark = PseudoLabeler(method="threshold", polarity="dark", threshold=60).transform([dark_img])
    np.testing.assert_array_equal(auto[0], dark[0])


def test_default_is_otsu_auto():
    pl = PseudoLabeler()
    assert pl.method == "otsu" and pl.polarity == "auto"
    assert pl.dilation_iterations == 0 and pl.random_state is None


# --------------------------------------------------------------------------- presets
def test_presets_documented_params():
    assert set(PAPER_PRESETS) == {"TNBC", "EM", "ssTEM", "B39", "B5"}
    expected = {
        "TNBC": ("threshold", "dark", 20, 2, 2),
        "EM": ("threshold", "dark", 140, 2, 2),
        "ssTEM": ("threshold", "dark", 140, 2, 0),
        "B39": ("threshold", "bright", 1, 2, 0),
        "B5": ("otsu", "bright", 140, 2, 0),
    }
    keys = ("method", "polarity", "threshold", "dilation_size", "dilation_iterations")
    for name, values in expected.items():
        assert tuple(PAPER_PRESETS[name][k] for k in keys) == values
        params = PseudoLabeler.for_dataset(name).get_params()
        assert tuple(params[k] for k in keys) == values


@pytest.mark.parametrize("name", ["tnbc", "Em", "SSTEM", "b39", "B5"])
def test_for_dataset_case_insensitive_and_runs(name):
    pl = PseudoLabeler.for_dataset(name, random_state=0)
    assert isinstance(pl, PseudoLabeler)
    img, _ = _blobs(seed=2, fg=40, bg=150)
    out = pl.fit_transform([img])
    assert out[0].shape == img.shape and out[0].dtype == bool


def test_for_dataset_overrides_and_does_not_mutate_presets():
    before = {k: dict(v) for k, v in PAPER_PRESETS.items()}
    pl = PseudoLabeler.for_dataset("EM", threshold=120, dilation_iterations=1)
    assert pl.threshold == 120 and pl.dilation_iterations == 1 and pl.method == "threshold"
    assert PAPER_PRESETS == before


def test_for_dataset_errors():
    with pytest.raises(ValueError, match="TNBC, EM, ssTEM, B39, B5"):
        PseudoLabeler.for_dataset("BBBC006")
    with pytest.raises(TypeError):
        PseudoLabeler.for_dataset("EM", not_a_param=1)
    with pytest.raises(TypeError):
        PseudoLabeler.for_dataset(3)


# --------------------------------------------------------------------------- sklearn API
def test_clone_get_set_params_pickle():
    pl = PseudoLabeler(method="kmeans", polarity="dark", threshold=50, random_state=7)
    params = pl.get_params()
    assert params == {
        "method": "kmeans",
        "polarity": "dark",
        "threshold": 50,
        "dilation_size": 2,
        "dilation_iterations": 0,
        "random_state": 7,
    }
    cloned = clone(pl)
    assert cloned is not pl and cloned.get_params() == params
    pl.set_params(method="threshold", dilation_iterations=2)
    assert pl.method == "threshold" and pl.dilation_iterations == 2
    restored = pickle.loads(pickle.dumps(pl))
    assert restored.get_params() == pl.get_params()


def test_init_stores_params_without_validation():
    pl = PseudoLabeler(method="nope", threshold=-5)  # no error before fit/transform
    assert pl.method == "nope"
    with pytest.raises(ValueError, match="method"):
        pl.fit([np.zeros((3, 3))])


def test_stateless_fit_and_is_fitted():
    img, _ = _blobs(seed=0)
    pl = PseudoLabeler()
    check_is_fitted(pl)  # stateless: nothing to fit
    assert pl.__sklearn_tags__().requires_fit is False
    assert pl.fit([img]) is pl
    assert not [k for k in vars(pl) if k.endswith("_")]  # fit learns nothing
    np.testing.assert_array_equal(pl.transform([img])[0], pl.fit_transform([img])[0])
    np.testing.assert_array_equal(PseudoLabeler().transform([img])[0], pl.transform([img])[0])


def test_output_types_and_shapes_mixed_inputs():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (20, 30)).astype(np.uint8)
    rgb = rng.integers(0, 256, (16, 12, 3)).astype(np.uint8)
    rgba = rng.integers(0, 256, (8, 9, 4)).astype(np.uint8)
    as_float = rng.random((11, 7))
    as_16bit = rng.integers(0, 4000, (9, 13)).astype(np.uint16)
    X = [grey, rgb, rgba, as_float, as_16bit]
    for method in ("threshold", "otsu", "kmeans"):
        out = PseudoLabeler(method=method, random_state=0, dilation_iterations=1).transform(X)
        assert isinstance(out, list) and len(out) == len(X)
        assert [m.shape for m in out] == [(20, 30), (16, 12), (8, 9), (11, 7), (9, 13)]
        assert all(m.dtype == bool for m in out)


def test_rgb_equals_its_luma():
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (10, 10, 3)).astype(np.uint8)
    luma = np.clip(np.rint(rgb.astype(float) @ [0.299, 0.587, 0.114]), 0, 255).astype(np.uint8)
    pl = PseudoLabeler(method="threshold", polarity="dark")
    np.testing.assert_array_equal(pl.transform([rgb])[0], pl.transform([luma])[0])


def test_stack_input():
    rng = np.random.default_rng(2)
    stack = rng.integers(0, 256, (3, 10, 14)).astype(np.uint8)
    out = PseudoLabeler().transform(stack)
    assert len(out) == 3 and all(m.shape == (10, 14) and m.dtype == bool for m in out)
    np.testing.assert_array_equal(out[1], PseudoLabeler().transform([stack[1]])[0])


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "params, exc, match",
    [
        ({"method": "watershed"}, ValueError, "method"),
        ({"polarity": "light"}, ValueError, "polarity"),
        ({"method": "threshold", "threshold": 256}, ValueError, "threshold"),
        ({"method": "threshold", "threshold": -1}, ValueError, "threshold"),
        ({"method": "threshold", "threshold": 12.5}, TypeError, "threshold"),
        ({"method": "threshold", "threshold": None}, TypeError, "threshold"),
        ({"method": "threshold", "threshold": True}, TypeError, "threshold"),
        ({"dilation_iterations": -1}, ValueError, "dilation_iterations"),
        ({"dilation_size": 0}, ValueError, "dilation_size"),
        ({"dilation_size": 2.0}, TypeError, "dilation_size"),
    ],
)
def test_bad_params(params, exc, match):
    img = np.zeros((4, 4), dtype=np.uint8)
    pl = PseudoLabeler(**params)
    with pytest.raises(exc, match=match):
        pl.fit([img])
    with pytest.raises(exc, match=match):
        pl.transform([img])


def test_threshold_ignored_by_other_methods():
    img, _ = _blobs(seed=0)
    for method in ("otsu", "kmeans"):
        PseudoLabeler(method=method, threshold=None).transform([img])
    np.testing.assert_array_equal(
        PseudoLabeler(threshold=3).transform([img])[0], PseudoLabeler().transform([img])[0]
    )
    # numpy integers are fine
    PseudoLabeler(method="threshold", threshold=np.int64(30)).transform([img])


def test_bad_images():
    pl = PseudoLabeler()
    with pytest.raises(ValueError, match="empty"):
        pl.fit([])
    with pytest.raises(ValueError, match="empty"):
        pl.transform([])
    bad = np.zeros((4, 4))
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        pl.transform([bad])
    with pytest.raises(ValueError, match="single 2-D array"):
        pl.transform(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError):
        pl.transform([np.zeros((2, 3, 5))])


# --------------------------------------------------------------------------- OpenCV cross-check
def test_matches_opencv_if_available():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    for trial in range(200):
        shape = tuple(rng.integers(1, 50, 2))
        kind = trial % 3
        if kind == 0:
            img = rng.integers(0, 256, shape).astype(np.uint8)
        elif kind == 1:
            img = np.clip(rng.normal(120, rng.uniform(0.5, 30), shape), 0, 255).astype(np.uint8)
        else:
            img = rng.choice(rng.integers(0, 256, rng.integers(1, 5)), shape).astype(np.uint8)
        np.testing.assert_array_equal(equalize_hist(img), cv2.equalizeHist(img))
        mask = rng.random(shape) < rng.uniform(0.0, 0.2)
        size, iterations = int(rng.integers(1, 6)), int(rng.integers(0, 4))
        ref = cv2.dilate(
            mask.astype(np.uint8), np.ones((size, size), np.uint8), iterations=iterations
        )
        np.testing.assert_array_equal(dilate(mask, size, iterations), ref.astype(bool))
    # the authors' full pipeline (EM: inverse threshold 140, 2x2 dilation x2)
    img = np.clip(rng.normal(120, 40, (64, 80)), 0, 255).astype(np.uint8)
    _, th = cv2.threshold(cv2.equalizeHist(img), 140, 255, cv2.THRESH_BINARY_INV)
    ref = cv2.dilate(th, np.ones((2, 2), np.uint8), iterations=2) > 0
    np.testing.assert_array_equal(PseudoLabeler.for_dataset("EM").transform([img])[0], ref)


# --------------------------------------------------------------------------- real data
@pytest.mark.integration
def test_auto_polarity_on_real_datasets(shared_data):
    from PIL import Image

    expected = {
        "B39_sub_DSB2018_U2OS": "bright",
        "B5_sub_DSB2018_fluo360": "bright",
        "EM": "dark",
        "TNBC_sub_NuInsSeg": "dark",
        "ssTEM": "dark",
    }
    from kwtl.utils import check_images

    checked = 0
    for folder, polarity in expected.items():
        files = sorted((shared_data / folder / "images").glob("*"))[:8]
        images = check_images([np.asarray(Image.open(f)) for f in files]) if files else []
        for f, img in zip(files, images):
            assert estimate_polarity(img) == polarity, f
            checked += 1
    if not checked:
        pytest.skip("no real images found")
