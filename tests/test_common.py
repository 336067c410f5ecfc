"""scikit-learn's estimator checks over every public estimator of kwtl, found automatically.

A new public estimator (any ``BaseEstimator`` subclass named in a subpackage's ``__all__``)
is checked without editing this file; a check it fails must be listed, with the reason, in
:func:`expected_failed_checks` (strict: a listed check that passes fails the suite too).
"""

import importlib
import inspect
import pkgutil

import pytest
from sklearn.base import BaseEstimator
from sklearn.utils import estimator_checks
from sklearn.utils.estimator_checks import parametrize_with_checks

import kwtl
from kwtl.selection import BaseSelector


def public_estimators():
    """One default instance of every public, concrete BaseEstimator of kwtl, by name."""
    modules = [kwtl] + [
        importlib.import_module(f"kwtl.{info.name}")
        for info in pkgutil.iter_modules(kwtl.__path__)
        if info.ispkg and not info.name.startswith("_")
    ]
    found = {}
    for module in modules:
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseEstimator)
                and not inspect.isabstract(obj)
            ):
                found[obj.__name__] = obj
    return [found[name]() for name in sorted(found)]


ESTIMATORS = public_estimators()

#: Checks that fit (or score) on a tabular ``X`` of shape (n_samples, n_features).
TABULAR_CHECKS = (
    "check_complex_data",
    "check_dict_unchanged",
    "check_dont_overwrite_parameters",
    "check_dtype_object",
    "check_estimator_sparse_array",
    "check_estimator_sparse_matrix",
    "check_estimator_sparse_tag",
    "check_estimators_dtypes",
    "check_estimators_empty_data_messages",
    "check_estimators_fit_returns_self",
    "check_estimators_nan_inf",
    "check_estimators_overwrite_params",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator",
    "check_fit2d_1feature",
    "check_fit2d_1sample",
    "check_fit2d_predict1d",
    "check_fit_check_is_fitted",
    "check_fit_idempotent",
    "check_fit_score_takes_y",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_n_features_in",
    "check_n_features_in_after_fitting",
    "check_pipeline_consistency",
    "check_positive_only_tag_during_fit",
    "check_readonly_memmap_input",
)
IMAGES = (
    "kwtl's estimators take a list of 2-D images; a 2-D array is one image, which they "
    "refuse with an error that says to wrap it in a list (by design)"
)
NO_FIT = (
    "a selector has no fit: it scores a pool with a fitted segmenter "
    "(score/select, as in scikit-activeml)"
)
NO_FIT_PARAMETERS = (
    "a parameter object with no fit: FineTuneRecipe trains a segmenter it is "
    "given, PatchAugmenter transforms patches; BaseEstimator gives them "
    "get_params/set_params so grid searches reach their parameters"
)
PARAMETER_OBJECTS = ("FineTuneRecipe", "PatchAugmenter")
#: Checks that fail for one estimator only, with the reason.
SPECIFIC = {
    "FCRNSegmenter": {
        "check_no_attributes_set_in_init": "skorch.NeuralNet.__init__ sets history_ and "
        "initialized_ (skorch's design)",
        "check_set_params": "skorch.NeuralNet.set_params re-initialises the module and "
        "rejects values of the wrong type for virtual parameters",
    },
}
#: Tabular checks that pass for one estimator all the same, with the reason.
PASSING = {
    # the pre-flight check refuses a sparse X with the error sklearn expects of an estimator
    # whose tags say it takes no sparse input
    "FewShotSegmentation": ("check_estimator_sparse_tag",),
}


def expected_failed_checks(estimator):
    """``{check name: why it fails}`` for ``estimator``."""
    name = type(estimator).__name__
    no_fit = NO_FIT_PARAMETERS if name in PARAMETER_OBJECTS else NO_FIT
    reason = no_fit if isinstance(estimator, BaseSelector) or name in PARAMETER_OBJECTS else IMAGES
    table = {check: reason for check in TABULAR_CHECKS}
    if isinstance(estimator, BaseSelector) or name in PARAMETER_OBJECTS:
        table["check_fit1d"] = reason
    if name in PARAMETER_OBJECTS:  # no fit and no score methods: nothing to take y
        del table["check_fit_score_takes_y"]
    table.update(SPECIFIC.get(name, {}))
    for check in PASSING.get(name, ()):
        del table[check]
    return table


@parametrize_with_checks(
    ESTIMATORS, expected_failed_checks=expected_failed_checks, xfail_strict=True
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


#: Checks that need no data: they run for every estimator, whatever its input tags (an
#: estimator whose tags say "not tabular", like PseudoLabeler, gets no check above).
API_CHECKS = (
    "check_estimator_cloneable",
    "check_estimator_repr",
    "check_get_params_invariance",
    "check_no_attributes_set_in_init",
    "check_parameters_default_constructible",
    "check_do_not_raise_errors_in_init_or_set_params",
    "check_set_params",
)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("check", API_CHECKS)
def test_api_checks_without_data(estimator, check):
    reason = SPECIFIC.get(type(estimator).__name__, {}).get(check)
    if reason is not None:
        with pytest.raises(Exception):  # still fails, for the reason given in SPECIFIC
            getattr(estimator_checks, check)(type(estimator).__name__, estimator)
        return
    getattr(estimator_checks, check)(type(estimator).__name__, estimator)


def test_discovery_finds_every_kind_of_estimator():
    names = {type(e).__name__ for e in ESTIMATORS}
    assert {
        "FewShotSegmentation",
        "FCRNSegmenter",
        "PseudoLabeler",
        "ConsistencySelector",
        "RandomSelector",
    } <= names
    assert "BaseSelector" not in names and "PixelSelector" not in names  # abstract
