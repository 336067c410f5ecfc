"""The bad-input matrix: every public entry point x every category of bad input.

Each case asserts the exception type, that the message names the problem
(``pytest.raises(match=...)``), and that no file was written or changed (each case runs in
an empty working folder that must stay empty). Checks that must happen before any training
replace the training methods by traps that fail the test if they are reached.
"""

import copy
import os

import numpy as np
import pytest
import tiny

from kwtl.datasets import make_cells
from kwtl.metrics import iou_score, mean_iou
from kwtl.pseudo_label import PseudoLabeler
from kwtl.selection import ConsistencySelector, EntropySelector, RandomSelector
from kwtl.utils import InvalidParameterError, check_images, check_masks

S = 32  # image side of the tiny synthetic data


def tiny_segmenter(**kw):
    """The tests' tiny segmenter, narrower and with one step of everything."""
    return tiny.tiny_segmenter(
        **{
            "module__width": 2,
            "meta_iterations": 1,
            "inner_steps": 1,
            "meta_shots": 1,
            "max_epochs": 1,
            "lr": 1e-4,
            "random_state": 0,
            **kw,
        }
    )


def tiny_method(**kw):
    params = dict(segmenter=tiny_segmenter(), selector=EntropySelector(), patches_per_shot=2)
    return tiny.tiny_method(**{**params, **kw})


@pytest.fixture(scope="module")
def data():
    images, masks = make_cells(4, S, random_state=0)
    return images, masks


@pytest.fixture(scope="module")
def fitted(data):
    images, masks = data
    return tiny_segmenter().fit(images, masks)


@pytest.fixture(autouse=True)
def _nothing_written(tmp_path, monkeypatch):
    """Every case runs in an empty folder that must stay empty."""
    monkeypatch.chdir(tmp_path)
    yield
    assert os.listdir(tmp_path) == [], "a bad input wrote files"


def _trap(*args, **kwargs):
    raise AssertionError("training started before the input was checked")


@pytest.fixture
def no_training(monkeypatch):
    """Fail if any optimizer step runs (Reptile, PLFT, fine-tuning): checks come first."""
    import torch

    monkeypatch.setattr(torch.optim.Adam, "step", _trap)


# ----------------------------------------------------------------------------- images
rng = np.random.default_rng(0)
GOOD = rng.integers(0, 256, (S, S), dtype=np.uint8)

BAD_IMAGE_LISTS = {
    "one RGB array": (np.zeros((S, S, 3), np.uint8), ValueError, "wrap it in a list"),
    "one RGBA array": (np.zeros((S, S, 4), np.uint8), ValueError, "wrap it in a list"),
    "one 2-D array": (GOOD, ValueError, "single 2-D array"),
    "NaN": ([np.full((S, S), np.nan)], ValueError, "NaN"),
    "inf": ([np.full((S, S), np.inf)], ValueError, "infinite"),
    "too small": (
        [np.zeros((4, 4), np.uint8)],
        ValueError,
        "at least 8|smaller than the patch size",
    ),
    "ragged nested list": ([[[1, 2, 3], [4, 5]]], ValueError, "ragged"),
    "one image as nested lists": ([[0] * S] * S, ValueError, "nested lists"),
    "string": ("images.tif", TypeError, "list of images"),
    "None": (None, TypeError, "list of images"),
    "empty list": ([], ValueError, "empty"),
    "strings inside": ([np.array([["a", "b"]])], TypeError, "dtype"),
    "1-D image": ([np.zeros(S)], ValueError, "2-D"),
    "empty image": ([np.zeros((0, S))], ValueError, "empty"),
}


def _image_entry_points(fitted, data):
    images, masks = data
    return {
        "check_images": lambda X: check_images(X, min_size=8),
        "PseudoLabeler.fit_transform": lambda X: PseudoLabeler().fit_transform(X),
        "FCRNSegmenter.predict_proba": lambda X: fitted.predict_proba(X),
        "FCRNSegmenter.predict": lambda X: fitted.predict(X),
        "FCRNSegmenter.fit": lambda X: tiny_segmenter().fit(
            X, X if isinstance(X, list) and X and np.ndim(X[0]) == 2 else masks
        ),
        "EntropySelector.score": lambda X: EntropySelector().score(X, fitted),
        "ConsistencySelector.select": lambda X: ConsistencySelector().select(X, 1, fitted),
        "FewShotSegmentation.fit": lambda X: tiny_method(segmenter=fitted).fit(
            X, X if isinstance(X, list) else [np.zeros((S, S), bool)] * 4
        ),
    }


IMAGE_ENTRY_POINTS = [
    "check_images",
    "PseudoLabeler.fit_transform",
    "FCRNSegmenter.predict_proba",
    "FCRNSegmenter.predict",
    "EntropySelector.score",
    "ConsistencySelector.select",
    "FewShotSegmentation.fit",
]


@pytest.mark.parametrize("entry", IMAGE_ENTRY_POINTS)
@pytest.mark.parametrize("case", sorted(BAD_IMAGE_LISTS))
def test_bad_images(entry, case, fitted, data, no_training):
    X, error, match = BAD_IMAGE_LISTS[case]
    if entry == "PseudoLabeler.fit_transform" and case == "too small":
        pytest.skip("pseudo-labels need no network: small images are fine there")
    call = _image_entry_points(fitted, data)[entry]
    with pytest.raises(error, match=match):
        call(X)


def test_bad_images_in_segmenter_fit(data, no_training):
    """``fit`` validates images before its training loop (here: a NaN image)."""
    images, masks = data
    bad = list(images)
    bad[2] = np.where(images[2] > 0, np.nan, 0.0)
    with pytest.raises(ValueError, match=r"X\[2\] contains NaN"):
        tiny_segmenter().fit(bad, masks)


# ----------------------------------------------------------------------------- masks
def _with(masks, k, value):
    out = list(masks)
    out[k] = value
    return out


def _bad_masks(masks):
    m0 = masks[0].astype(np.float64)
    return {
        "probabilities": (
            _with(masks, 1, np.where(masks[1], 0.9, 0.02)),
            ValueError,
            "probability map",
        ),
        "-1 background": (_with(masks, 1, np.where(masks[1], 1, -1)), ValueError, "negative"),
        "255 ignore": (
            _with(
                masks,
                1,
                np.where(masks[1], 1, 0).astype(np.uint8) + np.eye(S, dtype=np.uint8) * 255,
            ),
            ValueError,
            "ignore",
        ),
        "NaN": (_with(masks, 1, np.where(masks[1], np.nan, m0)), ValueError, "NaN"),
        "wrong shape": (_with(masks, 1, np.zeros((S, S + 8), bool)), ValueError, "shape"),
        "one mask fewer": (list(masks)[:-1], ValueError, "3 masks"),
        "ragged": (_with(masks, 1, [[0, 1], [1]]), ValueError, "ragged"),
        "strings": (_with(masks, 1, np.full((S, S), "x")), TypeError, "dtype"),
        "all background": ([np.zeros((S, S), bool)] * len(masks), ValueError, "all background"),
        "all foreground": ([np.ones((S, S), bool)] * len(masks), ValueError, "loss of exactly 0"),
    }


MASK_CASES = sorted(_bad_masks([np.zeros((S, S), bool)] * 4))
MASK_ENTRY_POINTS = [
    "check_masks",
    "FCRNSegmenter.fit",
    "FCRNSegmenter.meta_fit",
    "FewShotSegmentation.fit (sources)",
    "FewShotSegmentation.fit (target)",
    "mean_iou",
]
# where a category is legitimate (a target image without cells; a score on empty images)
LEGITIMATE = {
    ("check_masks", "all background"),
    ("check_masks", "all foreground"),
    ("FewShotSegmentation.fit (target)", "all background"),
    ("FewShotSegmentation.fit (target)", "all foreground"),
    ("mean_iou", "all background"),
    ("mean_iou", "all foreground"),
}


@pytest.mark.parametrize("entry", MASK_ENTRY_POINTS)
@pytest.mark.parametrize("case", MASK_CASES)
def test_bad_masks(entry, case, data, fitted, no_training):
    images, masks = data
    y, error, match = _bad_masks(masks)[case]
    if (entry, case) in LEGITIMATE:
        pytest.skip("legitimate here (see check_masks)")
    domains = np.array([1, 1, -1, -1])
    if entry == "check_masks":
        call = lambda: check_masks(y, check_images(images))
    elif entry == "FCRNSegmenter.fit":
        call = lambda: tiny_segmenter().fit(images, y)
    elif entry == "FCRNSegmenter.meta_fit":
        call = lambda: tiny_segmenter().meta_fit(images, y, [1, 1, 2, 2])
    elif entry == "FewShotSegmentation.fit (sources)":
        # images 0, 1 are the sources, 2, 3 the target
        if case == "one mask fewer":
            y_src = y
        elif case in ("all background", "all foreground"):
            y_src = list(y[:2]) + list(masks[2:])
        else:
            y_src = _swap(y, masks, source=True)
        call = lambda: tiny_method().fit(images, y_src, sample_domain=domains)
    elif entry == "FewShotSegmentation.fit (target)":
        y_tgt = y if case == "one mask fewer" else _swap(y, masks, source=False)
        call = lambda: tiny_method(segmenter=fitted).fit(images, y_tgt, sample_domain=domains)
    else:
        call = lambda: mean_iou(y, list(masks))
        if case == "one mask fewer":
            match = "3 true masks but 4 predicted"
    with pytest.raises(error, match=match):
        call()


def _swap(y, masks, source):
    """Put the bad mask (index 1 of ``y``) on a source (0) or a target (2) image."""
    out = list(masks)
    out[0 if source else 2] = y[1]
    return out


def test_target_mask_of_an_image_never_selected_is_checked_before_training(
    data, fitted, no_training
):
    """The issue's case: a wrong target mask is reported even if never revealed."""
    images, masks = data
    y = list(masks)
    y[3] = np.where(masks[3], 0.8, 0.1)
    with pytest.raises(ValueError, match=r"target masks\[1\] has fractional values"):
        tiny_method(segmenter=fitted).fit(images, y, sample_domain=[1, 1, -1, -1])


def test_probability_masks_with_explicit_threshold(data):
    images, masks = data
    probs = [np.where(m, 0.9, 0.02) for m in masks]
    got = check_masks(probs, check_images(images), threshold=0.5)
    assert all(np.array_equal(a, b) for a, b in zip(got, masks))
    assert iou_score(masks[0], masks[0]) == 1.0


def test_instance_labels_and_ignore_value_are_explicit():
    labels = np.array([[3, 3, 0, 7], [3, 0, 0, 0]])
    assert check_masks([labels], [np.zeros((2, 4), np.uint8)])[0].tolist() == [
        [True, True, False, True],
        [True, False, False, False],
    ]
    # touching instances are not merged: their shared border becomes background
    touching = np.array([[0, 3, 3], [0, 7, 0]])
    assert check_masks([touching], [np.zeros((2, 3), np.uint8)])[0].tolist() == [
        [False, False, False],
        [False, False, False],
    ]
    coded = np.array([[0, 1, 255], [1, 0, 0]], np.uint8)
    with pytest.raises(ValueError, match="ignore_value=255"):
        check_masks([coded], [np.zeros((2, 3), np.uint8)])
    got = check_masks([coded], [np.zeros((2, 3), np.uint8)], ignore_value=255)[0]
    assert got.tolist() == [[False, True, False], [True, False, False]]
    minus = np.array([[-1, 1], [1, -1]])
    assert check_masks([minus], [np.zeros((2, 2), np.uint8)], ignore_value=-1)[0].tolist() == [
        [False, True],
        [True, False],
    ]


def test_support_patches_without_foreground_warn_not_fail(data):
    """A selected support set can legitimately be all background: a warning, not an error."""
    from kwtl.datasets import PatchSet

    images, _ = data
    seg = tiny_segmenter().initialize()
    patches = PatchSet.from_images(images, 16, 16)
    empty = patches.with_arrays([np.zeros((S, S), bool)] * len(images))
    with pytest.warns(UserWarning, match="learns only background"):
        seg.partial_fit(patches, empty, epochs=1)


# ----------------------------------------------------------------------------- parameters
SEGMENTER_PARAMS = [
    ({"max_epochs": -1}, "max_epochs"),
    ({"max_epochs": 2.5}, "max_epochs"),
    ({"patch_size": "16"}, "patch_size"),
    ({"patch_size": 12}, "multiple of 8"),
    ({"patch_size": True}, "patch_size"),
    ({"stride": 0}, "stride"),
    ({"stride": "8"}, "stride"),
    ({"batch_size": 0}, "batch_size"),
    ({"lr": -1.0}, "lr"),
    ({"lr": "fast"}, "lr"),
    ({"threshold": 1.5}, "threshold"),
    ({"bn_mode": "train"}, "bn_mode"),
    ({"precision": "fp16"}, "precision"),
    ({"meta_iterations": -3}, "meta_iterations"),
    ({"micro_batch_size": 0}, "micro_batch_size"),
    ({"random_state": "0"}, "random_state"),
]


@pytest.mark.parametrize(
    "params, match",
    SEGMENTER_PARAMS,
    ids=[next(iter(p)) + "=" + repr(next(iter(p.values()))) for p, _ in SEGMENTER_PARAMS],
)
@pytest.mark.parametrize("method", ["fit", "meta_fit", "predict_proba"])
def test_bad_segmenter_parameters(params, match, method, data, fitted, no_training):
    images, masks = data
    seg = tiny_segmenter(**params)
    if method == "predict_proba":  # a fitted model whose parameter was changed afterwards
        seg = copy.deepcopy(fitted)
        for key, value in params.items():
            setattr(seg, key, value)
    with pytest.raises((InvalidParameterError, ValueError), match=match):
        if method == "fit":
            seg.fit(images, masks)
        elif method == "meta_fit":
            seg.meta_fit(images, masks, [1, 1, 2, 2])
        else:
            seg.predict_proba(images)


FEW_SHOT_PARAMS = [
    ({"selector": "entropy"}, TypeError, "'selector' parameter.*not its name"),
    ({"segmenter": "fcrn"}, TypeError, "'segmenter' parameter.*not its name"),
    ({"pseudo_labeler": "otsu"}, ValueError, "pseudo_labeler"),
    ({"n_shots": 0}, ValueError, "n_shots"),
    ({"n_shots": "1"}, ValueError, "n_shots"),
    ({"patches_per_shot": 0}, ValueError, "patches_per_shot"),
    ({"pl_epochs": -1}, ValueError, "pl_epochs"),
    ({"finetune_epochs": 1.5}, ValueError, "finetune_epochs"),
    ({"min_foreground": -5}, ValueError, "min_foreground"),
    ({"switch_affine": "yes"}, ValueError, "switch_affine"),
    ({"memory": 3}, ValueError, "memory"),
    ({"segmenter": tiny_segmenter(max_epochs=-1)}, ValueError, "max_epochs"),
    ({"segmenter": tiny_segmenter(patch_size="16")}, ValueError, "patch_size"),
    ({"selector": EntropySelector(unit="pixel")}, ValueError, "unit"),
    ({"n_shots": 2, "patches_per_shot": 500}, ValueError, "more shots than candidates.*1000"),
    (
        {"n_shots": 9, "selector": RandomSelector(unit="image")},
        ValueError,
        "more shots than candidates.*2 pool images",
    ),
    ({"min_foreground": 256}, ValueError, "no candidate patch has 256"),
]


@pytest.mark.parametrize(
    "params, error, match", FEW_SHOT_PARAMS, ids=[repr(p)[:40] for p, _, _ in FEW_SHOT_PARAMS]
)
def test_bad_few_shot_parameters_fail_before_training(params, error, match, data, no_training):
    images, masks = data
    method = tiny_method(**params)
    with pytest.raises(error, match=match):
        method.fit(images, masks, sample_domain=[1, 1, -1, -1])


def test_budget_after_the_foreground_filter_fails_before_training(data, no_training):
    from kwtl.datasets import PatchSet
    from kwtl.utils._masks import patch_foreground_counts

    images, masks = data
    kept = int(np.sum(patch_foreground_counts(PatchSet.from_images(masks[2:], 16, 16)) >= 20))
    assert 0 < kept < 8  # the synthetic data has patches on both sides of the filter
    with pytest.raises(
        ValueError, match=f"only {kept} candidate patches after the min_foreground filter"
    ):
        tiny_method(min_foreground=20, patches_per_shot=kept + 1).fit(
            images, masks, sample_domain=[1, 1, -1, -1]
        )
