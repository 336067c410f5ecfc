"""The label-free selectors inside FewShotSegmentation, starting from a fitted segmenter
(the way the authors' PLFT weights are used: no sources, no PLFT)."""

import pytest
from tiny import tiny_segmenter

from kwtl import FewShotSegmentation
from kwtl.datasets import make_cells
from kwtl.selection import (
    ConsistencySelector,
    ForegroundGate,
    RepresentativeSelector,
    StratifiedSelector,
)


@pytest.mark.parametrize(
    "selector",
    [
        ForegroundGate(),
        ForegroundGate(ConsistencySelector()),
        StratifiedSelector(max_per_image=1),
        ForegroundGate(RepresentativeSelector(n_clusters=3)),
    ],
)
def test_fit_from_pretrained_segmenter(selector):
    images, masks = make_cells(3, 32, domain="em", random_state=1)
    seg = (
        tiny_segmenter(module__init="paper", lr=1e-4, batch_size=4, random_state=0)
        .initialize()
        .to_affine()
    )
    method = FewShotSegmentation(
        seg,
        pseudo_labeler=None,
        selector=selector,
        n_shots=1,
        patches_per_shot=3,
        pl_epochs=0,
        finetune_epochs=1,
        switch_affine=False,
        recalibrate_batchnorm=False,
        random_state=0,
    )
    method.fit(images, masks)  # sample_domain=None: every image is target
    assert len(method.support_indices_) == 3
    assert len(method.oracle_.revealed_) == 3  # only the selected patches were read
    again = FewShotSegmentation(**method.get_params(deep=False)).fit(images, masks)
    assert again.support_indices_.tolist() == method.support_indices_.tolist()


def test_runner_registry_builds_label_free_selectors():
    from kwtl.selection import make_selector
    from kwtl.selection._registry import LABEL_FREE_SELECTORS

    for name in LABEL_FREE_SELECTORS:
        sel = make_selector(name, magnitude=1.7, random_state=3)
        assert sel.random_state == 3
    assert make_selector("gate_consistency", magnitude=1.7).selector.magnitude == 1.7
    with pytest.raises(ValueError, match="gate_random"):
        make_selector("nope")


@pytest.mark.parametrize(
    "name", ["gate_consistency", "gate_representative", "stratified_consistency"]
)
def test_registry_compositions_take_dense_and_unit(name):
    from kwtl.selection import make_selector

    sel = make_selector(name, dense=True, unit="image", random_state=1)
    assert sel.dense is True and sel.unit == "image" and sel.random_state == 1
    inner = sel.selector
    # every part that measures pixels scores whole images when asked to
    assert inner.get_params().get("dense", True) is True
    plain = make_selector(name)
    assert plain.dense is False and plain.unit == "patch"


@pytest.mark.parametrize("name", ["object_richness", "typicality", "spread_entropy"])
def test_spread_compositions_pass_dense_to_their_inner_selector(name):
    from kwtl.selection import SpreadSelector, make_selector

    sel = make_selector(name, dense=True, unit="image", random_state=1)
    assert isinstance(sel, SpreadSelector) and sel.unit == "image" and sel.random_state == 1
    assert sel.selector.dense is True
    assert make_selector(name).selector.dense is False
    if name == "spread_entropy":
        from kwtl.selection import EntropySelector

        assert isinstance(sel.selector, EntropySelector)
