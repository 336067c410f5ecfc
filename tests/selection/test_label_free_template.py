"""The label-free selectors on the selector test template, one test per parameter.

Every expected value is computed independently of the selector under test: from the model's
forward pass, from another selector's scores, or by hand on the score vectors.
"""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.model_selection import ParameterGrid

from kwtl.datasets import PatchSet
from kwtl.selection import (
    ConsistencySelector,
    EntropySelector,
    ForegroundGate,
    PredictedForegroundSelector,
    RandomSelector,
    RepresentativeSelector,
    StratifiedSelector,
)
from kwtl.selection._representative import typicality
from selector_template import PixelSelectorTemplate, SelectorTemplate


def _proba(seg, pool):
    """Foreground probabilities of every patch of ``pool``, from the module directly."""
    module = seg.module_
    module.eval()
    x = torch.from_numpy(pool[np.arange(len(pool))]).float().div(127.5).sub(1.0)[:, None]
    with torch.no_grad():
        return torch.sigmoid(module(x))[:, 0].numpy()


def _image_means(values, owners, n_images):
    return np.bincount(owners, weights=values, minlength=n_images) / np.bincount(
        owners, minlength=n_images
    )


def _check_foreground_params(make, seg, pool):
    """A wrapper's foreground measure is PredictedForegroundSelector's, with its params."""
    for params in (
        {"measure": "mean_proba"},
        {"proba_threshold": 0.3},
        {"proba_threshold": 0.7},
        {"dense": True},
    ):
        wrapper = make(random_state=0, **params)
        wrapper.score(pool, seg)
        expected = PredictedForegroundSelector(**params).score(pool, seg)
        np.testing.assert_allclose(wrapper.foreground_, expected, atol=1e-12)


# ===================================================================== predicted foreground
class TestPredictedForegroundSelector(PixelSelectorTemplate):
    selector_class = PredictedForegroundSelector

    def test_param_measure(self, seg, pool):
        proba = _proba(seg, pool)
        np.testing.assert_allclose(
            self.make(measure="mean_proba").score(pool, seg), proba.mean(axis=(1, 2)), atol=1e-5
        )
        fraction = self.make(measure="fraction").score(pool, seg)
        # thresholding at 0.5: allow the pixels within float error of 0.5 to flip
        near = (np.abs(proba - 0.5) < 1e-4).mean(axis=(1, 2))
        assert np.all(np.abs(fraction - (proba >= 0.5).mean(axis=(1, 2))) <= near + 1e-9)
        assert len(np.unique(fraction)) > 3  # the test segmenter is not saturated
        with pytest.raises(ValueError, match="measure"):
            self.make(measure="area").score(pool, seg)

    def test_param_proba_threshold(self, seg, pool):
        proba = _proba(seg, pool)
        previous = None
        for t in (0.2, 0.5, 0.8):
            got = self.make(proba_threshold=t).score(pool, seg)
            near = (np.abs(proba - t) < 1e-4).mean(axis=(1, 2))
            assert np.all(np.abs(got - (proba >= t).mean(axis=(1, 2))) <= near + 1e-9)
            if previous is not None:
                assert np.all(got <= previous)
            previous = got
        for bad in (0, 1, 1.5, "half", True):
            with pytest.raises(ValueError, match="proba_threshold"):
                self.make(proba_threshold=bad).score(pool, seg)

    def test_param_dense(self, seg, pool, images):
        got = self.make(measure="mean_proba", dense=True).score(pool, seg)
        # independent: mean of each window of sigmoid(whole-image logits)
        expected = np.empty(len(pool))
        for k, (i, r, c) in enumerate(pool.coords):
            logits = seg.image_logits(np.asarray(images[i])[None])[0].float()
            window = torch.sigmoid(logits)[r : r + pool.patch_size[0], c : c + pool.patch_size[1]]
            expected[k] = float(window.mean())
        np.testing.assert_allclose(got, expected, atol=1e-5)
        per_patch = self.make(measure="mean_proba").score(pool, seg)
        assert np.corrcoef(got, per_patch)[0, 1] > 0.5  # the same quantity, other borders
        images_dense = self.make(dense=True, unit="image").score(pool, seg)
        np.testing.assert_allclose(
            images_dense,
            _image_means(self.make(dense=True).score(pool, seg), pool.coords[:, 0], len(images)),
            atol=1e-12,
        )
        with pytest.raises(ValueError, match="dense"):
            self.make(dense="yes").score(pool, seg)

    def test_image_score_is_mean_of_patch_fractions(self, seg, pool, images):
        patch = self.make().score(pool, seg)
        np.testing.assert_allclose(
            self.make(unit="image").score(pool, seg),
            _image_means(patch, pool.coords[:, 0], len(images)),
            atol=1e-12,
        )


# ===================================================================== gate
class TestForegroundGate(SelectorTemplate):
    selector_class = ForegroundGate

    @staticmethod
    def _expected_order(inner, fg, keep):
        """Kept candidates by inner score (stable), then the others by foreground (stable)."""
        kept = np.flatnonzero(keep)
        rest = np.flatnonzero(~keep)
        return np.concatenate(
            [
                kept[np.argsort(-inner[kept], kind="stable")],
                rest[np.argsort(-fg[rest], kind="stable")],
            ]
        )

    def test_param_selector(self, seg, pool):
        gate = self.make(selector=EntropySelector())
        picked = gate.select(pool, len(pool), seg)
        fg = PredictedForegroundSelector().score(pool, seg)
        inner = EntropySelector().score(pool, seg)
        keep = fg >= np.quantile(fg, 0.5)
        kept_first = picked[: keep.sum()]
        assert set(kept_first.tolist()) == set(np.flatnonzero(keep).tolist())
        # inside the gate the order is the inner selector's (ties may be ordered either way)
        assert np.all(np.diff(inner[kept_first]) <= 1e-12)
        np.testing.assert_allclose(gate.inner_scores_[keep], inner[keep], rtol=1e-6)
        assert np.isnan(gate.inner_scores_[~keep]).all()
        # a wrapper inside a wrapper, grid-searchable through the nested names
        nested = self.make(selector=StratifiedSelector(RandomSelector()), random_state=0)
        assert {"selector__beta", "selector__selector", "selector__selector__unit"} <= set(
            nested.get_params()
        )
        for params in ParameterGrid({"quantile": [0.25, 0.5], "selector__beta": [0.0, 2.0]}):
            candidate = clone(nested).set_params(**params)
            assert candidate.selector.beta == params["selector__beta"]
            assert len(set(candidate.select(pool, 6, seg).tolist())) == 6
        with pytest.raises(ValueError, match="selector"):
            self.make(selector="random").score(pool, seg)

    def test_param_quantile(self, seg, pool):
        fg = PredictedForegroundSelector().score(pool, seg)
        inner = EntropySelector().score(pool, seg)
        for q in (0.0, 0.3, 0.9, 1.0):
            gate = self.make(selector=EntropySelector(), quantile=q)
            scores = gate.score(pool, seg)
            keep = fg >= np.quantile(fg, q)
            order = np.argsort(-scores, kind="stable")
            assert set(order[: keep.sum()].tolist()) == set(np.flatnonzero(keep).tolist())
            if q == 0.0:  # everything passes: the inner selector's ranking
                assert np.all(np.diff(inner[order]) <= 1e-12)
        for bad in (-0.1, 1.5, "median", True):
            with pytest.raises(ValueError, match="quantile"):
                self.make(quantile=bad).score(pool, seg)

    def test_param_threshold(self, seg, pool):
        fg = PredictedForegroundSelector().score(pool, seg)
        inner = EntropySelector().score(pool, seg)
        t = float(np.sort(fg)[len(fg) // 3])
        picked = self.make(selector=EntropySelector(), threshold=t, quantile=0.99).select(
            pool, len(pool), seg
        )
        np.testing.assert_array_equal(picked, self._expected_order(inner, fg, fg >= t))
        # above every candidate: nothing passes, predicted foreground alone ranks
        picked = self.make(selector=EntropySelector(), threshold=2.0).select(pool, len(pool), seg)
        np.testing.assert_array_equal(picked, np.argsort(-fg, kind="stable"))
        with pytest.raises(ValueError, match="threshold"):
            self.make(threshold="high").score(pool, seg)

    def test_param_measure(self, seg, pool):
        _check_foreground_params(self.make, seg, pool)
        with pytest.raises(ValueError, match="measure"):
            self.make(measure="area").score(pool, seg)

    def test_param_proba_threshold(self, seg, pool):
        gate = self.make(selector=EntropySelector(), proba_threshold=0.7)
        gate.score(pool, seg)
        np.testing.assert_array_equal(
            gate.foreground_, PredictedForegroundSelector(proba_threshold=0.7).score(pool, seg)
        )
        with pytest.raises(ValueError, match="proba_threshold"):
            self.make(proba_threshold=1.0).score(pool, seg)

    def test_param_dense(self, seg, pool):
        gate = self.make(selector=EntropySelector(), dense=True)
        gate.score(pool, seg)
        np.testing.assert_array_equal(
            gate.foreground_, PredictedForegroundSelector(dense=True).score(pool, seg)
        )
        with pytest.raises(ValueError, match="dense"):
            self.make(dense="always").score(pool, seg)

    def test_param_batch_size(self, seg, pool):
        reference = self.make(selector=EntropySelector()).score(pool, seg)
        for batch_size in (1, 7):
            np.testing.assert_array_equal(
                self.make(selector=EntropySelector(), batch_size=batch_size).score(pool, seg),
                reference,
            )
        with pytest.raises(ValueError, match="batch_size"):
            self.make(batch_size=0).score(pool, seg)

    def test_image_unit_gates_images(self, seg, pool, images):
        gate = self.make(selector=EntropySelector(), unit="image")
        picked = gate.select(pool, len(images), seg)
        owners = pool.coords[:, 0]
        fg = _image_means(PredictedForegroundSelector().score(pool, seg), owners, len(images))
        inner = EntropySelector(unit="image").score(pool, seg)
        np.testing.assert_allclose(gate.foreground_, fg, atol=1e-12)
        keep = fg >= np.quantile(fg, 0.5)
        # the inner selector scores the images that pass on their own patches only
        np.testing.assert_allclose(gate.inner_scores_[keep], inner[keep], rtol=1e-6)
        np.testing.assert_array_equal(picked, self._expected_order(inner, fg, keep))
        # the inner selector's own unit is overridden by the gate's
        assert (
            gate.set_params(selector=EntropySelector(unit="patch")).inner_selector().unit == "image"
        )

    def test_gate_on_subset_pool_ranks_absent_images_last(self, seg, pool, images):
        subset = pool.subset(np.flatnonzero(pool.coords[:, 0] != 1))
        scores = self.make(selector=EntropySelector(), unit="image").score(subset, seg)
        assert scores[1] == -np.inf and np.isfinite(np.delete(scores, 1)).all()


# ===================================================================== representative
class TestRepresentativeSelector(SelectorTemplate):
    selector_class = RepresentativeSelector
    fast_params = {"n_clusters": 4}

    @staticmethod
    def _features(seg, pool):
        return np.asarray(seg.encoder_features(pool[np.arange(len(pool))]), dtype=np.float64)

    def test_param_n_clusters(self, seg, pool):
        for k in (1, 3, 6):
            sel = self.make(n_clusters=k, random_state=0)
            picked = sel.select(pool, k, seg)
            assert len(np.unique(sel.labels_)) == k
            assert len(set(sel.labels_[picked].tolist())) == k  # one per cluster
        big = self.make(n_clusters=10_000, n_components=None, random_state=0)
        with pytest.warns(Warning, match="distinct clusters"):  # the flat image's 4 patches
            big.score(pool, seg)
        # capped at the number of candidates: every distinct candidate is its own cluster
        assert len(np.unique(big.labels_)) == len(np.unique(big.features_, axis=0)) < len(pool)
        with pytest.raises(ValueError, match="n_clusters"):
            self.make(n_clusters=0).score(pool, seg)

    def test_param_within(self, seg, pool):
        feats = self._features(seg, pool)
        for within in ("centre", "typical"):
            sel = self.make(n_clusters=3, within=within, n_components=None, random_state=0)
            np.testing.assert_array_equal(sel.score(pool, seg), clone(sel).scores_from(feats))
        sel = self.make(
            n_clusters=3, within="typical", n_components=None, n_neighbors=4, random_state=0
        )
        picked = sel.select(pool, 3, seg)
        for p in picked:  # the most typical member of its cluster (independent k-NN below)
            members = np.flatnonzero(sel.labels_ == sel.labels_[p])
            d = np.linalg.norm(feats[members][:, None] - feats[members][None], axis=2)
            k = min(4, len(members) - 1)
            typ = 1 / np.sort(d, axis=1)[:, 1 : k + 1].mean(axis=1) if k else np.ones(1)
            assert typ[members.tolist().index(p)] == pytest.approx(typ.max())
        with pytest.raises(ValueError, match="within"):
            self.make(within="far").score(pool, seg)

    def test_param_n_components(self, seg, pool):
        sel = self.make(n_components=5, random_state=0)
        sel.score(pool, seg)
        assert sel.features_.shape == (len(pool), 5)
        raw = self.make(n_components=None, random_state=0)
        raw.score(pool, seg)
        np.testing.assert_allclose(raw.features_, self._features(seg, pool))
        with pytest.raises(ValueError, match="n_components"):
            self.make(n_components=0).score(pool, seg)

    def test_param_n_neighbors(self, seg, pool):
        x = np.array([[0.0], [1.0], [3.0], [10.0]])
        np.testing.assert_allclose(typicality(x, n_neighbors=1), [1.0, 1.0, 1 / 2, 1 / 7])
        np.testing.assert_allclose(typicality(x, n_neighbors=2), [1 / 2, 1 / 1.5, 1 / 2.5, 1 / 8])
        a = self.make(within="typical", n_neighbors=1, random_state=0).score(pool, seg)
        b = self.make(within="typical", n_neighbors=8, random_state=0).score(pool, seg)
        assert not np.array_equal(a, b)
        with pytest.raises(ValueError, match="n_neighbors"):
            self.make(n_neighbors=0).score(pool, seg)

    def test_param_batch_size(self, seg, pool):
        reference = self.make(random_state=0, n_components=None).score(pool, seg)
        for batch_size in (1, 5):
            got = self.make(random_state=0, n_components=None, batch_size=batch_size)
            np.testing.assert_array_equal(got.score(pool, seg), reference)
        with pytest.raises(ValueError, match="batch_size"):
            self.make(batch_size=0).score(pool, seg)

    def test_param_dense(self, seg, images):
        from kwtl.selection._representative import dense_encoder_features

        pool = PatchSet.from_images(images[:2], 16, 8)
        sel = self.make(n_clusters=3, n_components=None, dense=True, random_state=0)
        np.testing.assert_array_equal(
            sel.score(pool, seg), clone(sel).scores_from(dense_encoder_features(pool, seg))
        )
        with pytest.raises(ValueError, match="dense"):
            self.make(dense="auto").score(pool, seg)

    def test_image_features_are_mean_patch_features(self, seg, pool, images):
        feats = self._features(seg, pool)
        owners = pool.coords[:, 0]
        means = np.stack([feats[owners == i].mean(axis=0) for i in range(len(images))])
        sel = self.make(unit="image", n_clusters=3, n_components=None, random_state=0)
        np.testing.assert_array_equal(sel.score(pool, seg), clone(sel).scores_from(means))


# ===================================================================== stratified
class TestStratifiedSelector(SelectorTemplate):
    selector_class = StratifiedSelector

    def test_param_selector(self, seg, pool):
        sel = self.make(selector=EntropySelector(), random_state=3)
        scores = sel.score(pool, seg)
        inner = EntropySelector().score(pool, seg)
        fg = PredictedForegroundSelector().score(pool, seg)
        np.testing.assert_allclose(sel.inner_scores_, inner, rtol=1e-6)
        np.testing.assert_array_equal(scores, clone(sel).scores_from(inner, fg, pool.coords[:, 0]))
        default = self.make(random_state=3)
        default.score(pool, seg)  # the paper's consistency inside
        np.testing.assert_allclose(default.inner_scores_, ConsistencySelector().score(pool, seg))
        with pytest.raises(ValueError, match="selector"):
            self.make(selector=3).score(pool, seg)

    def test_param_beta(self, seg, pool):
        inner = EntropySelector().score(pool, seg)
        top = self.make(selector=EntropySelector(), beta=500.0, n_strata=1, random_state=0)
        picked = top.select(pool, 5, seg)
        assert set(picked.tolist()) == set(np.argsort(-inner, kind="stable")[:5].tolist())
        firsts = {
            int(
                self.make(selector=EntropySelector(), beta=0.0, n_strata=1, random_state=s).select(
                    pool, 1, seg
                )[0]
            )
            for s in range(12)
        }
        assert len(firsts) > 4  # beta=0: uniform draws
        for bad in (-1, float("inf"), "1"):
            with pytest.raises(ValueError, match="beta"):
                self.make(beta=bad).score(pool, seg)

    def test_param_n_strata(self, seg, pool):
        fg = PredictedForegroundSelector().score(pool, seg)
        rank = np.argsort(np.argsort(fg, kind="stable"), kind="stable")
        strata = rank * 3 // len(pool)
        picked = self.make(selector=EntropySelector(), n_strata=3, random_state=0).select(
            pool, 6, seg
        )
        assert np.bincount(strata[picked], minlength=3).tolist() == [2, 2, 2]
        with pytest.raises(ValueError, match="n_strata"):
            self.make(n_strata=0).score(pool, seg)

    def test_param_max_per_image(self, seg, pool, images):
        picked = self.make(selector=EntropySelector(), max_per_image=1, random_state=0).select(
            pool, len(images), seg
        )
        assert sorted(pool.coords[picked, 0].tolist()) == list(range(len(images)))
        picked = self.make(selector=EntropySelector(), max_per_image=2, random_state=0).select(
            pool, 2 * len(images), seg
        )
        assert np.bincount(pool.coords[picked, 0]).max() == 2
        with pytest.raises(ValueError, match="max_per_image"):
            self.make(max_per_image=0).score(pool, seg)

    def test_param_measure(self, seg, pool):
        _check_foreground_params(lambda **p: self.make(selector=EntropySelector(), **p), seg, pool)
        with pytest.raises(ValueError, match="measure"):
            self.make(measure="area").score(pool, seg)

    def test_param_proba_threshold(self, seg, pool):
        sel = self.make(selector=EntropySelector(), proba_threshold=0.3, random_state=0)
        sel.score(pool, seg)
        np.testing.assert_array_equal(
            sel.foreground_, PredictedForegroundSelector(proba_threshold=0.3).score(pool, seg)
        )
        with pytest.raises(ValueError, match="proba_threshold"):
            self.make(proba_threshold=0).score(pool, seg)

    def test_param_dense(self, seg, pool):
        sel = self.make(selector=EntropySelector(), dense=True, random_state=0)
        sel.score(pool, seg)
        np.testing.assert_array_equal(
            sel.foreground_, PredictedForegroundSelector(dense=True).score(pool, seg)
        )
        with pytest.raises(ValueError, match="dense"):
            self.make(dense=None).score(pool, seg)

    def test_param_batch_size(self, seg, pool):
        reference = self.make(selector=EntropySelector(), random_state=0).score(pool, seg)
        np.testing.assert_array_equal(
            self.make(selector=EntropySelector(), random_state=0, batch_size=3).score(pool, seg),
            reference,
        )
        with pytest.raises(ValueError, match="batch_size"):
            self.make(batch_size=-1).score(pool, seg)

    def test_image_unit_draws_images(self, seg, pool, images):
        sel = self.make(selector=EntropySelector(), unit="image", random_state=0)
        scores = sel.score(pool, seg)
        fg = _image_means(
            PredictedForegroundSelector().score(pool, seg), pool.coords[:, 0], len(images)
        )
        inner = EntropySelector(unit="image").score(pool, seg)
        np.testing.assert_allclose(sel.foreground_, fg, atol=1e-12)
        np.testing.assert_array_equal(scores, clone(sel).scores_from(inner, fg))
