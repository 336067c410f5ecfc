"""The test template every selector's test class inherits (as scikit-activeml's
``template_query_strategy``): the behaviour every selector promises, run against each one.

A public selector ``MySelector`` gets a class ``TestMySelector(SelectorTemplate)`` (or
``PixelSelectorTemplate`` for pixel-scoring selectors) with ``selector_class = MySelector``
and one ``test_param_<name>`` method per ``__init__`` parameter;
``test_selector_coverage.py`` fails when either is missing.
"""

import copy

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from kwtl.datasets import PatchSet
from kwtl.models import FCRNSegmenter
from kwtl.selection import BaseSelector, PixelSelector

PATCH, STRIDE = 16, 8


def _images():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32), dtype=np.uint8) for _ in range(3)]
    images.append((rng.integers(0, 256, (32, 40)) // 4 + 60).astype(np.uint8))  # low contrast
    images.append(np.full((24, 24), 90, np.uint8))  # flat
    return images


def _calibrated_segmenter(precision="fp32"):
    """Tiny initialised FCRN whose BatchNorm running statistics fit the test images.

    With the paper's N(0, 1) init and untouched running statistics the logits are ~1e5 and
    every probability saturates; one calibration pass (cumulative BN averages) brings the
    logits to a few units, so that the scores vary between patches.
    """
    seg = FCRNSegmenter(
        module__width=4, patch_size=PATCH, stride=STRIDE, precision=precision, random_state=0
    ).initialize()
    pool = PatchSet.from_images(_images(), PATCH, STRIDE)
    x = torch.from_numpy(pool[np.arange(len(pool))]).float().div(127.5).sub(1.0)[:, None]
    module = seg.module_
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    module.train()
    with torch.no_grad():
        module(x)
    module.eval()
    return seg


class SelectorTemplate:
    """Tests every selector must pass. Subclasses set ``selector_class``."""

    selector_class = None
    #: Parameters that keep a test fast (e.g. fewer MC passes); not part of the contract.
    fast_params = {}

    def make(self, **params):
        merged = dict(self.fast_params)
        merged.update(params)
        return self.selector_class(**merged)

    # Declarations are read off an instance: a wrapper (ForegroundGate) declares
    # ``required_methods`` and ``stochastic`` as properties of its inner selector.
    @property
    def uses_network(self):
        return bool(self.make().required_methods)

    @property
    def deterministic_scores(self):
        return not self.make().stochastic

    # ------------------------------------------------------------------ the estimator
    def test_is_an_estimator(self):
        selector = self.make(random_state=7, unit="image")
        assert isinstance(selector, BaseSelector)
        params = selector.get_params()
        assert params["random_state"] == 7 and params["unit"] == "image"
        twin = clone(selector)
        assert twin is not selector and twin.get_params() == params
        assert repr(twin) == repr(selector)
        assert selector.set_params(unit="patch") is selector and selector.unit == "patch"
        assert not hasattr(selector, "scores_")
        bad = self.make(unit="pixel")  # __init__ validates nothing; use does
        assert bad.unit == "pixel"

    # ------------------------------------------------------------------ choosing
    def test_select_sets_scores_and_orders(self, seg, pool):
        selector = self.make(random_state=0)
        picked = selector.select(pool, 5, seg)
        assert picked.dtype == np.intp and picked.shape == (5,)
        scores = selector.scores_
        assert scores.shape == (len(pool),) and scores.dtype == np.float64
        np.testing.assert_array_equal(scores, self.make(random_state=0).score(pool, seg))
        assert np.all(np.diff(scores[picked]) <= 0)
        assert scores[picked[-1]] >= np.delete(scores, picked).max()

    def test_n_equal_to_pool_is_a_permutation(self, seg, pool):
        picked = self.make(random_state=0).select(pool, len(pool), seg)
        np.testing.assert_array_equal(np.sort(picked), np.arange(len(pool)))

    def test_bad_n(self, seg, pool):
        selector = self.make(random_state=0)
        with pytest.raises(ValueError, match=rf"more shots than candidates.*{len(pool)} candidate"):
            selector.select(pool, len(pool) + 1, seg)
        with pytest.raises(ValueError, match=r"only 5 candidate images"):
            self.make(unit="image", random_state=0).select(pool, 6, seg)
        for n in (0, -2, 1.5, "3", True, None):
            with pytest.raises(ValueError, match="positive integer"):
                selector.select(pool, n, seg)

    def test_empty_pool(self, seg):
        selector = self.make(random_state=0)
        with pytest.raises(ValueError, match="empty"):
            selector.select(np.empty((0, PATCH, PATCH), np.uint8), 1, seg)
        with pytest.raises(ValueError, match="empty"):
            selector.score(PatchSet([np.zeros((32, 32), np.uint8)], np.empty((0, 3)), PATCH), seg)
        with pytest.raises(ValueError, match="empty"):
            selector.score([], seg)

    def test_single_rgb_image_is_refused(self, seg):
        with pytest.raises(ValueError, match="wrap it in a list"):  # one RGB image, not H images
            self.make().score(np.zeros((2 * PATCH, 2 * PATCH, 3), np.uint8), seg)

    def test_stack_is_images_cut_into_patches(self, seg, images):
        """An (n, H, W) stack means n images everywhere in kwtl: cut into the grid, any dtype."""
        same = [im for im in images if im.shape == images[0].shape]
        stack = np.stack(same)
        expected = self.make(random_state=0).score(same, seg)
        got = self.make(random_state=0).score(stack, seg)
        assert len(got) > len(stack)  # patches, not whole images
        np.testing.assert_array_equal(got, expected)
        as_float = self.make(random_state=0).score(stack.astype(np.float32), seg)
        np.testing.assert_array_equal(as_float, expected)  # 8-bit values in float: same picture

    def test_unfitted_estimator(self, pool):
        unfitted = FCRNSegmenter(module__width=4, patch_size=PATCH, stride=STRIDE, precision="fp32")
        selector = self.make(random_state=0)
        if not self.uses_network:
            assert selector.select(pool, 2, unfitted).shape == (2,)
        else:
            with pytest.raises(NotFittedError):
                selector.select(pool, 2, unfitted)

    def test_model_without_required_methods_is_refused(self, pool):
        if not self.uses_network:
            pytest.skip("calls no model method")

        class NoMethods:
            patch_size, stride, inference_batch_size = PATCH, STRIDE, 16

        with pytest.raises(TypeError, match=self.make().required_methods[0]):
            self.make(random_state=0).score(pool, NoMethods())

    def test_reproducible(self, seg, pool):
        a = self.make(random_state=42).select(pool, 8, seg)
        b = clone(self.make(random_state=42)).select(pool, 8, seg)
        np.testing.assert_array_equal(a, b)

    def test_inputs_agree(self, seg, pool, images):
        """Images, the equivalent PatchSet and the stacked patches give the same scores."""
        stack = PatchSet.from_stack(pool[np.arange(len(pool))])
        from_pool = self.make(random_state=0).score(pool, seg)
        np.testing.assert_array_equal(self.make(random_state=0).score(images, seg), from_pool)
        np.testing.assert_array_equal(self.make(random_state=0).score(stack, seg), from_pool)

    def test_select_support_budget_and_cache(self, seg, pool, tmp_path):
        import joblib

        memory = joblib.Memory(tmp_path, verbose=0)
        selector = self.make(random_state=0)
        support = selector.select_support(pool, seg, n_shots=2, patches_per_shot=3, memory=memory)
        np.testing.assert_array_equal(support.indices, selector.select(pool, 6, seg))
        np.testing.assert_array_equal(support.coords, pool.coords[support.indices])
        np.testing.assert_array_equal(support.patches.coords, pool.coords[support.indices])
        np.testing.assert_array_equal(support.scores, selector.scores_[support.indices])
        cached = len(list(tmp_path.rglob("kwtl_scores/*.npy")))
        # a separable selector's scores are cached image by image, others' in one entry
        entries = len(np.unique(pool.coords[:, 0])) if selector.separable else 1
        assert cached == (entries if selector.deterministic else 0)
        again = self.make(random_state=0).select_support(pool, seg, 3, 3, memory=memory)
        np.testing.assert_array_equal(again.indices[:6], support.indices)  # same scores
        assert len(list(tmp_path.rglob("kwtl_scores/*.npy"))) == cached  # no second scoring pass

    # ------------------------------------------------------------------ common parameters
    def test_param_unit(self, seg, pool, images):
        scores = self.make(unit="image", random_state=0).score(images, seg)
        assert scores.shape == (len(images),)
        support = self.make(unit="image", random_state=0).select_support(pool, seg, n_shots=2)
        assert len(support.indices) == 2  # a shot is one image
        expected = np.flatnonzero(np.isin(pool.coords[:, 0], support.indices))
        np.testing.assert_array_equal(support.patches.coords, pool.coords[expected])
        with pytest.raises(ValueError, match="unit"):
            self.make(unit="pixel").score(pool, seg)

    def test_param_random_state(self, seg, pool):
        a = self.make(random_state=0).score(pool, seg)
        b = self.make(random_state=1).score(pool, seg)
        if self.deterministic_scores:
            np.testing.assert_array_equal(a, b)  # the seed does not matter
            assert self.make().deterministic
        else:
            assert not np.array_equal(a, b)
            assert self.make(random_state=0).deterministic and not self.make().deterministic


class PixelSelectorTemplate(SelectorTemplate):
    """Tests every pixel-scoring selector must pass, in addition to the template's."""

    def test_is_a_pixel_selector(self):
        assert isinstance(self.make(), PixelSelector)
        assert "patch_logits" in self.selector_class.required_methods

    def test_param_batch_size(self, seg, pool):
        class CountingPatchSet(PatchSet):
            largest = 0

            def __getitem__(self, index):
                out = super().__getitem__(index)
                if out.ndim == 3:
                    CountingPatchSet.largest = max(CountingPatchSet.largest, len(out))
                return out

        counting = CountingPatchSet(pool.arrays, pool.coords, pool.patch_size)
        scores = self.make(batch_size=4, random_state=0).score(counting, seg)
        assert CountingPatchSet.largest == 4 and scores.shape == (len(pool),)
        if self.deterministic_scores:
            reference = self.make().score(pool, seg)
            for batch_size in (1, 5, 1000):
                np.testing.assert_allclose(
                    self.make(batch_size=batch_size).score(pool, seg),
                    reference,
                    rtol=1e-5,
                    atol=1e-7,
                )
        with pytest.raises(ValueError, match="batch_size"):
            self.make(batch_size=0).score(pool, seg)

    def test_param_reduction(self, seg, pool):
        maps = self.make(random_state=0).pixel_scores(pool, seg)
        for reduction, expected in (
            ("sum", maps.sum(axis=(1, 2))),
            ("max", maps.max(axis=(1, 2))),
            (lambda m: m.min(axis=(1, 2)), maps.min(axis=(1, 2))),
        ):
            np.testing.assert_allclose(
                self.make(reduction=reduction, random_state=0).score(pool, seg),
                expected,
                rtol=1e-4,
                atol=1e-6,
            )
        with pytest.raises(ValueError, match="reduction"):
            self.make(reduction="median").score(pool, seg)

    def test_ties_break_by_lower_index(self, seg, pool):
        constant = self.make(reduction=lambda maps: np.zeros(len(maps)), random_state=0)
        np.testing.assert_array_equal(constant.select(pool, 6, seg), np.arange(6))

    def test_identical_patches_tie(self, seg, pool):
        if not self.deterministic_scores:
            pytest.skip("random scores")
        stack = np.repeat(pool[np.arange(1)], 6, axis=0)
        stack[3] = pool[10]
        selector = self.make()
        scores = selector.score(stack, seg)
        assert len(np.unique(np.delete(scores, 3))) == 1
        picked = selector.select(stack, 6, seg)
        rest = [i for i in range(6) if i != 3]
        expected = [3] + rest if scores[3] > scores[0] else rest + [3]
        np.testing.assert_array_equal(picked, expected)

    def test_pixel_scores_reduce_to_scores(self, seg, pool):
        selector = self.make(random_state=0)
        maps = selector.pixel_scores(pool, seg)
        assert maps.dtype == np.float32 and maps.shape == (len(pool), PATCH, PATCH)
        np.testing.assert_allclose(
            maps.mean(axis=(1, 2)), selector.score(pool, seg), rtol=1e-5, atol=1e-7
        )
        if self.deterministic_scores:
            np.testing.assert_allclose(
                selector.pixel_scores(pool, seg, indices=[7, 2]), maps[[7, 2]], rtol=1e-5, atol=1e-6
            )
        with pytest.raises(ValueError, match="out of range"):
            selector.pixel_scores(pool, seg, indices=[len(pool)])

    @pytest.mark.skipif(
        not torch.ops.mkldnn._is_mkldnn_bf16_supported(),
        reason="no native bf16 support on this CPU",
    )
    def test_bf16_scores_rank_like_fp32(self, seg, pool):
        seg16 = copy.deepcopy(seg)
        seg16.precision = "bf16"
        fp32 = self.make(random_state=0).score(pool, seg)
        bf16 = self.make(random_state=0).score(pool, seg16)
        assert spearmanr(fp32, bf16)[0] > 0.9
