"""LeaveOneDatasetOut inside scikit-learn's search, with and without metadata routing."""

import numpy as np
import pytest
import sklearn
from sklearn.model_selection import BaseCrossValidator, GridSearchCV

from kwtl import FewShotSegmentation
from kwtl.datasets import make_synthetic_benchmark
from kwtl.model_selection import LeaveOneDatasetOut, benchmark_to_Xy


@pytest.fixture(scope="module")
def packed():
    bench = make_synthetic_benchmark(n_images=3, image_size=32, domains=["fluorescence", "em"])
    return benchmark_to_Xy(bench)


class Exploding(FewShotSegmentation):
    def fit(self, X, y, sample_domain=None, unlabelled=None):  # pragma: no cover - must not run
        raise AssertionError("a split was fitted")


def test_is_a_public_scikit_learn_splitter():
    cv = LeaveOneDatasetOut()
    assert isinstance(cv, BaseCrossValidator)
    routing = cv.get_metadata_routing()
    assert routing.consumes("split", ["sample_domain", "groups"]) == {"sample_domain"}


def test_routing_off_gives_the_helpful_message(packed):
    X, y, _ = packed
    with sklearn.config_context(enable_metadata_routing=False):
        search = GridSearchCV(
            Exploding(), {"n_shots": [1]}, cv=LeaveOneDatasetOut(n_repeats=1), refit=False
        )
        with pytest.raises(ValueError, match="needs sample_domain.*enable_metadata_routing"):
            search.fit(X, y)


def test_refit_is_refused_before_any_split_runs(packed):
    X, y, d = packed
    with sklearn.config_context(enable_metadata_routing=True):
        search = GridSearchCV(Exploding(), {"n_shots": [1]}, cv=LeaveOneDatasetOut(n_repeats=1))
        with pytest.raises(ValueError, match="refit=False"):
            search.fit(X, y, sample_domain=d)


def test_split_outside_a_search_and_groups_ignored(packed):
    X, y, d = packed
    cv = LeaveOneDatasetOut(n_repeats=2, random_state=0)
    a = list(cv.split(X, y, d))
    b = list(cv.split(X, y, sample_domain=d, groups=np.zeros(len(d))))
    assert len(a) == cv.get_n_splits(sample_domain=d, groups=None) == 4
    for (tr_a, te_a), (tr_b, te_b) in zip(a, b):
        np.testing.assert_array_equal(tr_a, tr_b)
        np.testing.assert_array_equal(te_a, te_b)


def test_benchmark_to_Xy_index_names_every_image(packed):
    bench = make_synthetic_benchmark(n_images=3, image_size=32, domains=["fluorescence", "em"])
    X, _, d, index = benchmark_to_Xy(bench, targets=["em"], return_index=True)
    assert len(index) == len(X) == 9  # 6 source copies + 3 target copies
    for x, i in zip(X, index):
        assert x is bench.images[i]
    names = [bench.names[i] for i in index[d < 0]]
    assert names == ["em_000", "em_001", "em_002"]
