"""SpreadSelector, ObjectRichnessSelector and dense encoder features, on the selector template.

Expected values come from independent computations: the model's forward pass thresholded by
hand, connected components counted with scikit-image, encoder maps averaged with loops.
"""

import numpy as np
import pytest
import torch
from skimage.measure import label, regionprops

from kwtl.datasets import PatchSet
from kwtl.selection import EntropySelector, ObjectRichnessSelector, RandomSelector, SpreadSelector
from kwtl.selection._representative import dense_encoder_features
from kwtl.selection._richness import boundary_map, object_centre_map
from selector_template import PixelSelectorTemplate, SelectorTemplate


def _masks(seg, pool, threshold=0.5):
    module = seg.module_
    module.eval()
    x = torch.from_numpy(pool[np.arange(len(pool))]).float().div(127.5).sub(1.0)[:, None]
    with torch.no_grad():
        return (torch.sigmoid(module(x))[:, 0] >= threshold).numpy()


def _boundary_by_loops(mask):
    h, w = mask.shape
    out = np.zeros((h, w))
    for r in range(h):
        for c in range(w):
            if not mask[r, c]:
                continue
            for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                rr, cc = min(max(r + dr, 0), h - 1), min(max(c + dc, 0), w - 1)
                if not mask[rr, cc]:
                    out[r, c] = 1
    return out


# ===================================================================== spread
class TestSpreadSelector(SelectorTemplate):
    selector_class = SpreadSelector

    def test_param_selector(self, seg, pool):
        inner = EntropySelector().score(pool, seg)
        sel = self.make(selector=EntropySelector())
        scores = sel.score(pool, seg)
        np.testing.assert_allclose(sel.inner_scores_, inner, rtol=1e-6)
        owners = pool.coords[:, 0]
        order = np.argsort(-scores, kind="stable")
        n_images = len(np.unique(owners))
        # first: each image's best candidate, in the order of the inner scores
        first = order[:n_images]
        assert sorted(owners[first].tolist()) == sorted(np.unique(owners).tolist())
        for i in np.unique(owners):
            mine = np.flatnonzero(owners == i)
            assert first[owners[first] == i][0] == mine[np.argmax(inner[mine])]
        assert np.all(np.diff(inner[first]) <= 1e-12)
        with pytest.raises(ValueError, match="selector"):
            self.make(selector="entropy").score(pool, seg)

    def test_param_max_per_image(self, seg, pool):
        owners = pool.coords[:, 0]
        for cap in (1, 2):
            order = self.make(max_per_image=cap, random_state=0).rank(
                self.make(max_per_image=cap, random_state=0).score(pool, seg), len(pool)
            )
            counts = np.bincount(owners, minlength=owners.max() + 1)
            n_first = int(np.minimum(counts, cap).sum())
            head = np.bincount(owners[order[:n_first]], minlength=len(counts))
            np.testing.assert_array_equal(head, np.minimum(counts, cap))
        with pytest.raises(ValueError, match="max_per_image"):
            self.make(max_per_image=0).score(pool, seg)

    def test_inputs_agree(self, seg, pool, images):
        """Images and their PatchSet agree; a stack makes every patch its own image, so the
        spread order is the inner order (the template's stack check does not apply)."""
        from_pool = self.make(random_state=0).score(pool, seg)
        np.testing.assert_array_equal(self.make(random_state=0).score(images, seg), from_pool)
        stack = PatchSet.from_stack(pool[np.arange(len(pool))])
        sel = self.make(random_state=0)
        scores = sel.score(stack, seg)
        np.testing.assert_array_equal(
            np.argsort(-scores, kind="stable"), np.argsort(-sel.inner_scores_, kind="stable")
        )

    def test_default_inner_is_seeded_random(self, seg, pool):
        sel = self.make(random_state=4)
        sel.score(pool, seg)
        inner = RandomSelector(random_state=sel._inner().random_state).score(pool, seg)
        np.testing.assert_array_equal(sel.inner_scores_, inner)
        assert sel.stochastic and not self.make(selector=EntropySelector()).stochastic

    def test_exclude_spreads_the_allowed_candidates_again(self):
        """Worked by hand: inner scores 9, 1 (image 0), 8, 7 (image 1), 6, 5 (image 2).
        Spread order 0, 2, 4, 3, 5, 1; with candidate 0 excluded (drawn in round 1) image 0
        keeps a first-pass place with its other candidate: 2, 4, 1 — not 2, 4, 3, which
        would skip image 0 and take image 1 twice."""
        images = [np.zeros((16, 32), np.uint8)] * 3
        pool = PatchSet.from_images(images, 16, 16)
        np.testing.assert_array_equal(pool.coords[:, 0], [0, 0, 1, 1, 2, 2])
        sel = self.make()
        scores = sel.scores_from([9, 1, 8, 7, 6, 5], pool.coords[:, 0])
        np.testing.assert_array_equal(np.floor(scores), [6, 1, 5, 3, 4, 2])  # n - position
        np.testing.assert_array_equal(sel.choose(scores, 3, pool), [0, 2, 4])
        exclude = np.array([True, False, False, False, False, False])
        np.testing.assert_array_equal(sel.choose(scores, 3, pool, exclude=exclude), [2, 4, 1])
        np.testing.assert_array_equal(
            sel.choose(scores, 5, pool, non_overlapping=True, exclude=exclude), [2, 4, 1, 3, 5]
        )
        with pytest.raises(ValueError, match="needs the pool"):
            sel.choose(scores, 3, exclude=exclude)
        by_image = self.make(unit="image").scores_from([3.0, 1.0, 2.0], [0, 1, 2])
        np.testing.assert_array_equal(
            self.make(unit="image").choose(by_image, 2, exclude=[True, False, False]), [2, 1]
        )


# ===================================================================== object richness
class TestObjectRichnessSelector(PixelSelectorTemplate):
    selector_class = ObjectRichnessSelector

    def test_boundary_map_by_loops(self):
        m = np.random.default_rng(0).random((9, 11)) > 0.5
        np.testing.assert_array_equal(boundary_map(m), _boundary_by_loops(m))

    def test_object_centres_by_scikit_image(self):
        m = np.random.default_rng(1).random((20, 20)) > 0.6
        got = {tuple(p) for p in np.argwhere(object_centre_map(m, min_size=3))}
        want = {
            tuple(int(v) for v in np.rint(r.centroid))
            for r in regionprops(label(m, connectivity=2))
            if r.area >= 3
        }
        assert got == want

    def test_param_measure(self, seg, pool):
        masks = _masks(seg, pool)
        boundary = self.make(measure="boundary").score(pool, seg)
        np.testing.assert_allclose(boundary, [_boundary_by_loops(m).mean() for m in masks])
        objects = self.make(measure="objects", min_size=1).score(pool, seg)
        counts = [label(m, connectivity=2).max() / m.size for m in masks]
        np.testing.assert_allclose(objects, counts)
        with pytest.raises(ValueError, match="measure"):
            self.make(measure="area").score(pool, seg)

    def test_param_proba_threshold(self, seg, pool):
        for t in (0.3, 0.7):
            masks = _masks(seg, pool, t)
            np.testing.assert_allclose(
                self.make(proba_threshold=t).score(pool, seg),
                [_boundary_by_loops(m).mean() for m in masks],
            )
        with pytest.raises(ValueError, match="proba_threshold"):
            self.make(proba_threshold=1.0).score(pool, seg)

    def test_param_min_size(self, seg, pool):
        masks = _masks(seg, pool)
        for size in (1, 20):
            want = [
                sum(r.area >= size for r in regionprops(label(m, connectivity=2))) / m.size
                for m in masks
            ]
            np.testing.assert_allclose(
                self.make(measure="objects", min_size=size).score(pool, seg), want
            )
        with pytest.raises(ValueError, match="min_size"):
            self.make(min_size=0).score(pool, seg)

    def test_param_dense(self, seg, images):
        pool = PatchSet.from_images(images[:3], 16, 8)
        dense = self.make(dense=True).score(pool, seg)
        maps = {
            i: boundary_map(torch.sigmoid(seg.image_logits(images[i][None])[0]).numpy() >= 0.5)
            for i in range(3)
        }
        want = [maps[i][r : r + 16, c : c + 16].mean() for i, r, c in pool.coords]
        np.testing.assert_allclose(dense, want, atol=1e-12)
        with pytest.raises(ValueError, match="dense"):
            self.make(dense="yes").score(pool, seg)


# ===================================================================== dense features
def test_dense_encoder_features_average_the_bottleneck_map(seg, images):
    from kwtl.models._features import image_encoder_maps

    pool = PatchSet.from_images(images[:2], 16, 8)
    got = dense_encoder_features(pool, seg)
    for k, (i, r, c) in enumerate(pool.coords):
        maps = image_encoder_maps(seg, images[i])
        r0, c0 = int(np.rint(r / 8)), int(np.rint(c / 8))
        want = maps[:, r0 : r0 + 2, c0 : c0 + 2].mean(axis=(1, 2))
        np.testing.assert_allclose(got[k], want, rtol=1e-5, atol=1e-6)
