"""Leave-one-dataset-out cross-validation with ``sample_domain`` (skada's convention)."""

import json
import numbers
from pathlib import Path

import numpy as np
from sklearn.model_selection import BaseCrossValidator

from ..utils import derive_seed

__all__ = ["LeaveOneDatasetOut", "benchmark_to_Xy", "authors_splits"]


def domain_ids(benchmark):
    """``{dataset name: domain id}``: dataset ``k`` of ``benchmark.datasets`` has id ``k + 1``."""
    return {name: k + 1 for k, name in enumerate(benchmark.datasets)}


def benchmark_to_Xy(benchmark, targets=None, return_index=False):
    """Pack a benchmark into ``X, y, sample_domain`` for :class:`LeaveOneDatasetOut`.

    Following skada's convention, every dataset appears once as a source (label ``+id``)
    and, if it may be a target, once more as a target (label ``-id``); the copies are
    references to the same arrays, so packing costs no memory. Dataset ``k`` of
    ``benchmark.datasets`` gets id ``k + 1``.

    Parameters
    ----------
    benchmark : Bunch
        As returned by :func:`kwtl.datasets.load_benchmark` or
        :func:`kwtl.datasets.make_synthetic_benchmark` (``images``, ``masks``, ``dataset``,
        ``datasets``).
    targets : list of str, optional
        Datasets that may be targets (default: all).
    return_index : bool, default=False
        Also return, for every packed image, its position in ``benchmark.images`` (e.g. to
        look up ``benchmark.names``).

    Returns
    -------
    X, y : object ndarray of images and masks
    sample_domain : ndarray of int
    index : ndarray of int
        Only with ``return_index=True``.

    Examples
    --------
    >>> from kwtl.datasets import make_synthetic_benchmark
    >>> bench = make_synthetic_benchmark(n_images=2, image_size=16, domains=["fluorescence", "em"])
    >>> X, y, d = benchmark_to_Xy(bench)
    >>> d.tolist()
    [1, 1, 2, 2, -1, -1, -2, -2]
    """
    names = list(benchmark.datasets)
    targets = names if targets is None else list(targets)
    unknown = sorted(set(targets) - set(names))
    if unknown:
        raise ValueError(f"unknown target datasets {unknown}; the benchmark has {names}")
    per_image = np.asarray(benchmark.dataset)
    ids = domain_ids(benchmark)
    order = [i for name in names for i in np.flatnonzero(per_image == name)]
    X, y, d, index = [], [], [], []
    for sign, allowed in ((1, names), (-1, targets)):
        for i in order:
            if per_image[i] in allowed:
                X.append(benchmark.images[i])
                y.append(benchmark.masks[i])
                d.append(sign * ids[per_image[i]])
                index.append(i)
    X_arr = np.empty(len(X), dtype=object)
    X_arr[:] = X
    y_arr = np.empty(len(y), dtype=object)
    y_arr[:] = y
    if return_index:
        return X_arr, y_arr, np.asarray(d, dtype=int), np.asarray(index, dtype=int)
    return X_arr, y_arr, np.asarray(d, dtype=int)


class LeaveOneDatasetOut(BaseCrossValidator):
    """Each dataset in turn is the target; its images split into pool and test, repeatedly.

    For target ``t`` and repeat ``r``: train = all source copies of the *other* datasets
    (``sample_domain == +d``, ``d != t``) plus the target pool (a random ``1 - test_size`` of
    the ``sample_domain == -t`` images); test = the remaining target images. This is the
    paper's protocol (80 % pool / 20 % test, 10 repeats). ``sample_domain`` is routed to
    :meth:`split` by scikit-learn's metadata routing (``enable_metadata_routing=True``): the
    splitter requests it through the documented class attribute
    ``__metadata_request__split`` of :class:`sklearn.model_selection.BaseCrossValidator`.

    With :class:`~sklearn.model_selection.GridSearchCV` use ``refit=False``: a refit would
    fit one :class:`~kwtl.FewShotSegmentation` on every target at once, which is not the
    method; the search refuses ``refit=True`` before it runs any split.

    Parameters
    ----------
    n_repeats : int, default=10
        Random pool/test splits per target.
    test_size : float, default=0.2
        Fraction of target images for testing (``floor(test_size * n)``, at least 1), as the
        authors' splits.
    random_state : int or None, default=None
    fixed_splits : dict, optional
        ``{target_domain_id: [test_indices, ...]}``: predefined test sets (positions among that
        target's images, in ``X`` order) used instead of random draws, e.g. the authors' splits
        from :func:`authors_splits`. The first ``n_repeats`` are used.

    Examples
    --------
    >>> import numpy as np
    >>> d = np.array([1, 1, 2, 2, 2, -1, -1, -2, -2, -2])
    >>> cv = LeaveOneDatasetOut(n_repeats=2, test_size=0.4, random_state=0)
    >>> cv.get_n_splits(sample_domain=d)
    4
    >>> train, test = next(cv.split(np.zeros(10), sample_domain=d))
    >>> sorted(d[train].tolist()), d[test].tolist()
    ([-1, 2, 2, 2], [-1])
    """

    __metadata_request__split = {"sample_domain": True}

    def __init__(self, n_repeats=10, test_size=0.2, random_state=None, fixed_splits=None):
        self.n_repeats = n_repeats
        self.test_size = test_size
        self.random_state = random_state
        self.fixed_splits = fixed_splits

    def _targets(self, sample_domain):
        if sample_domain is None:
            raise ValueError(
                "LeaveOneDatasetOut needs sample_domain (enable metadata routing "
                "with sklearn.set_config(enable_metadata_routing=True))"
            )
        d = np.asarray(sample_domain)
        if not np.issubdtype(d.dtype, np.integer):
            raise ValueError(f"sample_domain must be integers, got dtype {d.dtype}")
        targets = sorted(set((-d[d < 0]).tolist()))
        if not targets:
            raise ValueError("sample_domain has no target copies (negative labels)")
        return d, targets

    def _check(self):
        if not isinstance(self.n_repeats, numbers.Integral) or self.n_repeats < 1:
            raise ValueError(f"n_repeats must be a positive integer, got {self.n_repeats!r}")
        if not 0.0 < float(self.test_size) < 1.0:
            raise ValueError(f"test_size must be in (0, 1), got {self.test_size!r}")

    def get_n_splits(self, X=None, y=None, sample_domain=None, groups=None):
        """Number of splits: targets × repeats (``groups`` is accepted and ignored)."""
        self._check()
        return len(self._targets(sample_domain)[1]) * int(self.n_repeats)

    def split_targets(self, sample_domain):
        """``(target_domain_id, repeat)`` of each split, in :meth:`split` order."""
        self._check()
        _, targets = self._targets(sample_domain)
        return [(t, r) for t in targets for r in range(int(self.n_repeats))]

    def split(self, X=None, y=None, sample_domain=None, groups=None):
        """Yield ``(train, test)`` index arrays, target by target, repeat by repeat.

        ``groups`` is accepted (scikit-learn passes it when metadata routing is off) and
        ignored; the splits come from ``sample_domain``.
        """
        self._check()
        d, targets = self._targets(sample_domain)
        _refuse_refit_of_search()
        for t in targets:
            target_idx = np.flatnonzero(d == -t)
            sources = np.flatnonzero((d > 0) & (d != t))
            n = len(target_idx)
            n_test = max(1, int(np.floor(float(self.test_size) * n)))
            if n_test >= n:
                raise ValueError(f"target {t} has {n} images: too few for a pool and a test set")
            for r in range(int(self.n_repeats)):
                test_pos = self._test_positions(t, r, n, n_test)
                is_test = np.zeros(n, dtype=bool)
                is_test[test_pos] = True
                yield np.concatenate([sources, target_idx[~is_test]]), target_idx[is_test]

    def _test_positions(self, target, repeat, n, n_test):
        if self.fixed_splits is not None and target in self.fixed_splits:
            splits = self.fixed_splits[target]
            if repeat >= len(splits):
                raise ValueError(
                    f"target {target} has {len(splits)} fixed splits, "
                    f"n_repeats={self.n_repeats} asks for more"
                )
            pos = np.asarray(splits[repeat], dtype=int)
            if (
                pos.size == 0
                or pos.min() < 0
                or pos.max() >= n
                or len(set(pos.tolist())) != pos.size
            ):
                raise ValueError(
                    f"fixed split {repeat} of target {target} is not a set of "
                    f"distinct positions among its {n} images"
                )
            return pos
        rng = np.random.default_rng(derive_seed(self.random_state, "split", target, repeat))
        return np.sort(rng.permutation(n)[:n_test])

    def __repr__(self):
        return (
            f"LeaveOneDatasetOut(n_repeats={self.n_repeats}, test_size={self.test_size}, "
            f"random_state={self.random_state}"
            + (", fixed_splits=..." if self.fixed_splits is not None else "")
            + ")"
        )


def _refuse_refit_of_search(max_depth=8):
    """Fail before any split runs when a scikit-learn search would refit on every target.

    A search's ``refit=True`` fits one estimator on all the data after the splits, i.e. on
    every target at once, which :class:`~kwtl.FewShotSegmentation` refuses; without this
    check the error would come only after every split had run. The caller is found on the
    stack (scikit-learn passes no such information to a splitter).
    """
    import inspect

    from sklearn.model_selection._search import BaseSearchCV

    frame = inspect.currentframe().f_back
    try:
        for _ in range(max_depth):
            frame = frame.f_back if frame is not None else None
            if frame is None:
                return
            caller = frame.f_locals.get("self")
            if isinstance(caller, BaseSearchCV):
                if caller.refit:
                    raise ValueError(
                        f"{type(caller).__name__}(refit={caller.refit!r}) with "
                        "LeaveOneDatasetOut would refit one model on every target at once; "
                        "use refit=False (cv_results_ holds the table)"
                    )
                return
    finally:
        del frame


def authors_splits(benchmark, path):
    """The authors' 10 fixed test sets for the benchmark's datasets (by domain id).

    ``path`` is their ``splits.json`` (indices into each dataset's sorted file list, which is
    the order :func:`kwtl.datasets.load_benchmark` returns). Datasets whose image count does
    not fit the indices (the substitutes for B39, B5, TNBC) are left out.

    Returns
    -------
    fixed_splits : dict
        ``{domain_id: [test_indices, ...]}`` for :class:`LeaveOneDatasetOut`.
    """
    path = Path(path)
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read the splits file {path}: {err}") from None
    per_image = np.asarray(benchmark.dataset)
    out = {}
    for name, domain in domain_ids(benchmark).items():
        if name not in table:
            continue
        n = int(np.sum(per_image == name))
        tests = [
            np.asarray(table[name]["test"][key], dtype=int)
            for key in sorted(table[name]["test"], key=int)
        ]
        expected = n - len(table[name]["unlabelled"]["0"])
        if any(t.max() >= n for t in tests) or len(tests[0]) != expected:
            continue  # a substitute dataset of another size: the indices do not apply
        out[domain] = tests
    return out
