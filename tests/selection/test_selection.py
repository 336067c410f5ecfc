"""Selectors: scores against independent computations, aggregation, and one test class per
public selector built on the shared template (``selector_template.py``)."""

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps
from scipy.special import entr
from selector_template import (
    PATCH,
    STRIDE,
    PixelSelectorTemplate,
    SelectorTemplate,
    _images,
)
from tiny import tiny_segmenter

from kwtl.datasets import PatchSet
from kwtl.selection import (
    ConsistencySelector,
    EntropySelector,
    MCDropoutSelector,
    RandomSelector,
)
from kwtl.utils import derive_seed


def _forward(seg, patches, dropout=None):
    """Plain fp32 forward of the module in eval mode, float64 logits (k, h, w)."""
    module = seg.module_
    x = torch.from_numpy(np.asarray(patches)).float() / 127.5 - 1.0
    module.eval()
    try:
        if dropout is not None:
            module.dropout.p = dropout
            module.dropout.train()
        with torch.no_grad():
            z = module(x[:, None])[:, 0]
    finally:
        module.dropout.p = 0.0
        module.eval()
    return z.double().numpy()


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _bce_with_logits(z, y):
    return np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))


def _binary_entropy(p):
    return entr(p) + entr(1.0 - p)


# ---------------------------------------------------------------------- independent checks
def _manual_consistency(
    seg, patches, magnitude=1.3, names=("autocontrast", "brightness", "sharpness"), threshold=0.5
):
    pil_ops = {
        "autocontrast": lambda im: ImageOps.autocontrast(im),
        "brightness": lambda im: ImageEnhance.Brightness(im).enhance(magnitude),
        "sharpness": lambda im: ImageEnhance.Sharpness(im).enhance(magnitude),
    }
    z_clean = _forward(seg, patches)
    reference = (_sigmoid(z_clean) >= threshold).astype(np.float64)
    total = np.zeros_like(z_clean)
    for name in names:
        augmented = np.stack([np.asarray(pil_ops[name](Image.fromarray(p))) for p in patches])
        total += _bce_with_logits(_forward(seg, augmented), reference)
    return total


def test_consistency_matches_manual_pil_computation(seg, pool):
    patches = pool[np.arange(len(pool))]
    expected = _manual_consistency(seg, patches)
    selector = ConsistencySelector()
    scores = selector.score(pool, seg)
    assert scores.dtype == np.float64 and scores.shape == (len(pool),)
    np.testing.assert_allclose(scores, expected.mean(axis=(1, 2)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(selector.pixel_scores(pool, seg), expected, rtol=1e-4, atol=1e-5)
    assert scores.std() > 0.01  # the calibrated net gives informative scores


def test_consistency_options_match_manual(seg, pool):
    patches = pool[np.arange(10)]
    expected = _manual_consistency(seg, patches, magnitude=1.7, names=("sharpness",), threshold=0.3)
    selector = ConsistencySelector(
        magnitude=1.7, augmentations=["sharpness"], threshold=0.3, reduction="sum"
    )
    np.testing.assert_allclose(selector.score(patches, seg), expected.sum(axis=(1, 2)), rtol=1e-4)


def test_consistency_one_forward_call_per_chunk(seg, pool, monkeypatch):
    calls = []
    original = seg.patch_logits

    def spy(patches, mc_dropout=None):
        calls.append(len(patches))
        return original(patches, mc_dropout=mc_dropout)

    monkeypatch.setattr(seg, "patch_logits", spy)
    ConsistencySelector(batch_size=7).score(pool, seg)
    n_chunks = -(-len(pool) // 7)
    assert len(calls) == n_chunks
    assert max(calls) == 4 * 7  # clean + 3 augmented copies, never the whole pool


def test_entropy_matches_numpy(seg, pool):
    patches = pool[np.arange(len(pool))]
    expected = _binary_entropy(_sigmoid(_forward(seg, patches)))
    selector = EntropySelector()
    np.testing.assert_allclose(
        selector.score(pool, seg), expected.mean(axis=(1, 2)), rtol=1e-4, atol=1e-7
    )
    np.testing.assert_allclose(selector.pixel_scores(pool, seg), expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        EntropySelector(reduction="max").score(pool, seg),
        expected.max(axis=(1, 2)),
        rtol=1e-4,
        atol=1e-7,
    )


def test_entropy_is_stable_for_saturated_logits():
    seg = tiny_segmenter(
        module__init="paper", patch_size=PATCH, stride=STRIDE, random_state=0
    ).initialize()  # uncalibrated: logits ~ 1e5
    scores = EntropySelector().score(_images(), seg)
    assert np.isfinite(scores).all() and (scores >= 0).all()


def test_mc_dropout_matches_manual_loop(seg, pool):
    patches = pool[np.arange(len(pool))]
    n_passes, p, chunk = 4, 0.5, seg.inference_batch_size
    selector = MCDropoutSelector(n_passes=n_passes, p=p, random_state=3)
    scores = selector.score(pool, seg)
    expected = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(3, "mc-dropout"))
        for start in range(0, len(patches), chunk):
            batch = patches[start : start + chunk]
            mean = np.mean(
                [_sigmoid(_forward(seg, batch, dropout=p)) for _ in range(n_passes)], axis=0
            )
            expected.append(_binary_entropy(mean).mean(axis=(1, 2)))
    np.testing.assert_allclose(scores, np.concatenate(expected), rtol=1e-4, atol=1e-6)
    # dropout really acts: the MC entropy differs from the deterministic entropy
    assert not np.allclose(scores, EntropySelector().score(pool, seg), rtol=1e-3)


def test_mc_dropout_seeding(seg, pool):
    state = torch.random.get_rng_state()
    a = MCDropoutSelector(n_passes=3, random_state=0).score(pool, seg)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    b = MCDropoutSelector(n_passes=3, random_state=0).score(pool, seg)
    c = MCDropoutSelector(n_passes=3, random_state=1).score(pool, seg)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # another chunking gives other, equally distributed draws: reproducible for that chunking,
    # and equal to the first in distribution (compare mean statistics)
    d = MCDropoutSelector(n_passes=3, random_state=0, batch_size=5).score(pool, seg)
    np.testing.assert_array_equal(
        d, MCDropoutSelector(n_passes=3, random_state=0, batch_size=5).score(pool, seg)
    )
    assert not np.array_equal(a, d)
    assert abs(a.mean() - d.mean()) < 0.1 * a.mean()
    # unseeded: draws from (and advances) the global generator
    torch.manual_seed(0)
    e = MCDropoutSelector(n_passes=3).score(pool, seg)
    assert not np.array_equal(e, MCDropoutSelector(n_passes=3).score(pool, seg))


def test_random_is_uniform_without_replacement(pool):
    n = len(pool)
    first = np.zeros(n)
    for seed in range(400):
        picked = RandomSelector(random_state=seed).select(pool, 5, None)
        assert len(set(picked.tolist())) == 5
        first[picked] += 1
    expected = 400 * 5 / n
    assert np.all(np.abs(first - expected) < 6 * np.sqrt(expected))
    everything = RandomSelector(random_state=0).select(pool, n, None)
    np.testing.assert_array_equal(np.sort(everything), np.arange(n))
    assert not np.array_equal(everything, np.arange(n))
    # unseeded draws differ between calls
    assert not np.array_equal(
        RandomSelector().score(pool, None), RandomSelector().score(pool, None)
    )


def test_random_image_unit_gives_images_equal_chances(images):
    # image 0 has 9 patches, the 24x24 flat image only 4: both must be equally likely
    pool = PatchSet.from_images(images, PATCH, STRIDE)
    counts = np.zeros(len(images))
    for seed in range(500):
        counts[RandomSelector(unit="image", random_state=seed).select(pool, 1, None)] += 1
    expected = 500 / len(images)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))


def test_random_never_calls_the_network(images):
    class Exploding:
        patch_size, stride, inference_batch_size = PATCH, STRIDE, 16

        def patch_logits(self, *args, **kwargs):  # pragma: no cover - must not run
            raise AssertionError("RandomSelector ran the network")

    picked = RandomSelector(random_state=0).select(images, 3, Exploding())
    assert picked.shape == (3,)
    with pytest.raises(ValueError, match="estimator"):
        RandomSelector().score(images, None)
    assert not hasattr(RandomSelector(), "pixel_scores")  # it never looks at pixels


# ---------------------------------------------------------------------- image-level units
@pytest.mark.parametrize(
    "make",
    [
        ConsistencySelector,
        EntropySelector,
        lambda **kw: MCDropoutSelector(n_passes=2, random_state=0, **kw),
    ],
)
def test_image_unit_aggregates_patch_scores(make, seg, pool, images):
    owners = pool.coords[:, 0]
    maps = make().pixel_scores(pool, seg)
    patch_mean, patch_sum, patch_max = (
        maps.mean(axis=(1, 2)),
        maps.sum(axis=(1, 2)),
        maps.max(axis=(1, 2)),
    )

    def top_decile(pixels):
        return np.quantile(pixels.reshape(len(pixels), -1), 0.9, axis=1)

    custom = top_decile(maps)
    for reduction, values, agg in [
        ("mean", patch_mean, np.mean),
        ("sum", patch_sum, np.sum),
        ("max", patch_max, np.max),
        (top_decile, custom, np.mean),
    ]:
        got = make(unit="image", reduction=reduction).score(images, seg)
        expected = [agg(values[owners == i]) for i in range(len(images))]
        assert got.shape == (len(images),)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(
            make(reduction=reduction).score(pool, seg), values, rtol=1e-5, atol=1e-6
        )
    picked = make(unit="image").select(images, 2, seg)
    assert set(picked.tolist()) <= set(range(len(images)))


def test_image_unit_image_without_patches_ranks_last(seg, pool):
    subset = pool.subset(pool.coords[:, 0] != 1)  # image 1 keeps no patch
    for selector in (
        EntropySelector(unit="image"),
        RandomSelector(unit="image", random_state=0),
        EntropySelector(unit="image", reduction="max"),
    ):
        scores = selector.score(subset, seg)
        assert scores[1] == -np.inf and np.isfinite(np.delete(scores, 1)).all()
        assert selector.select(subset, len(pool.arrays), seg)[-1] == 1


def test_callable_reduction_shape_is_checked(seg, pool):
    with pytest.raises(ValueError, match="one value per patch"):
        EntropySelector(reduction=lambda maps: maps.mean()).score(pool, seg)


# ---------------------------------------------------------------------- one class per selector
class DenseParamTests:
    """``dense``: whole-image maps equal per-patch scoring when each candidate is its own
    image (same padding, pooling grid and contrast range), and bad values are refused. The
    interior/closeness checks on overlapping candidates are in ``test_dense_scoring.py``."""

    def test_param_dense(self, seg, pool):
        stack = PatchSet.from_stack(pool[np.arange(8)])
        exact = self.make(dense=False, random_state=0).score(stack, seg)
        dense = self.make(dense=True, random_state=0).score(stack, seg)
        assert dense.shape == exact.shape == (8,)
        if not self.make().stochastic:  # MC dropout draws its masks per image vs per chunk
            np.testing.assert_allclose(dense, exact, rtol=1e-5, atol=1e-6)
        for bad in ("yes", 1, None):
            with pytest.raises(
                ValueError, match="'dense' parameter .* must be a bool or one of 'auto'"
            ):
                self.make(dense=bad).score(stack, seg)


class TestConsistencySelector(DenseParamTests, PixelSelectorTemplate):
    selector_class = ConsistencySelector

    def test_param_contrast_groups(self, seg, images):
        # one group per distinct grey range makes dense auto-contrast exact per candidate
        # (checked on patch interiors in test_dense_scoring.py); one group applies a single
        # image-wide stretch, so the scores must change
        pool = PatchSet.from_images(images, seg.patch_size, seg.stride)
        many = self.make(augmentations=["autocontrast"], dense=True, contrast_groups=10_000).score(
            pool, seg
        )
        one = self.make(augmentations=["autocontrast"], dense=True, contrast_groups=1).score(
            pool, seg
        )
        assert not np.allclose(many, one)
        for bad in (0, 2.5, True):
            with pytest.raises(ValueError, match="contrast_groups"):
                self.make(dense=True, contrast_groups=bad).score(pool, seg)

    def test_param_magnitude(self, seg, pool):
        patches = pool[np.arange(10)]
        for magnitude in (1.3, 1.7):
            expected = _manual_consistency(seg, patches, magnitude=magnitude, names=("brightness",))
            got = self.make(magnitude=magnitude, augmentations=["brightness"]).score(patches, seg)
            np.testing.assert_allclose(got, expected.mean(axis=(1, 2)), rtol=1e-4, atol=1e-6)
        for bad in (0, -1.3, float("nan"), True):
            with pytest.raises(ValueError, match="magnitude"):
                self.make(magnitude=bad).score(patches, seg)

    def test_param_augmentations(self, seg, pool):
        patches = pool[np.arange(6)]
        identity = self.make(augmentations=[lambda batch, m: batch.copy()])
        z = _forward(seg, patches)
        expected = _bce_with_logits(z, (_sigmoid(z) >= 0.5).astype(float)).mean(axis=(1, 2))
        np.testing.assert_allclose(identity.score(patches, seg), expected, rtol=1e-4)
        with pytest.raises(ValueError, match="autocontrast.*brightness.*sharpness"):
            self.make(augmentations=("rotate",)).score(patches, seg)
        with pytest.raises(ValueError, match="at least one"):
            self.make(augmentations=()).score(patches, seg)
        with pytest.raises(ValueError, match="uint8 batch"):
            self.make(augmentations=[lambda b, m: b.astype(float)]).score(patches, seg)

    def test_param_threshold(self, seg, pool):
        patches = pool[np.arange(10)]
        expected = _manual_consistency(seg, patches, names=("sharpness",), threshold=0.3)
        got = self.make(augmentations=["sharpness"], threshold=0.3).score(patches, seg)
        np.testing.assert_allclose(got, expected.mean(axis=(1, 2)), rtol=1e-4, atol=1e-6)
        for bad in (0.0, 1.0, "0.5"):
            with pytest.raises(ValueError, match="threshold"):
                self.make(threshold=bad).score(patches, seg)


class TestEntropySelector(DenseParamTests, PixelSelectorTemplate):
    selector_class = EntropySelector


class TestMCDropoutSelector(DenseParamTests, PixelSelectorTemplate):
    selector_class = MCDropoutSelector
    fast_params = {"n_passes": 2}

    def test_param_n_passes(self, seg, pool):
        one = self.make(n_passes=1, random_state=0).score(pool, seg)
        many = self.make(n_passes=8, random_state=0).score(pool, seg)
        assert not np.allclose(one, many)
        for bad in (0, 2.5, True):
            with pytest.raises(ValueError, match="n_passes"):
                self.make(n_passes=bad).score(pool, seg)

    def test_param_p(self, seg, pool):
        low = self.make(p=0.05, n_passes=4, random_state=0).score(pool, seg)
        high = self.make(p=0.9, n_passes=4, random_state=0).score(pool, seg)
        deterministic = EntropySelector().score(pool, seg)
        # stronger dropout moves the scores further from the dropout-free entropy
        assert np.abs(high - deterministic).mean() > np.abs(low - deterministic).mean()
        for bad in (0.0, 1.0):
            with pytest.raises(ValueError, match="'p' parameter"):
                self.make(p=bad).score(pool, seg)


class TestRandomSelector(SelectorTemplate):
    selector_class = RandomSelector

    def test_param_reduction(self, seg, pool):
        # unused (scores never look at pixels) but validated like every selector's
        np.testing.assert_array_equal(
            self.make(reduction="max", random_state=0).score(pool, seg),
            self.make(random_state=0).score(pool, seg),
        )
        with pytest.raises(ValueError, match="reduction"):
            self.make(reduction="median").score(pool, seg)

    def test_param_batch_size(self, seg, pool):
        np.testing.assert_array_equal(
            self.make(batch_size=1, random_state=0).score(pool, seg),
            self.make(random_state=0).score(pool, seg),
        )
        with pytest.raises(ValueError, match="batch_size"):
            self.make(batch_size=0).score(pool, seg)
