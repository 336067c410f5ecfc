"""FewShotSegmentation, the oracle, LeaveOneDatasetOut and the grid search protocol."""

import joblib
import numpy as np
import pytest
import sklearn
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from tiny import tiny_method, tiny_segmenter

from kwtl import FewShotSegmentation, Oracle
from kwtl.datasets import PatchSet, make_synthetic_benchmark
from kwtl.model_selection import LeaveOneDatasetOut, authors_splits, benchmark_to_Xy
from kwtl.selection import (
    ConsistencySelector,
    EntropySelector,
    MCDropoutSelector,
    RandomSelector,
)


@pytest.fixture(scope="module")
def bench():
    return make_synthetic_benchmark(
        n_images=5, image_size=32, domains=["fluorescence", "em", "histology"], random_state=0
    )


@pytest.fixture(scope="module")
def packed(bench):
    return benchmark_to_Xy(bench)


def one_target(packed, target_id=2):
    X, y, d = packed
    keep = ((d > 0) & (d != target_id)) | (d == -target_id)
    return X[keep], y[keep], d[keep]


# ------------------------------------------------------------------------- oracle
def test_oracle_reveals_and_records():
    masks = [np.arange(16).reshape(4, 4) % 3 == 0, np.ones((4, 4))]
    oracle = Oracle(masks, shapes=[(4, 4), (4, 4)])
    region = oracle.reveal(0, 1, 2, 2, 2)
    assert np.array_equal(region, masks[0][1:3, 2:4])
    whole = oracle.reveal(1)
    assert whole.all() and whole.shape == (4, 4)
    assert oracle.revealed_ == [(0, 1, 2, 2, 2), (1, 0, 0, 4, 4)]
    assert oracle.n_revealed_pixels_ == 20
    with pytest.raises(IndexError):
        oracle.reveal(2)
    with pytest.raises(ValueError, match="leaves mask"):
        oracle.reveal(0, 3, 3, 2, 2)
    with pytest.raises(ValueError, match="shape"):
        Oracle([np.zeros((3, 3))], shapes=[(4, 4)]).reveal(0)


def test_oracle_reveal_patches_reads_only_revealed_regions():
    masks = [np.random.default_rng(0).random((8, 8)) > 0.5]
    images = [np.zeros((8, 8), np.uint8)]
    patches = PatchSet.from_images(images, 4, 4).subset([3, 0])
    oracle = Oracle(masks)
    revealed = oracle.reveal_patches(patches)
    assert oracle.revealed_ == [(0, 4, 4, 4, 4), (0, 0, 0, 4, 4)]
    assert np.array_equal(revealed[0], masks[0][4:8, 4:8])
    assert np.array_equal(revealed[1], masks[0][0:4, 0:4])
    # the canvas holds nothing outside the revealed patches
    assert not revealed.arrays[0][0:4, 4:8].any()


# ------------------------------------------------------------------------- method
@pytest.mark.parametrize(
    "selector",
    [ConsistencySelector(), EntropySelector(), MCDropoutSelector(n_passes=2), RandomSelector()],
    ids=lambda s: type(s).__name__,
)
def test_fit_reveals_exactly_the_selected_candidates(packed, selector):
    X, y, d = one_target(packed)
    method = tiny_method(selector=selector, n_shots=2).fit(X, y, sample_domain=d)
    assert len(method.support_indices_) == 6
    coords = method.candidates_.coords[method.support_indices_]
    assert np.array_equal(coords, method.support_coords_)
    expected = [(int(i), int(r), int(c), 16, 16) for i, r, c in coords]
    assert method.oracle_.revealed_ == expected  # nothing else was read
    assert method.oracle_.filter_reads_ == 0
    assert len(set(map(tuple, coords.tolist()))) == 6  # without replacement
    assert np.all(np.diff(method.support_scores_) <= 0) or isinstance(selector, RandomSelector)
    pool = [x for x, dd in zip(X, d) if dd < 0]
    assert method.target_domain_ == -2
    assert len(method.predict(pool)) == len(pool)
    assert 0.0 <= method.score(pool, [m for m, dd in zip(y, d) if dd < 0]) <= 1.0


def test_target_masks_other_than_selected_are_never_touched(packed):
    X, y, d = one_target(packed)

    class Trap:
        """Not a mask: any attempt to read it as one (kwtl's as_mask) raises TypeError."""

    y_trapped = list(y)
    target_positions = np.flatnonzero(d < 0)
    method = tiny_method(selector=RandomSelector(), n_shots=1, patches_per_shot=1)
    method.fit(X, y, sample_domain=d)
    chosen_image = int(method.support_coords_[0][0])
    for k, pos in enumerate(target_positions):
        if k != chosen_image:
            y_trapped[pos] = Trap()
    again = tiny_method(selector=RandomSelector(), n_shots=1, patches_per_shot=1)
    again.fit(X, y_trapped, sample_domain=d)
    assert np.array_equal(again.support_coords_, method.support_coords_)


def test_image_unit_reveals_whole_images(packed):
    X, y, d = one_target(packed)
    method = tiny_method(selector=EntropySelector(unit="image"), n_shots=2).fit(X, y, d)
    assert len(method.support_indices_) == 2
    revealed_images = sorted({r[0] for r in method.oracle_.revealed_})
    assert revealed_images == sorted(method.support_indices_.tolist())
    # every patch of the chosen images is revealed (a 32x32 image has 4 patches of 16)
    assert len(method.oracle_.revealed_) == 8


def test_min_foreground_filter_is_on_record(packed):
    X, y, d = one_target(packed)
    method = tiny_method(selector=RandomSelector(), min_foreground=5).fit(X, y, d)
    assert method.oracle_.filter_reads_ > 0
    counts = [
        np.count_nonzero(np.asarray(y[np.flatnonzero(d < 0)[i]])[r : r + 16, c : c + 16])
        for i, r, c in method.candidates_.coords
    ]
    assert min(counts) >= 5


def test_same_seed_same_selection_and_numbers(packed):
    X, y, d = one_target(packed)
    a = tiny_method(selector=ConsistencySelector()).fit(X, y, d)
    b = tiny_method(selector=ConsistencySelector()).fit(X, y, d)
    assert np.array_equal(a.support_coords_, b.support_coords_)
    np.testing.assert_array_equal(a.support_scores_, b.support_scores_)
    pool = [x for x, dd in zip(X, d) if dd < 0]
    for p, q in zip(a.predict_proba(pool), b.predict_proba(pool)):
        np.testing.assert_array_equal(p, q)


def test_memory_caches_pretraining_across_selectors(packed, tmp_path):
    X, y, d = one_target(packed)
    memory = joblib.Memory(tmp_path, verbose=0)
    a = tiny_method(selector=EntropySelector(), memory=memory).fit(X, y, d)
    b = tiny_method(selector=RandomSelector(), n_shots=2, memory=memory).fit(X, y, d)
    # the PLFT model is loaded from the cache: identical weights, not recomputed
    for v, w in zip(
        a.plft_segmenter_.module_.state_dict().values(),
        b.plft_segmenter_.module_.state_dict().values(),
    ):
        assert np.array_equal(v.numpy(), w.numpy())

    def entries(stage):
        return len([p for p in tmp_path.rglob("output.pkl") if stage in p.parts])

    tiny_method(selector=ConsistencySelector(), memory=memory).fit(X, y, d)
    assert entries("_meta_fit") == 1 and entries("_pseudo_label_fine_tune_cached") == 1
    # one per pool image for the pixel selectors (Entropy, Consistency), one for Random
    n_pool = int(np.sum(np.asarray(d) < 0))
    assert len(list(tmp_path.rglob("kwtl_scores/*.npy"))) == 2 * n_pool + 1
    # scores do not depend on the budget: one scoring pass serves every shot count
    c = tiny_method(selector=ConsistencySelector(), n_shots=2, memory=memory).fit(X, y, d)
    assert len(list(tmp_path.rglob("kwtl_scores/*.npy"))) == 2 * n_pool + 1
    assert np.array_equal(
        c.support_indices_[:3],
        tiny_method(selector=ConsistencySelector()).fit(X, y, d).support_indices_,
    )


def test_without_pseudo_labels_and_with_prefitted_segmenter(packed):
    X, y, d = one_target(packed)
    no_plft = tiny_method(pseudo_labeler=None, selector=RandomSelector()).fit(X, y, d)
    assert len(no_plft.plft_segmenter_.history) == 0
    pool_only = d < 0
    prefitted = tiny_segmenter().initialize()
    method = tiny_method(segmenter=prefitted, selector=RandomSelector())
    method.fit(X[pool_only], y[pool_only])  # sample_domain=None: all target
    assert len(method.support_indices_) == 3


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(n_shots=0), "n_shots"),
        (dict(patches_per_shot="many"), "patches_per_shot"),
        (dict(pseudo_labeler="otsu"), "pseudo_labeler"),
        (dict(min_foreground=-1), "min_foreground"),
    ],
)
def test_bad_parameters(packed, change, match):
    X, y, d = one_target(packed)
    with pytest.raises(ValueError, match=match):
        tiny_method(**change).fit(X, y, d)


def test_bad_inputs(packed):
    X, y, d = one_target(packed)
    with pytest.raises(ValueError, match="one target dataset"):
        tiny_method().fit(*packed)
    with pytest.raises(ValueError, match="more shots than candidates"):
        tiny_method(n_shots=100).fit(X, y, d)
    with pytest.raises(ValueError, match="non-zero"):
        tiny_method().fit(X, y, np.zeros(len(X), int))
    with pytest.raises(ValueError, match="masks"):
        tiny_method().fit(X, y[:-1], d)
    with pytest.raises(ValueError, match="not fitted"):
        tiny_method().fit(X[d < 0], y[d < 0])


def test_clone_and_params():
    method = tiny_method(selector=EntropySelector())
    cloned = clone(method)
    assert cloned.get_params()["n_shots"] == 1
    assert isinstance(cloned.selector, EntropySelector) and cloned.selector is not method.selector
    method.set_params(selector__reduction="max", segmenter__lr=0.5)
    assert method.selector.reduction == "max" and method.segmenter.lr == 0.5


# ------------------------------------------------------------------------- splitting
def test_benchmark_to_Xy_packs_sources_and_targets(bench):
    X, y, d = benchmark_to_Xy(bench, targets=["em"])
    assert sorted(set(d.tolist())) == [-2, 1, 2, 3]
    assert (d == -2).sum() == (d == 2).sum() == 5
    assert X[np.flatnonzero(d == -2)[0]] is X[np.flatnonzero(d == 2)[0]]  # shared, not copied
    with pytest.raises(ValueError, match="unknown target"):
        benchmark_to_Xy(bench, targets=["nope"])


def test_leave_one_dataset_out_protocol(packed):
    X, y, d = packed
    cv = LeaveOneDatasetOut(n_repeats=3, test_size=0.2, random_state=0)
    splits = list(cv.split(X, y, sample_domain=d))
    assert len(splits) == cv.get_n_splits(sample_domain=d) == 9
    assert cv.split_targets(d)[:4] == [(1, 0), (1, 1), (1, 2), (2, 0)]
    for (train, test), (t, r) in zip(splits, cv.split_targets(d)):
        assert set(d[test]) == {-t} and len(test) == 1  # floor(0.2 * 5)
        assert set(d[train]) == ({1, 2, 3} - {t}) | {-t}
        assert not set(train) & set(test)
        assert (d[train] == -t).sum() == 4
    tests = [tuple(test) for test, _ in [(s[1], None) for s in splits[:3]]]
    assert len(set(tests)) > 1  # repeats differ
    again = list(LeaveOneDatasetOut(n_repeats=3, random_state=0).split(X, y, d))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, again))


def test_fixed_splits_and_errors(packed):
    X, y, d = packed
    cv = LeaveOneDatasetOut(n_repeats=2, fixed_splits={2: [[0, 1], [4]]})
    splits = list(cv.split(X, y, d))
    em = np.flatnonzero(d == -2)
    assert np.array_equal(splits[2][1], em[[0, 1]]) and np.array_equal(splits[3][1], em[[4]])
    with pytest.raises(ValueError, match="needs sample_domain"):
        list(LeaveOneDatasetOut().split(X))
    with pytest.raises(ValueError, match="n_repeats"):
        list(LeaveOneDatasetOut(n_repeats=0).split(X, y, d))
    with pytest.raises(ValueError, match="fixed splits"):
        list(LeaveOneDatasetOut(n_repeats=3, fixed_splits={2: [[0], [1]]}).split(X, y, d))


@pytest.mark.integration
def test_authors_splits_apply_to_sstem_and_em(shared_data):
    from kwtl.datasets import load_benchmark

    bench = load_benchmark(shared_data, names=["ssTEM", "EM"])
    fixed = authors_splits(bench, shared_data.parent / "reference" / "splits.json")
    assert sorted(fixed) == [1, 2]
    assert len(fixed[1]) == 10 and all(len(t) == 4 for t in fixed[1])  # ssTEM: 4 of 20
    assert all(len(t) == 33 for t in fixed[2])  # EM: 33 of 165


# ------------------------------------------------------------------------- grid search
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_grid_search_over_selectors_with_leave_one_dataset_out(packed, n_jobs):
    X, y, d = packed
    selectors = [
        ConsistencySelector(),
        EntropySelector(),
        MCDropoutSelector(n_passes=2),
        RandomSelector(),
    ]
    with sklearn.config_context(enable_metadata_routing=True):
        grid = GridSearchCV(
            tiny_method(),
            {"selector": selectors, "n_shots": [1, 2]},
            cv=LeaveOneDatasetOut(n_repeats=2, random_state=0),
            refit=False,
            n_jobs=n_jobs,
            error_score="raise",
        )
        grid.fit(X, y, sample_domain=d)
    results = grid.cv_results_
    assert len(results["params"]) == 8
    n_splits = 3 * 2  # 3 targets x 2 repeats: per-target, per-repeat scores
    scores = np.array([results[f"split{k}_test_score"] for k in range(n_splits)])
    assert scores.shape == (6, 8) and np.all(np.isfinite(scores))
    # each cell is the score of the method fitted on that split with those parameters
    splits = list(LeaveOneDatasetOut(n_repeats=2, random_state=0).split(X, y, d))
    for k, i in [(0, 0), (5, 7), (3, 2)]:
        train, test = splits[k]
        method = clone(tiny_method()).set_params(**results["params"][i])
        method.fit(X[train], y[train], sample_domain=d[train])
        assert scores[k, i] == pytest.approx(method.score(X[test], y[test]), abs=1e-12)


def test_unseeded_random_selection_is_not_cached(packed, tmp_path):
    X, y, d = one_target(packed)
    memory = joblib.Memory(tmp_path, verbose=0)
    draws = {
        tuple(
            map(
                tuple,
                FewShotSegmentation(
                    segmenter=tiny_segmenter(random_state=0),
                    selector=RandomSelector(),
                    n_shots=1,
                    patches_per_shot=3,
                    pl_epochs=1,
                    pl_batch_size=8,
                    finetune_epochs=0,
                    memory=memory,
                )
                .fit(X, y, d)
                .support_coords_.tolist(),
            )
        )
        for _ in range(4)
    }
    assert len(draws) > 1


def test_all_tied_scores_warn(packed):
    X, y, d = one_target(packed)

    class Constant(EntropySelector):
        def _pixel_scores(self, patches, estimator):
            import torch

            return torch.zeros(patches.shape)

    with pytest.warns(RuntimeWarning, match="same Constant score"):
        tiny_method(selector=Constant()).fit(X, y, d)


# ------------------------------------------------------------------------- recipe
def test_the_recipe_is_the_default_fine_tuning_and_grid_searchable(packed):
    from kwtl.few_shot import fine_tune
    from kwtl.models import FineTuneRecipe

    X, y, d = one_target(packed)
    method = tiny_method(finetune_epochs=None, recipe=FineTuneRecipe(steps=3, batch_size=2))
    method.fit(X, y, sample_domain=d)
    assert len(method.segmenter_.history[-1, "batches"]) == 3  # 3 optimiser steps
    # the same step as kwtl.few_shot.fine_tune on the revealed support
    support = method.candidates_.subset(method.support_indices_)
    masks = method.oracle_.reveal_patches(support)
    again = fine_tune(
        method.plft_segmenter_,
        support,
        masks,
        recipe=FineTuneRecipe(steps=3, batch_size=2),
        random_state=method.segmenter_.random_state,
    )
    a, b = method.segmenter_.module_.state_dict(), again.module_.state_dict()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    # nested parameters reach the recipe (GridSearchCV's set_params)
    tuned = clone(method).set_params(recipe__steps=5, recipe__augment=None)
    assert tuned.recipe.steps == 5 and tuned.recipe.augment is None
    assert FewShotSegmentation().recipe is None and FewShotSegmentation().finetune_epochs is None
    with pytest.raises(ValueError, match="not both"):
        tiny_method(recipe=FineTuneRecipe()).fit(X, y, sample_domain=d)
    with pytest.raises(ValueError, match="exactly one"):
        tiny_method(finetune_epochs=None, recipe=FineTuneRecipe(steps=None)).fit(
            X, y, sample_domain=d
        )
