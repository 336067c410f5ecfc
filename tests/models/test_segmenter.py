"""FCRNSegmenter: training, prediction, BatchNorm modes, Reptile, and estimator API."""

import copy
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils import estimator_checks

from kwtl.models import FCRN, FCRNSegmenter
from kwtl.models._fcrn import switch_to_affine


def blobs(n, size=32, seed=0):
    """Bright discs on a dark noisy background, with their masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, masks = [], []
    for _ in range(n):
        m = np.zeros((size, size), bool)
        for _ in range(3):
            cy, cx, r = rng.integers(4, size - 4, 2).tolist() + [rng.integers(2, 6)]
            m |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        img = np.clip(40 + 150 * m + rng.normal(0, 20, m.shape), 0, 255).astype(np.uint8)
        images.append(img)
        masks.append(m)
    return images, masks


def small(**kw):
    params = dict(
        module__width=4,
        patch_size=16,
        stride=8,
        max_epochs=2,
        batch_size=8,
        precision="fp32",
        random_state=0,
    )
    params.update(kw)
    return FCRNSegmenter(**params)


@pytest.fixture(scope="module")
def data():
    return blobs(6)


@pytest.fixture(scope="module")
def fitted(data):
    images, masks = data
    return small(max_epochs=3).fit(images, masks)


# ---------------------------------------------------------------- scikit-learn API
DATA_FREE_CHECKS = [
    "check_parameters_default_constructible",
    "check_get_params_invariance",
    "check_estimator_repr",
    "check_estimator_cloneable",
    "check_do_not_raise_errors_in_init_or_set_params",
]


@pytest.mark.parametrize("check", DATA_FREE_CHECKS)
def test_sklearn_data_free_checks(check):
    getattr(estimator_checks, check)("FCRNSegmenter", FCRNSegmenter())


def test_init_sets_only_parameters_and_skorch_bookkeeping():
    # skorch's NeuralNet itself sets history_, initialized_ and virtual_params_ in __init__;
    # everything else we add must be a plain parameter.
    with pytest.raises(AssertionError) as err:
        estimator_checks.check_no_attributes_set_in_init("FCRNSegmenter", FCRNSegmenter())
    assert "['history_', 'initialized_', 'virtual_params_']" in str(err.value)
    params = FCRNSegmenter().get_params(deep=False)
    for name in ["patch_size", "stride", "bn_mode", "precision", "weight_decay", "random_state"]:
        assert name in params


def test_unfitted_raises(data):
    images, _ = data
    with pytest.raises(NotFittedError):
        FCRNSegmenter().predict(images)


def test_fit_predict_shapes_any_size(fitted):
    odd = [np.zeros((37, 45), np.uint8), np.full((16, 24), 100, np.uint8)]
    proba = fitted.predict_proba(odd)
    assert [p.shape for p in proba] == [(37, 45), (16, 24)]
    assert all(p.dtype == np.float32 and (p >= 0).all() and (p <= 1).all() for p in proba)
    masks = fitted.predict(odd)
    assert all(m.dtype == bool for m in masks)
    assert np.array_equal(masks[0], proba[0] >= 0.5)


def test_training_reduces_loss_and_beats_untrained(data):
    images, masks = data
    seg = small(max_epochs=15, lr=3e-3, module__init="default").fit(images, masks)
    losses = seg.history[:, "train_loss"]
    assert losses[-1] < losses[0]
    untrained = small(module__init="default").initialize()
    assert seg.score(images, masks) > untrained.score(images, masks)


def test_same_seed_same_weights_and_outputs(data):
    images, masks = data
    a, b = small().fit(images, masks), small().fit(images, masks)
    for (k, v), w in zip(a.module_.state_dict().items(), b.module_.state_dict().values()):
        assert torch.equal(v, w), k
    c = small(random_state=1).fit(images, masks)
    assert not torch.equal(a.module_.conv1[0].weight, c.module_.conv1[0].weight)


def test_batch_bn_mode_independent_of_batching(fitted, data):
    images, _ = data
    whole = fitted.predict_proba(images)
    layerwise = clone_with(fitted, max_pixels=32 * 32 * 2).predict_proba(images)
    for a, b in zip(whole, layerwise):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # and both equal one forward pass with train-mode BatchNorm over all images at once
    net = copy.deepcopy(fitted.module_).train()
    x = torch.from_numpy(np.stack(images)).float().div(127.5).sub(1.0)[:, None]
    with torch.no_grad():
        ref = torch.sigmoid(net(x))[:, 0].numpy()
    for a, b in zip(whole, ref):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_running_bn_mode_is_eval_forward(fitted, data):
    images, _ = data
    seg = clone_with(fitted, bn_mode="running")
    net = copy.deepcopy(fitted.module_).eval()
    x = torch.from_numpy(np.stack(images[:2])).float().div(127.5).sub(1.0)[:, None]
    with torch.no_grad():
        ref = torch.sigmoid(net(x))[:, 0].numpy()
    for a, b in zip(seg.predict_proba(images[:2]), ref):
        np.testing.assert_allclose(a, b, atol=1e-5)
    # running stats: each image's output does not depend on the other images
    alone = seg.predict_proba(images[:1])[0]
    np.testing.assert_allclose(alone, ref[0], atol=1e-5)


def clone_with(seg, **params):
    other = pickle.loads(pickle.dumps(seg))
    for k, v in params.items():
        setattr(other, k, v)  # plain attributes: no re-initialisation
    return other


def test_patch_logits_eval_and_mc_dropout(fitted):
    patches = np.random.default_rng(0).integers(0, 255, (5, 16, 16), dtype=np.uint8)
    a = fitted.patch_logits(patches)
    b = fitted.patch_logits(patches[:2])
    assert a.shape == (5, 16, 16)
    torch.testing.assert_close(a[:2], b)  # eval mode: batch independent
    torch.manual_seed(0)
    mc = fitted.patch_logits(patches, mc_dropout=0.5)
    assert not torch.allclose(mc, a)
    assert fitted.module_.dropout.p == 0.0
    with pytest.raises(ValueError, match="divisible by 8"):
        fitted.patch_logits(np.zeros((1, 12, 12), np.uint8))


def test_partial_fit_continues(data):
    images, masks = data
    seg = small(max_epochs=1).fit(images, masks)
    before = copy.deepcopy(seg.module_.state_dict())
    seg.partial_fit(images, masks, epochs=2)
    assert len(seg.history) == 3
    assert not torch.equal(before["conv1.0.weight"], seg.module_.conv1[0].weight)


def test_micro_batches_of_full_size_are_identical(data):
    images, masks = data
    a = small().fit(images, masks)
    b = small(micro_batch_size=8).fit(images, masks)
    for v, w in zip(a.module_.state_dict().values(), b.module_.state_dict().values()):
        torch.testing.assert_close(v, w)
    c = small(micro_batch_size=3).fit(images, masks)
    assert np.isfinite(c.history[-1, "train_loss"])


def test_clone_pickle_and_params_round_trip(fitted, data, tmp_path):
    images, _ = data
    c = clone(fitted)
    assert c.get_params()["patch_size"] == 16 and not c.initialized_
    c.set_params(stride=4, lr=0.5)
    assert c.stride == 4 and c.lr == 0.5
    ref = fitted.predict_proba(images[:2])
    again = pickle.loads(pickle.dumps(fitted))
    for a, b in zip(ref, again.predict_proba(images[:2])):
        np.testing.assert_array_equal(a, b)
    f = tmp_path / "params.pt"
    fitted.save_params(f_params=f)
    fresh = small().initialize()
    fresh.load_params(f_params=f)
    for a, b in zip(ref, fresh.predict_proba(images[:2])):
        np.testing.assert_array_equal(a, b)


def test_load_affine_checkpoint_switches_batchnorm(tmp_path, data):
    images, _ = data
    net = switch_to_affine(FCRN(width=4))
    torch.save(net.state_dict(), tmp_path / "plft.pt")
    seg = small().initialize()
    seg.load_params(f_params=tmp_path / "plft.pt")
    assert seg.module_.conv1[1].affine
    assert len(seg.predict(images[:1])) == 1


def test_meta_fit_reptile_matches_manual_adam(data):
    """One task made of one repeated patch: Reptile with step 1 equals plain inner Adam."""
    image = data[0][0][:16, :16]
    mask = data[1][0][:16, :16]
    seg = small(meta_iterations=1, meta_shots=5, inner_steps=4, inner_lr=1e-3, meta_step=1.0)
    seg.initialize()
    start = copy.deepcopy(seg.module_)
    seg.meta_fit([image], [mask], groups=[0])

    manual = copy.deepcopy(start).train()
    opt = torch.optim.Adam(manual.parameters(), lr=1e-3, weight_decay=5e-4)
    x = torch.from_numpy(np.stack([image] * 5)).float().div(127.5).sub(1.0)[:, None]
    y = torch.from_numpy(np.stack([mask] * 5).astype(np.float32))[:, None]
    from kwtl.models._loss import weighted_bce_with_logits

    for _ in range(4):
        opt.zero_grad()
        weighted_bce_with_logits(manual(x), y).backward()
        opt.step()
    for (name, p), q in zip(seg.module_.named_parameters(), manual.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    # the meta model's BatchNorm buffers are never updated (authors' behaviour)
    assert torch.all(seg.module_.conv2[1].running_mean == 0)
    assert len(seg.meta_history_) == 1


def test_meta_fit_step_size_interpolates(data):
    images, masks = data
    seg = small(meta_iterations=2, inner_steps=2, meta_step=0.0).initialize()
    start = copy.deepcopy(seg.module_.state_dict())
    seg.meta_fit(images, masks, groups=[0, 0, 1, 1, 2, 2])
    for k, v in seg.module_.state_dict().items():
        assert torch.equal(v, start[k]), k
    moved = small(meta_iterations=2, inner_steps=2).meta_fit(images, masks, [0, 0, 1, 1, 2, 2])
    assert not torch.equal(moved.module_.conv1[0].weight, start["conv1.0.weight"])
    assert len(moved.meta_history_) == 2


def test_to_affine(fitted):
    seg = pickle.loads(pickle.dumps(fitted)).to_affine()
    assert all(m.affine for m in seg.module_.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert any(
        p is seg.module_.conv1[1].weight for g in seg.optimizer_.param_groups for p in g["params"]
    )


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="no native bf16")
def test_bf16_precision_trains_and_predicts(data):
    images, masks = data
    seg = small(precision="bf16").fit(images, masks)
    assert seg.module_.conv2[0].weight.is_contiguous(memory_format=torch.channels_last)
    proba = seg.predict_proba(images[:2])
    ref = clone_with(seg, precision="fp32").predict_proba(images[:2])
    assert np.mean([np.abs(a - b).mean() for a, b in zip(proba, ref)]) < 0.05


@pytest.mark.parametrize(
    "make_bad, match",
    [
        (lambda im, m: (im, None), "y is required"),
        (lambda im, m: (im, m[:-1]), "masks but there are"),
        (lambda im, m: (im, [np.zeros((5, 5))] + m[1:]), "has shape"),
        (lambda im, m: ([np.full((32, 32), np.nan)] + im[1:], m), "NaN"),
        (
            lambda im, m: ([np.zeros((8, 8))] + im[1:], [np.zeros((8, 8))] + m[1:]),
            "smaller than the patch",
        ),
    ],
)
def test_fit_bad_input_errors(data, make_bad, match):
    images, masks = data
    X, y = make_bad(list(images), list(masks))
    with pytest.raises(ValueError, match=match):
        small().fit(X, y)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"patch_size": 12}, "multiple of 8"),
        ({"bn_mode": "eval"}, "bn_mode"),
        ({"precision": "fp16"}, "precision"),
        ({"threshold": 1.5}, "threshold"),
    ],
)
def test_bad_parameters(data, params, match):
    images, masks = data
    with pytest.raises(ValueError, match=match):
        small(**params).fit(images, masks)


def test_meta_fit_groups_length_error(data):
    images, masks = data
    with pytest.raises(ValueError, match="one entry per image"):
        small(meta_iterations=1).meta_fit(images, masks, groups=[0, 1])


def test_mc_dropout_proba_equals_full_stochastic_passes(fitted):
    patches = np.random.default_rng(1).integers(0, 255, (6, 16, 16), dtype=np.uint8)
    mode = fitted.module_.dropout.training
    torch.manual_seed(3)
    fast = fitted.mc_dropout_proba(patches, p=0.5, n_passes=4)
    torch.manual_seed(3)
    slow = torch.stack(
        [torch.sigmoid(fitted.patch_logits(patches, mc_dropout=0.5)) for _ in range(4)]
    ).mean(0)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)
    assert fitted.module_.dropout.p == 0.0 and fitted.module_.dropout.training == mode


def test_recalibrate_batchnorm_sets_population_statistics(fitted, data):
    images, _ = data
    seg = pickle.loads(pickle.dumps(fitted)).to_affine()  # fresh running stats 0 / 1
    weights = copy.deepcopy(seg.module_.state_dict())
    seg.recalibrate_batchnorm(images)
    # conv1's BN input is the first convolution of the patches: compare with a direct computation
    from kwtl.datasets import PatchSet

    patches = PatchSet.from_images(images, 16, 8)
    x = torch.from_numpy(patches[np.arange(len(patches))]).float().div(127.5).sub(1)[:, None]
    with torch.no_grad():
        conv = seg.module_.conv1[0](x)
    torch.testing.assert_close(
        seg.module_.conv1[1].running_mean, conv.mean((0, 2, 3)), rtol=1e-4, atol=1e-5
    )
    for k, v in seg.module_.state_dict().items():
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(v, weights[k]), k  # no weight changed
    assert seg.module_.conv1[1].momentum == 0.1


def test_patch_dataset_reads_read_only_arrays_without_warning_or_writing():
    import warnings

    from kwtl.models._segmenter import PatchDataset

    image = np.arange(64, dtype=np.uint8).reshape(8, 8)
    mask = image % 3 == 0
    image.flags.writeable = False
    mask.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on a non-writable array
        x, y = PatchDataset([image], [mask])[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.uint8
    np.testing.assert_array_equal(x[0].numpy(), image)
    np.testing.assert_array_equal(y[0].numpy(), mask.astype(np.float32))
    x[0, 0, 0] = 255  # the tensor owns a copy: the user's array is untouched
    assert image[0, 0] == 0
