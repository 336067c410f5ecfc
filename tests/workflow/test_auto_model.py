"""choose_model: the label-free choice of the released model to start from."""

import warnings

import numpy as np
import pytest
import torch

from kwtl.datasets import make_cells
from kwtl.metrics import iou_score
from kwtl.models import FCRNSegmenter
from kwtl.pseudo_label import PseudoLabeler
from kwtl.workflow import IMPLAUSIBLE_FOREGROUND, choose_model
from kwtl.workflow._auto import foreground_fraction


def _constant(value, seed=0):
    """A tiny segmenter whose prediction is everywhere foreground (value > 0) or not."""
    seg = FCRNSegmenter(module__width=4, patch_size=16, random_state=seed).initialize()
    with torch.no_grad():
        seg.module_.conv8.weight.zero_()
        seg.module_.conv8.bias.fill_(value)
    return seg


class _Oracle(FCRNSegmenter):
    """Predicts the pseudo-labels themselves: perfect agreement by construction."""

    def predict(self, X):
        return list(PseudoLabeler().fit_transform(X))


@pytest.fixture(scope="module")
def images():
    x, _ = make_cells(3, 32, domain="fluorescence", random_state=0)
    return x


def test_agreement_and_foreground_match_an_independent_computation(images):
    everything, nothing = _constant(20.0), _constant(-20.0)
    oracle = _Oracle(module__width=4, patch_size=16).initialize()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the chosen model is plausible: no warning
        result = choose_model(images, [everything, nothing, oracle], progress=False)
    assert result.choice is oracle
    pseudo = PseudoLabeler().fit_transform(images)
    fraction = np.mean([p.mean() for p in pseudo])
    rows = result.table.set_index("model")
    assert list(result.table["agreement"]) == sorted(result.table["agreement"], reverse=True)
    assert list(rows.index) == ["_Oracle 2", "FCRNSegmenter 0", "FCRNSegmenter 1"]
    assert rows.loc["_Oracle 2", "agreement"] == pytest.approx(1.0)
    expected_all = np.mean([iou_score(p, np.ones_like(p)) for p in pseudo])
    assert expected_all == pytest.approx(fraction, abs=1e-3)  # IoU with all = PL fraction
    assert rows.loc["FCRNSegmenter 0", "agreement"] == pytest.approx(expected_all)
    assert rows.loc["FCRNSegmenter 1", "agreement"] < 1e-3
    assert sorted(result.table["foreground"]) == pytest.approx([0.0, fraction, 1.0])
    assert result.pseudo_label_foreground == pytest.approx(fraction)


def test_an_implausible_choice_is_warned_about(images):
    with pytest.warns(UserWarning, match=r"predicts 100.0% of the pixels.*more than 60%"):
        result = choose_model(images, [_constant(-20.0), _constant(20.0)], progress=False)
    assert result.table["foreground"].iloc[0] == 1.0


def test_max_images_takes_evenly_spaced_images(images):
    result = choose_model(images, [_constant(20.0)], max_images=2, progress=False)
    assert result.images == [0, 2]


def test_foreground_fraction_and_bad_arguments(images):
    assert foreground_fraction(_constant(20.0), images) == 1.0
    assert foreground_fraction(_constant(-20.0), images) == 0.0
    assert IMPLAUSIBLE_FOREGROUND == 0.6
    with pytest.raises(ValueError, match="candidates is empty"):
        choose_model(images, [])
    with pytest.raises(ValueError, match="max_images"):
        choose_model(images, [_constant(1.0)], max_images=0)


@pytest.mark.integration
def test_released_models_on_fluorescence_nuclei_prefer_a_fluorescence_model():
    """The issue's case: on fluorescence nuclei the EM model marks most pixels as cells."""
    from pathlib import Path

    shared = Path(__file__).resolve().parents[2] / ".." / "shared"
    if not (shared / "weights").is_dir() or not (shared / "data").is_dir():
        pytest.skip("the shared data and weights are absent")
    import os

    from kwtl.datasets import load_images

    os.environ.setdefault("KWTL_WEIGHTS", str(shared / "weights"))
    folder = shared / "data" / "B39_sub_DSB2018_U2OS" / "images"
    x, _ = load_images(folder)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = choose_model(
            x,
            ["authors:EM", "authors:ssTEM", "authors:B5", "authors:TNBC"],
            max_images=4,
            progress=False,
        )
    assert result.choice == "authors:B5"
    assert result.table.set_index("model").loc["authors:EM", "foreground"] > 0.5
