"""Label-free selectors: scores against independent computations, determinism, clone."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from tiny import tiny_segmenter

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
from kwtl.selection._gate import gate_scores
from kwtl.selection._representative import representative_order, typicality
from kwtl.selection._stratified import stratified_order


@pytest.fixture(scope="module")
def raw_seg():
    """An initialised tiny segmenter (not the calibrated ``seg`` of the selection tests)."""
    return tiny_segmenter(module__init="paper", random_state=0).initialize()


@pytest.fixture(scope="module")
def noise_images():
    """Uniform noise images (not the synthetic ``images`` of the selection tests)."""
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (32, 48), dtype=np.uint8) for _ in range(3)]


ALL = [
    lambda: ForegroundGate(random_state=0),
    lambda: ForegroundGate(EntropySelector(), quantile=0.3),
    lambda: StratifiedSelector(
        EntropySelector(), beta=2.0, n_strata=2, max_per_image=2, random_state=0
    ),
    lambda: RepresentativeSelector(n_clusters=4, random_state=0),
    lambda: ForegroundGate(RepresentativeSelector(n_clusters=3, random_state=0)),
    lambda: PredictedForegroundSelector(measure="mean_proba"),
]


# ----------------------------------------------------------------- predicted foreground
def test_predicted_foreground_matches_direct_computation(raw_seg, noise_images):
    pool = PatchSet.from_images(noise_images, 16, 16)
    proba = torch.sigmoid(
        raw_seg.module_.eval()(
            torch.from_numpy(pool[np.arange(len(pool))]).float().div(127.5).sub(1)[:, None]
        )
    )[:, 0]
    raw_seg.module_.train()
    expected_fraction = (proba >= 0.5).float().mean(dim=(1, 2)).numpy()
    expected_mean = proba.mean(dim=(1, 2)).detach().numpy()
    np.testing.assert_allclose(
        PredictedForegroundSelector().score(noise_images, raw_seg), expected_fraction, atol=1e-6
    )
    np.testing.assert_allclose(
        PredictedForegroundSelector(measure="mean_proba").score(noise_images, raw_seg),
        expected_mean,
        atol=1e-5,
    )


# ----------------------------------------------------------------- gate
def test_gate_scores_by_hand():
    inner = np.array([0.3, 0.1, 0.9, 0.5, 0.7])
    fg = np.array([0.9, 0.1, 0.2, 0.8, 0.5])
    # median of fg is 0.5 -> keep 0, 3, 4 ranked by inner: 4 (0.7), 3 (0.5), 0 (0.3);
    # then the others by foreground: 2 (0.2), 1 (0.1)
    order = np.argsort(-gate_scores(inner, fg, quantile=0.5), kind="stable")
    assert order.tolist() == [4, 3, 0, 2, 1]
    order = np.argsort(-gate_scores(inner, fg, threshold=0.85), kind="stable")
    assert order.tolist() == [0, 3, 4, 2, 1]
    assert np.argsort(-gate_scores(inner, fg, quantile=0.0)).tolist() == [2, 4, 3, 0, 1]
    with_nan = np.where(fg >= 0.5, inner, np.nan)
    np.testing.assert_array_equal(gate_scores(with_nan, fg), gate_scores(inner, fg))


def test_gate_selects_inside_gate_first(raw_seg, noise_images):
    gate = ForegroundGate(EntropySelector(), quantile=0.5)
    picked = gate.select(noise_images, 3, raw_seg)
    fg = gate.foreground_
    kept = np.flatnonzero(fg >= np.quantile(fg, 0.5))
    assert len(kept) >= 3
    assert set(picked.tolist()) <= set(kept.tolist())
    inner = EntropySelector().score(noise_images, raw_seg)
    np.testing.assert_allclose(gate.inner_scores_[kept], inner[kept], rtol=1e-6)
    assert np.isnan(np.delete(gate.inner_scores_, kept)).all()
    best = kept[np.argsort(-inner[kept], kind="stable")][:3]
    assert picked.tolist() == best.tolist()


def test_gate_around_set_based_selector_spreads_over_gated_pool(raw_seg, noise_images):
    gate = ForegroundGate(
        StratifiedSelector(EntropySelector(), n_strata=1, max_per_image=1, random_state=0)
    )
    picked = gate.select(noise_images, 3, raw_seg)
    pool = PatchSet.from_images(noise_images, 16, 16)
    kept = np.flatnonzero(gate.foreground_ >= np.quantile(gate.foreground_, 0.5))
    if len(set(pool.coords[kept, 0].tolist())) == 3:
        assert len(set(pool.coords[picked, 0].tolist())) == 3


def test_gate_random_inside_gate_is_reproducible(raw_seg, noise_images):
    a = ForegroundGate(random_state=1).select(noise_images, 4, raw_seg)
    b = ForegroundGate(random_state=1).select(noise_images, 4, raw_seg)
    c = ForegroundGate(random_state=2).select(noise_images, 4, raw_seg)
    assert a.tolist() == b.tolist()
    assert ForegroundGate().stochastic and not ForegroundGate(EntropySelector()).stochastic
    assert len(set(a.tolist())) == 4 and (a.tolist() != c.tolist() or len(a) == 0)


# ----------------------------------------------------------------- stratified
def _reference_stratified(keys, strata, images, cap):
    """Plain re-implementation: repeatedly scan strata round-robin, each taking its best
    uncapped candidate; relax the cap when nobody can take one."""
    left = set(range(len(keys)))
    counts = {}
    order = []
    level = cap
    labels = sorted(set(strata))
    while left:
        moved = False
        for s in labels:
            cands = [i for i in left if strata[i] == s and counts.get(images[i], 0) < level]
            if cands:
                best = max(cands, key=lambda i: (keys[i], -i))
                order.append(best)
                left.remove(best)
                counts[images[best]] = counts.get(images[best], 0) + 1
                moved = True
        if not moved:
            level += cap
    return order


@pytest.mark.parametrize("cap", [1, 2, None])
def test_stratified_order_matches_reference(cap):
    rng = np.random.default_rng(3)
    keys = rng.random(40)
    strata = rng.integers(0, 3, 40)
    imgs = rng.integers(0, 5, 40)
    got = stratified_order(keys, strata, imgs, cap).tolist()
    ref = _reference_stratified(keys, strata, imgs, cap if cap else 40)
    assert got == ref
    assert sorted(got) == list(range(40))


def test_stratified_beta_zero_is_uniform_and_large_beta_is_topk():
    scores = np.linspace(0.01, 1.0, 50)
    fg = np.zeros(50)
    top = StratifiedSelector(beta=200.0, n_strata=1, random_state=0).scores_from(scores, fg)
    assert np.argsort(-top)[:5].tolist() == [49, 48, 47, 46, 45]
    # beta=0: every candidate equally likely to be first (chi-square-free check on counts)
    firsts = [
        int(
            np.argmax(
                StratifiedSelector(beta=0.0, n_strata=1, random_state=s).scores_from(scores, fg)
            )
        )
        for s in range(400)
    ]
    assert np.mean(np.array(firsts) >= 25) == pytest.approx(0.5, abs=0.1)
    # beta=1: the first pick follows p ∝ score
    firsts = [
        int(
            np.argmax(
                StratifiedSelector(beta=1.0, n_strata=1, random_state=s).scores_from(scores, fg)
            )
        )
        for s in range(400)
    ]
    expected_upper = scores[25:].sum() / scores.sum()
    assert np.mean(np.array(firsts) >= 25) == pytest.approx(expected_upper, abs=0.08)


def test_stratified_equal_share_per_stratum():
    fg = np.repeat([0.0, 0.5, 1.0], 10)
    scores = np.arange(30, dtype=float)
    s = StratifiedSelector(beta=50.0, n_strata=3, random_state=0).scores_from(scores, fg)
    first6 = np.argsort(-s)[:6]
    assert sorted((first6 // 10).tolist()) == [0, 0, 1, 1, 2, 2]


def test_stratified_on_segmenter_deterministic(raw_seg, noise_images):
    a = StratifiedSelector(EntropySelector(), random_state=0, max_per_image=1).select(
        noise_images, 5, raw_seg
    )
    b = StratifiedSelector(EntropySelector(), random_state=0, max_per_image=1).select(
        noise_images, 5, raw_seg
    )
    assert a.tolist() == b.tolist()
    pool = PatchSet.from_images(noise_images, 16, 16)
    owners = pool.coords[a[:3], 0]
    assert len(set(owners.tolist())) == 3  # one per image before any image gets a second


# ----------------------------------------------------------------- representative
def test_typicality_by_hand():
    x = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    # k=1: nearest distances 1, sqrt(9+9)=4.243, 1
    np.testing.assert_allclose(typicality(x, n_neighbors=1), [1.0, 1 / np.sqrt(18), 1.0])


def test_representative_picks_nearest_each_centre():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = np.concatenate([c + rng.normal(0, 0.5, (n, 2)) for c, n in zip(centres, (12, 8, 5))])
    sel = RepresentativeSelector(n_clusters=3, n_components=None, random_state=0)
    s = sel.scores_from(x)
    first3 = np.argsort(-s)[:3]
    # independent: cluster means of the true groups, nearest member to each
    groups = np.repeat([0, 1, 2], (12, 8, 5))
    expect = []
    for g in (0, 1, 2):  # largest group first
        members = np.flatnonzero(groups == g)
        mean = x[members].mean(0)
        expect.append(members[np.argmin(np.linalg.norm(x[members] - mean, axis=1))])
    assert first3.tolist() == expect


def test_representative_order_round_robin():
    x = np.array([[0.0], [1.0], [2.0], [10.0]])
    order = representative_order(x, [0, 0, 0, 1], centres=np.array([[1.0], [10.0]]))
    assert order.tolist() == [1, 3, 0, 2]


def test_representative_on_segmenter_uses_encoder_features(raw_seg, noise_images):
    pool = PatchSet.from_images(noise_images, 16, 16)
    sel = RepresentativeSelector(n_clusters=3, n_components=None, random_state=0)
    a = sel.score(noise_images, raw_seg)
    b = sel.scores_from(raw_seg.encoder_features(pool[np.arange(len(pool))]))
    np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------- common contract
@pytest.mark.parametrize("make", ALL)
def test_clone_get_params_and_determinism(make, raw_seg, noise_images):
    sel = make()
    twin = clone(sel)
    assert twin.get_params(deep=False).keys() == sel.get_params(deep=False).keys()
    a = sel.select(noise_images, 3, raw_seg)
    b = twin.select(noise_images, 3, raw_seg)
    assert a.tolist() == b.tolist()
    assert len(set(a.tolist())) == 3


@pytest.mark.parametrize(
    "bad",
    [
        lambda: ForegroundGate(quantile=1.5),
        lambda: ForegroundGate(measure="x"),
        lambda: StratifiedSelector(beta=-1),
        lambda: StratifiedSelector(n_strata=0),
        lambda: StratifiedSelector(max_per_image=0),
        lambda: RepresentativeSelector(n_clusters=0),
        lambda: RepresentativeSelector(within="far"),
        lambda: ForegroundGate(ConsistencySelector(magnitude=-1)),
        lambda: StratifiedSelector(EntropySelector(batch_size=0)),
    ],
)
def test_bad_parameters_raise(bad, raw_seg, noise_images):
    with pytest.raises(ValueError):
        bad().score(noise_images, raw_seg)


def test_gate_grid_searchable_params():
    gate = ForegroundGate(StratifiedSelector(RandomSelector()), quantile=0.5)
    params = gate.get_params()
    assert "selector__beta" in params and "selector__selector" in params
    gate.set_params(selector__beta=0.5, quantile=0.25)
    assert gate.selector.beta == 0.5 and gate.quantile == 0.25
