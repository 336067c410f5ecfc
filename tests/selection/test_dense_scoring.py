"""Dense scoring (whole-image maps + box sums) against exact per-patch scoring."""

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from tiny import tiny_segmenter

from kwtl.datasets import PatchSet, make_cells
from kwtl.models import FCRN
from kwtl.models._inference import forward_patches, forward_tiled
from kwtl.selection import ConsistencySelector, EntropySelector, MCDropoutSelector
from kwtl.selection._augment import autocontrast, autocontrast_lut
from kwtl.selection._dense import box_reduce
from kwtl.selection._pixel import aggregate_images

PATCH = 64


@pytest.fixture(scope="module")
def trained():
    images, masks = make_cells(n_images=2, image_size=(128, 160), random_state=0)
    seg = tiny_segmenter(
        module__init="paper", lr=1e-4, patch_size=PATCH, stride=8, max_epochs=3, random_state=0
    ).fit(images, masks)
    return list(images), seg


# ------------------------------------------------------------------ box reductions
@pytest.mark.parametrize("size", [(3, 5), (4, 4), (1, 1), (6, 2)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "max"])
def test_box_reduce_matches_brute_force(size, reduction):
    rng = np.random.default_rng(1)
    m = rng.normal(size=(13, 17)).astype(np.float32)
    h, w = size
    corners = np.array([(r, c) for r in range(0, 13 - h + 1, 2) for c in range(0, 17 - w + 1, 3)])
    ref = {"mean": np.mean, "sum": np.sum, "max": np.max}[reduction]
    expected = [ref(m[r : r + h, c : c + w].astype(np.float64)) for r, c in corners]
    np.testing.assert_allclose(
        box_reduce(m, corners, size, reduction), expected, rtol=1e-6, atol=1e-9
    )


def test_box_reduce_callable_gets_the_windows():
    m = np.arange(30, dtype=np.float32).reshape(5, 6)
    corners = np.array([[0, 0], [2, 3], [1, 1]])
    got = box_reduce(m, corners, (3, 3), lambda w: w[:, 1, 2] - w[:, 0, 0])
    assert got.tolist() == [8.0, 8.0, 8.0]  # one row down (6) and two columns right (2)
    first = box_reduce(m, corners, (3, 3), lambda w: w[:, 0, 0])
    assert first.tolist() == [0.0, 15.0, 7.0]
    with pytest.raises(ValueError, match="one value per patch"):
        box_reduce(m, corners, (3, 3), lambda w: w.sum())


def test_aggregate_images_by_hand():
    values = np.array([1.0, 3.0, 2.0, 10.0])
    owners = np.array([0, 0, 2, 2])
    assert aggregate_images(values, owners, 3, "mean").tolist() == [2.0, -np.inf, 6.0]
    assert aggregate_images(values, owners, 3, "sum").tolist() == [4.0, -np.inf, 12.0]
    assert aggregate_images(values, owners, 3, "max").tolist() == [3.0, -np.inf, 10.0]


def test_autocontrast_lut_reproduces_autocontrast():
    rng = np.random.default_rng(0)
    batch = rng.integers(20, 200, size=(5, 8, 8), dtype=np.uint8)
    batch[4] = 77  # constant patch: identity
    lut = autocontrast_lut(batch.min(axis=(1, 2)), batch.max(axis=(1, 2)))
    expected = autocontrast(batch)
    for k in range(len(batch)):
        assert np.array_equal(lut[k][batch[k]], expected[k])


# ------------------------------------------------------------------ tiling
def test_forward_tiled_equals_one_whole_image_pass():
    torch.manual_seed(0)
    net = FCRN(width=4).eval()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2, 100, 90), dtype=np.uint8)
    padded = np.pad(images, ((0, 0), (0, 4), (0, 6)), mode="reflect")
    whole = forward_patches(net, padded)[:, :100, :90]
    tiled = forward_tiled(forward_patches, net, images, tile_size=16, margin=32)
    torch.testing.assert_close(tiled, whole, rtol=1e-4, atol=1e-4)
    # the margin matters: without it the tiles see zero padding at their borders
    cut = forward_tiled(forward_patches, net, images, tile_size=16, margin=0)
    assert (cut - whole).abs().max() > 1e-2


# ------------------------------------------------------------------ dense vs exact
def _interior_check(selector, images, seg):
    """Dense map windows equal the exact per-patch maps away from the patch border for
    patches whose offsets lie on the max-pool grid (multiples of 8)."""
    pool = PatchSet.from_images(images, PATCH, 8)
    margin = 24  # FCRN's receptive-field radius is 23
    checked = 0
    for i, image in enumerate(images):
        which = np.flatnonzero(pool.coords[:, 0] == i)
        corners = pool.coords[which, 1:]
        exact = selector.pixel_scores(pool, seg, indices=which)
        for pixel_map, part in selector._dense_maps(image, corners, pool.patch_size, seg):
            pixel_map = pixel_map.detach().cpu().numpy()
            for j in np.arange(len(corners))[part]:
                r, c = corners[j]
                window = pixel_map[r : r + PATCH, c : c + PATCH]
                inner = (slice(margin, PATCH - margin),) * 2
                np.testing.assert_allclose(window[inner], exact[j][inner], rtol=1e-4, atol=1e-4)
                checked += 1
    assert checked == len(pool)


def test_entropy_dense_map_is_exact_inside_patches_on_the_pool_grid(trained):
    images, seg = trained
    _interior_check(EntropySelector(dense=True), images, seg)


@pytest.mark.parametrize(
    "augmentations",
    [("brightness",), ("brightness", "sharpness"), ("autocontrast", "brightness", "sharpness")],
)
def test_consistency_dense_map_is_exact_inside_patches(trained, augmentations):
    images, seg = trained
    # enough groups for every distinct grey range: auto-contrast is exact per candidate
    selector = ConsistencySelector(augmentations=augmentations, dense=True, contrast_groups=10_000)
    _interior_check(selector, images, seg)


@pytest.mark.parametrize("selector", [EntropySelector, ConsistencySelector])
def test_dense_on_a_patch_stack_equals_exact(trained, selector):
    # each patch is its own image: same padding, same pooling grid, same auto-contrast range,
    # same unsmoothed border — dense must reproduce exact scoring
    images, seg = trained
    stack = PatchSet.from_images(images, PATCH, 24)[np.arange(12)]
    exact = selector(dense=False).score(stack, seg)
    dense = selector(dense=True).score(stack, seg)
    np.testing.assert_allclose(dense, exact, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "max"])
@pytest.mark.parametrize("selector", [EntropySelector, ConsistencySelector])
def test_dense_scores_are_close_to_exact_elsewhere(trained, selector, reduction):
    images, seg = trained
    exact = selector(reduction=reduction).score(images, seg)
    dense = selector(reduction=reduction, dense=True).score(images, seg)
    assert exact.shape == dense.shape == (len(PatchSet.from_images(images, PATCH, 8)),)
    if reduction != "max":  # patch maxima of the entropy all lie near log 2: ranks are ties
        assert spearmanr(exact, dense)[0] > 0.8
    # a patch's maximum often sits on its border, where patch and image context differ most
    tolerance = 0.25 if reduction == "max" else 0.1
    assert np.median(np.abs(dense - exact) / np.abs(exact)) < tolerance


def test_dense_reduction_reads_the_dense_map(trained):
    # mean/sum/max/callable scores are those of the windows of one and the same map
    images, seg = trained
    pool = PatchSet.from_images(images, PATCH, 8)
    selector = EntropySelector(dense=True)
    maps = [
        next(selector._dense_maps(im, None, pool.patch_size, seg))[0].cpu().numpy() for im in images
    ]
    windows = np.stack([maps[i][r : r + PATCH, c : c + PATCH] for i, r, c in pool.coords])
    q90 = EntropySelector(dense=True, reduction=lambda w: np.quantile(w, 0.9, axis=(1, 2)))
    np.testing.assert_allclose(
        q90.score(images, seg), np.quantile(windows, 0.9, axis=(1, 2)), rtol=1e-6
    )
    for reduction, f in [("mean", np.mean), ("sum", np.sum), ("max", np.max)]:
        got = EntropySelector(dense=True, reduction=reduction).score(images, seg)
        np.testing.assert_allclose(got, f(windows.astype(np.float64), axis=(1, 2)), rtol=1e-5)
    by_image = EntropySelector(dense=True, unit="image").score(images, seg)
    means = windows.mean(axis=(1, 2))
    expected = [means[pool.coords[:, 0] == i].mean() for i in range(len(images))]
    np.testing.assert_allclose(by_image, expected, rtol=1e-5)


def test_mc_dropout_dense_is_reproducible_and_close_to_its_mean(trained):
    images, seg = trained
    a = MCDropoutSelector(n_passes=4, dense=True, random_state=0).score(images, seg)
    b = MCDropoutSelector(n_passes=4, dense=True, random_state=0).score(images, seg)
    assert np.array_equal(a, b)
    c = MCDropoutSelector(n_passes=4, dense=True, random_state=1).score(images, seg)
    assert not np.array_equal(a, c)
    assert np.all(np.isfinite(a)) and np.all(a >= 0) and np.all(a <= np.log(2) + 1e-6)


def test_dense_auto_follows_candidate_overlap(trained):
    images, seg = trained
    overlapping = PatchSet.from_images(images, PATCH, 8)
    disjoint = PatchSet.from_images(images, PATCH, PATCH)
    selector = EntropySelector(dense="auto")
    assert selector._use_dense(overlapping)
    assert not selector._use_dense(disjoint)
    np.testing.assert_array_equal(
        selector.score(disjoint, seg), EntropySelector(dense=False).score(disjoint, seg)
    )


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_dense_rejects_bad_values(trained, bad):
    images, seg = trained
    with pytest.raises(ValueError, match="'dense' parameter .* must be a bool or one of 'auto'"):
        EntropySelector(dense=bad).score(images, seg)


@pytest.mark.parametrize("bad", [0, 2.5, True])
def test_contrast_groups_rejects_bad_values(trained, bad):
    images, seg = trained
    with pytest.raises(ValueError, match="contrast_groups"):
        ConsistencySelector(dense=True, contrast_groups=bad).score(images, seg)


def test_image_logits_checks_input(trained):
    _, seg = trained
    with pytest.raises(ValueError, match="uint8 array"):
        seg.image_logits(np.zeros((8, 8), np.uint8))
    out = seg.image_logits(np.zeros((2, 21, 35), np.uint8))  # any size: padded inside
    assert tuple(out.shape) == (2, 21, 35)


def test_identity_contrast_tables_cost_no_forward_pass(trained, monkeypatch):
    # every candidate spans the full grey range: auto-contrast is the identity, so dense
    # scoring reuses the clean logits (3 copies: clean, brightness, sharpness) and still
    # equals exact scoring on a stack of patches
    images, seg = trained
    stack = np.array(PatchSet.from_images(images, PATCH, 24)[np.arange(6)])
    stack[:, 0, 0], stack[:, -1, -1] = 0, 255
    sizes = []
    real = type(seg).image_logits

    def counting(self, copies, mc_dropout=None):
        sizes.append(len(copies))
        return real(self, copies, mc_dropout)

    monkeypatch.setattr(type(seg), "image_logits", counting)
    exact = ConsistencySelector(dense=False).score(list(stack), seg)
    dense = ConsistencySelector(dense=True).score(list(stack), seg)
    assert sizes == [3] * len(stack)
    np.testing.assert_allclose(dense, exact, rtol=1e-5, atol=1e-6)
