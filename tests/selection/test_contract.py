"""The selector contract: whole-pool and wrapper selectors plug into the method unchanged."""

import numpy as np
import pytest
import torch
from tiny import tiny_method, tiny_segmenter

from kwtl import FewShotSegmentation
from kwtl.datasets import make_synthetic_benchmark
from kwtl.model_selection import benchmark_to_Xy
from kwtl.models import FCRNSegmenter
from kwtl.selection import BaseSelector, EntropySelector, RandomSelector, SelectionModel


class FarthestFirst(BaseSelector):
    """A whole-pool, budget-dependent selector: scores are rows (patch means), the choice
    is greedy farthest-point in that space (deterministic)."""

    required_methods = ("patch_logits",)
    budget_dependent = True

    def __init__(self, *, unit="patch", random_state=None):
        self.unit = unit
        self.random_state = random_state

    def _score_pool(self, pool, estimator):
        rows = []
        for _, batch in pool.iter_batches(16):
            logits = estimator.patch_logits(batch)
            rows.append(torch.stack([logits.mean(dim=(1, 2)), logits.std(dim=(1, 2))], 1))
        return torch.cat(rows).double().cpu().numpy()

    def _choose(self, scores, n):
        chosen = [0]
        distance = np.linalg.norm(scores - scores[0], axis=1)
        while len(chosen) < n:
            chosen.append(int(np.argmax(distance)))
            distance = np.minimum(distance, np.linalg.norm(scores - scores[chosen[-1]], axis=1))
        return np.asarray(chosen)


class Gate(BaseSelector):
    """A wrapper: the base selector's scores, candidates below a predicted-foreground
    fraction sent last."""

    required_methods = ("patch_logits",)

    def __init__(self, base_selector=None, min_foreground=0.5, random_state=None):
        self.base_selector = base_selector
        self.min_foreground = min_foreground
        self.random_state = random_state

    @property
    def unit(self):
        return self.base_selector.unit

    @property
    def stochastic(self):
        return self.base_selector.stochastic

    def _score_pool(self, pool, estimator):
        scores = self.base_selector.set_params(random_state=self.random_state).score(
            pool, estimator
        )
        fractions = np.concatenate(
            [
                (torch.sigmoid(estimator.patch_logits(b)) >= 0.5).double().mean(dim=(1, 2)).numpy()
                for _, b in pool.iter_batches(16)
            ]
        )
        return np.where(fractions >= self.min_foreground, scores, -np.inf)


@pytest.fixture(scope="module")
def packed():
    bench = make_synthetic_benchmark(
        n_images=4, image_size=32, domains=["fluorescence", "em"], random_state=0
    )
    X, y, d = benchmark_to_Xy(bench, targets=["em"])
    return X, y, d


def method(selector, **kw):
    params = dict(segmenter=tiny_segmenter(stride=8), selector=selector, n_shots=2)
    return tiny_method(**{**params, **kw})


def test_the_segmenter_follows_the_protocol():
    names = [n for n in vars(SelectionModel) if not n.startswith("_")]
    seg = FCRNSegmenter()
    for name in (
        "patch_logits",
        "mc_dropout_proba",
        "patch_size",
        "stride",
        "inference_batch_size",
        "device",
    ):
        assert name in names or name in SelectionModel.__annotations__
        assert hasattr(seg, name)


def test_whole_pool_selector_fits_the_method(packed, tmp_path):
    import joblib

    X, y, d = packed
    fitted = method(FarthestFirst(), memory=joblib.Memory(tmp_path, verbose=0)).fit(X, y, d)
    rows = fitted.selector_.scores_
    assert rows.shape == (len(fitted.candidates_), 2)
    chosen = fitted.support_indices_
    assert len(chosen) == 6 and len(set(chosen.tolist())) == 6
    # farthest-first by hand on the same rows
    expected = [0]
    for _ in range(5):
        dist = np.min([np.linalg.norm(rows - rows[c], axis=1) for c in expected], axis=0)
        expected.append(int(np.argmax(dist)))
    np.testing.assert_array_equal(chosen, expected)
    np.testing.assert_array_equal(fitted.support_scores_, rows[chosen])
    assert len(fitted.oracle_.revealed_) == 6


def test_wrapper_selector_fits_the_method(packed):
    X, y, d = packed
    gated = method(Gate(EntropySelector(), min_foreground=0.0)).fit(X, y, d)
    plain = method(EntropySelector()).fit(X, y, d)
    np.testing.assert_array_equal(gated.support_indices_, plain.support_indices_)
    strict = method(Gate(EntropySelector(), min_foreground=0.2)).fit(X, y, d)
    kept = np.isfinite(strict.selector_.scores_)
    if kept.sum() >= 6:
        assert kept[strict.support_indices_].all()
    assert Gate(RandomSelector()).stochastic and not Gate(EntropySelector()).stochastic


def test_budget_larger_than_the_pool_fails_before_training(packed):
    X, y, d = packed

    class Untrainable(FCRNSegmenter):
        def meta_fit(self, *args, **kwargs):  # pragma: no cover - must not run
            raise AssertionError("trained before checking the budget")

    seg = Untrainable(module__width=4, patch_size=16, stride=8, precision="fp32")
    with pytest.raises(ValueError, match="more shots than candidates"):
        FewShotSegmentation(seg, selector=RandomSelector(), n_shots=1000, patches_per_shot=10).fit(
            X, y, d
        )


# ------------------------------------------------------------------ choosing, in the selector
def _tiny_pool_and_model():
    from kwtl.datasets import PatchSet, make_cells

    images, _ = make_cells(3, 48, domain="em", random_state=1)
    seg = tiny_segmenter(stride=8, random_state=0).initialize()
    return PatchSet.from_images(images, 16, 8), seg


def test_non_overlapping_choice_is_the_greedy_walk_down_the_ranking():
    pool, seg = _tiny_pool_and_model()
    selector = EntropySelector()
    support = selector.select_support(
        pool, seg, n_shots=5, patches_per_shot=1, non_overlapping=True
    )
    order = np.argsort(-selector.scores_, kind="stable")
    # by hand: walk down the ranking, keep what overlaps nothing kept in its image
    kept = []
    for k in order:
        i, r, c = pool.coords[k]
        if all(
            i2 != i or abs(r - r2) >= 16 or abs(c - c2) >= 16 for i2, r2, c2 in pool.coords[kept]
        ):
            kept.append(k)
        if len(kept) == 5:
            break
    np.testing.assert_array_equal(support.indices, kept)
    plain = EntropySelector().select_support(pool, seg, n_shots=5, patches_per_shot=1)
    np.testing.assert_array_equal(plain.indices, order[:5])
    assert not np.array_equal(plain.indices, support.indices)  # the grid overlaps (stride 8)


def test_a_budget_dependent_choice_is_kept_as_it_is():
    pool, seg = _tiny_pool_and_model()
    selector = FarthestFirst()
    support = selector.select_support(
        pool, seg, n_shots=4, patches_per_shot=1, non_overlapping=True
    )
    np.testing.assert_array_equal(support.indices, FarthestFirst().select(pool, 4, seg))


@pytest.mark.parametrize("selector", [EntropySelector(), RandomSelector(random_state=3)])
def test_scores_cached_image_by_image_equal_one_pass(selector, tmp_path):
    pool, seg = _tiny_pool_and_model()
    seen = []
    cached = selector.score(pool, seg, memory=tmp_path, progress=lambda d, t: seen.append(d))
    np.testing.assert_array_equal(cached, selector.score(pool, seg))
    entries = len(list(tmp_path.rglob("kwtl_scores/*.npy")))
    assert entries == (3 if selector.separable else 1)
    assert seen == ([1, 2, 3] if selector.separable else [])
    np.testing.assert_array_equal(selector.score(pool, seg, memory=tmp_path), cached)
    assert len(list(tmp_path.rglob("kwtl_scores/*.npy"))) == entries  # read back, not rescored
