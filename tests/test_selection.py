"""Selectors: scores against independent computations, aggregation, and a shared template."""
import copy

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps
from scipy.special import entr
from scipy.stats import spearmanr
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from kwtl.datasets import PatchSet
from kwtl.models import FCRNSegmenter
from kwtl.selection import (
    BaseSelector,
    ConsistencySelector,
    EntropySelector,
    MCDropoutSelector,
    RandomSelector,
)
from kwtl.utils import derive_seed

PATCH, STRIDE = 16, 8


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny networks gain nothing from threads, and OpenMP spinning makes 2 threads very slow
    # when the CPU is shared with other jobs
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _images():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32), dtype=np.uint8) for _ in range(3)]
    images.append((rng.integers(0, 256, (32, 40)) // 4 + 60).astype(np.uint8))  # low contrast
    images.append(np.full((24, 24), 90, np.uint8))                              # flat
    return images


def _calibrated_segmenter(precision="fp32"):
    """Tiny initialised FCRN whose BatchNorm running statistics fit the test images.

    With the paper's N(0, 1) init and untouched running statistics the logits are ~1e5 and
    every probability saturates; one calibration pass (cumulative BN averages) brings the
    logits to a few units, so that the scores vary between patches.
    """
    seg = FCRNSegmenter(module__width=4, patch_size=PATCH, stride=STRIDE, precision=precision,
                        random_state=0).initialize()
    pool = PatchSet.from_images(_images(), PATCH, STRIDE)
    x = torch.from_numpy(pool[np.arange(len(pool))]).float().div(127.5).sub(1.0)[:, None]
    module = seg.module_
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    module.train()
    with torch.no_grad():
        module(x)
    module.eval()
    return seg


@pytest.fixture(scope="module")
def seg():
    return _calibrated_segmenter()


@pytest.fixture(scope="module")
def images():
    return _images()


@pytest.fixture(scope="module")
def pool(images):
    return PatchSet.from_images(images, PATCH, STRIDE)


def _forward(seg, patches, dropout=None):
    """Plain fp32 forward of the module in eval mode, float64 logits (k, h, w)."""
    module = seg.module_
    x = torch.from_numpy(np.asarray(patches)).float() / 127.5 - 1.0
    module.eval()
    try:
        if dropout is not None:
            module.dropout.p = dropout
            module.dropout.train()
        with torch.no_grad():
            z = module(x[:, None])[:, 0]
    finally:
        module.dropout.p = 0.0
        module.eval()
    return z.double().numpy()


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _bce_with_logits(z, y):
    return np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))


def _binary_entropy(p):
    return entr(p) + entr(1.0 - p)


# ---------------------------------------------------------------------- independent checks
def _manual_consistency(seg, patches, magnitude=1.3, names=("autocontrast", "brightness",
                                                             "sharpness"), threshold=0.5):
    pil_ops = {
        "autocontrast": lambda im: ImageOps.autocontrast(im),
        "brightness": lambda im: ImageEnhance.Brightness(im).enhance(magnitude),
        "sharpness": lambda im: ImageEnhance.Sharpness(im).enhance(magnitude),
    }
    z_clean = _forward(seg, patches)
    reference = (_sigmoid(z_clean) >= threshold).astype(np.float64)
    total = np.zeros_like(z_clean)
    for name in names:
        augmented = np.stack([np.asarray(pil_ops[name](Image.fromarray(p))) for p in patches])
        total += _bce_with_logits(_forward(seg, augmented), reference)
    return total


def test_consistency_matches_manual_pil_computation(seg, pool):
    patches = pool[np.arange(len(pool))]
    expected = _manual_consistency(seg, patches)
    selector = ConsistencySelector()
    scores = selector.score(pool, seg)
    assert scores.dtype == np.float64 and scores.shape == (len(pool),)
    np.testing.assert_allclose(scores, expected.mean(axis=(1, 2)), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(selector.pixel_scores(pool, seg), expected, rtol=1e-4, atol=1e-5)
    assert scores.std() > 0.01  # the calibrated net gives informative scores


def test_consistency_options_match_manual(seg, pool):
    patches = pool[np.arange(10)]
    expected = _manual_consistency(seg, patches, magnitude=1.7, names=("sharpness",),
                                   threshold=0.3)
    selector = ConsistencySelector(magnitude=1.7, augmentations=["sharpness"], threshold=0.3,
                                   reduction="sum")
    np.testing.assert_allclose(selector.score(patches, seg), expected.sum(axis=(1, 2)),
                               rtol=1e-4)


def test_consistency_custom_augmentation_and_validation(seg, pool):
    patches = pool[np.arange(6)]
    identity = ConsistencySelector(augmentations=[lambda batch, m: batch.copy()])
    z = _forward(seg, patches)
    expected = _bce_with_logits(z, (_sigmoid(z) >= 0.5).astype(float)).mean(axis=(1, 2))
    np.testing.assert_allclose(identity.score(patches, seg), expected, rtol=1e-4)
    with pytest.raises(ValueError, match="autocontrast.*brightness.*sharpness"):
        ConsistencySelector(augmentations=("rotate",)).score(patches, seg)
    with pytest.raises(ValueError, match="at least one"):
        ConsistencySelector(augmentations=()).score(patches, seg)
    for bad in (0, -1.3, float("nan")):
        with pytest.raises(ValueError, match="magnitude"):
            ConsistencySelector(magnitude=bad).score(patches, seg)
    with pytest.raises(ValueError, match="threshold"):
        ConsistencySelector(threshold=1.0).score(patches, seg)
    with pytest.raises(ValueError, match="uint8 batch"):
        ConsistencySelector(augmentations=[lambda b, m: b.astype(float)]).score(patches, seg)


def test_consistency_one_forward_call_per_chunk(seg, pool, monkeypatch):
    calls = []
    original = seg.patch_logits

    def spy(patches, mc_dropout=None):
        calls.append(len(patches))
        return original(patches, mc_dropout=mc_dropout)

    monkeypatch.setattr(seg, "patch_logits", spy)
    ConsistencySelector(batch_size=7).score(pool, seg)
    n_chunks = -(-len(pool) // 7)
    assert len(calls) == n_chunks
    assert max(calls) == 4 * 7  # clean + 3 augmented copies, never the whole pool


def test_entropy_matches_numpy(seg, pool):
    patches = pool[np.arange(len(pool))]
    expected = _binary_entropy(_sigmoid(_forward(seg, patches)))
    selector = EntropySelector()
    np.testing.assert_allclose(selector.score(pool, seg), expected.mean(axis=(1, 2)),
                               rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(selector.pixel_scores(pool, seg), expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(EntropySelector(reduction="max").score(pool, seg),
                               expected.max(axis=(1, 2)), rtol=1e-4, atol=1e-7)


def test_entropy_is_stable_for_saturated_logits():
    seg = FCRNSegmenter(module__width=4, patch_size=PATCH, stride=STRIDE, precision="fp32",
                        random_state=0).initialize()  # uncalibrated: logits ~ 1e5
    scores = EntropySelector().score(_images(), seg)
    assert np.isfinite(scores).all() and (scores >= 0).all()


def test_mc_dropout_matches_manual_loop(seg, pool):
    patches = pool[np.arange(len(pool))]
    n_passes, p, chunk = 4, 0.5, seg.inference_batch_size
    selector = MCDropoutSelector(n_passes=n_passes, p=p, random_state=3)
    scores = selector.score(pool, seg)
    expected = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(3, "mc-dropout"))
        for start in range(0, len(patches), chunk):
            batch = patches[start : start + chunk]
            mean = np.mean([_sigmoid(_forward(seg, batch, dropout=p)) for _ in range(n_passes)],
                           axis=0)
            expected.append(_binary_entropy(mean).mean(axis=(1, 2)))
    np.testing.assert_allclose(scores, np.concatenate(expected), rtol=1e-4, atol=1e-6)
    # dropout really acts: the MC entropy differs from the deterministic entropy
    assert not np.allclose(scores, EntropySelector().score(pool, seg), rtol=1e-3)


def test_mc_dropout_seeding(seg, pool):
    state = torch.random.get_rng_state()
    a = MCDropoutSelector(n_passes=3, random_state=0).score(pool, seg)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    b = MCDropoutSelector(n_passes=3, random_state=0).score(pool, seg)
    c = MCDropoutSelector(n_passes=3, random_state=1).score(pool, seg)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # another chunking gives other, equally distributed draws: reproducible for that chunking,
    # and equal to the first in distribution (compare mean statistics)
    d = MCDropoutSelector(n_passes=3, random_state=0, batch_size=5).score(pool, seg)
    np.testing.assert_array_equal(
        d, MCDropoutSelector(n_passes=3, random_state=0, batch_size=5).score(pool, seg))
    assert not np.array_equal(a, d)
    assert abs(a.mean() - d.mean()) < 0.1 * a.mean()
    # unseeded: draws from (and advances) the global generator
    torch.manual_seed(0)
    e = MCDropoutSelector(n_passes=3).score(pool, seg)
    assert not np.array_equal(e, MCDropoutSelector(n_passes=3).score(pool, seg))


def test_mc_dropout_validation(seg, pool):
    for params in ({"p": 0.0}, {"p": 1.0}, {"n_passes": 0}, {"n_passes": 2.5}):
        with pytest.raises(ValueError):
            MCDropoutSelector(**params).score(pool, seg)


def test_random_is_uniform_without_replacement(pool):
    n = len(pool)
    first = np.zeros(n)
    for seed in range(400):
        picked = RandomSelector(random_state=seed).select(pool, 5, None)
        assert len(set(picked.tolist())) == 5
        first[picked] += 1
    expected = 400 * 5 / n
    assert np.all(np.abs(first - expected) < 6 * np.sqrt(expected))
    everything = RandomSelector(random_state=0).select(pool, n, None)
    np.testing.assert_array_equal(np.sort(everything), np.arange(n))
    assert not np.array_equal(everything, np.arange(n))
    # unseeded draws differ between calls
    assert not np.array_equal(RandomSelector().score(pool, None), RandomSelector().score(pool, None))


def test_random_image_unit_gives_images_equal_chances(images):
    # image 0 has 9 patches, the 24x24 flat image only 4: both must be equally likely
    pool = PatchSet.from_images(images, PATCH, STRIDE)
    counts = np.zeros(len(images))
    for seed in range(500):
        counts[RandomSelector(unit="image", random_state=seed).select(pool, 1, None)] += 1
    expected = 500 / len(images)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))


def test_random_never_calls_the_network(images):
    class Exploding:
        patch_size, stride, inference_batch_size = PATCH, STRIDE, 16

        def patch_logits(self, *args, **kwargs):  # pragma: no cover - must not run
            raise AssertionError("RandomSelector ran the network")

    picked = RandomSelector(random_state=0).select(images, 3, Exploding())
    assert picked.shape == (3,)
    with pytest.raises(ValueError, match="estimator"):
        RandomSelector().score(images, None)
    with pytest.raises(NotImplementedError):
        RandomSelector().pixel_scores(images, Exploding())


# ---------------------------------------------------------------------- image-level units
@pytest.mark.parametrize("make", [ConsistencySelector, EntropySelector,
                                  lambda **kw: MCDropoutSelector(n_passes=2, random_state=0, **kw)])
def test_image_unit_aggregates_patch_scores(make, seg, pool, images):
    owners = pool.coords[:, 0]
    maps = make().pixel_scores(pool, seg)
    patch_mean, patch_sum, patch_max = (maps.mean(axis=(1, 2)), maps.sum(axis=(1, 2)),
                                        maps.max(axis=(1, 2)))

    def top_decile(pixels):
        return np.quantile(pixels.reshape(len(pixels), -1), 0.9, axis=1)

    custom = top_decile(maps)
    for reduction, values, agg in [("mean", patch_mean, np.mean), ("sum", patch_sum, np.sum),
                                   ("max", patch_max, np.max), (top_decile, custom, np.mean)]:
        got = make(unit="image", reduction=reduction).score(images, seg)
        expected = [agg(values[owners == i]) for i in range(len(images))]
        assert got.shape == (len(images),)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(make(reduction=reduction).score(pool, seg), values,
                                   rtol=1e-5, atol=1e-6)
    picked = make(unit="image").select(images, 2, seg)
    assert set(picked.tolist()) <= set(range(len(images)))


def test_image_unit_image_without_patches_ranks_last(seg, pool):
    subset = pool.subset(pool.coords[:, 0] != 1)  # image 1 keeps no patch
    for selector in (EntropySelector(unit="image"), RandomSelector(unit="image", random_state=0),
                     EntropySelector(unit="image", reduction="max")):
        scores = selector.score(subset, seg)
        assert scores[1] == -np.inf and np.isfinite(np.delete(scores, 1)).all()
        assert selector.select(subset, len(pool.arrays), seg)[-1] == 1


def test_callable_reduction_shape_is_checked(seg, pool):
    with pytest.raises(ValueError, match="one value per patch"):
        EntropySelector(reduction=lambda maps: maps.mean()).score(pool, seg)


# ---------------------------------------------------------------------- shared template
SELECTORS = {
    "consistency": lambda **kw: ConsistencySelector(**kw),
    "entropy": lambda **kw: EntropySelector(**kw),
    "mc_dropout": lambda **kw: MCDropoutSelector(n_passes=2, **kw),
    "random": lambda **kw: RandomSelector(**kw),
}
DETERMINISTIC = ["consistency", "entropy"]
NETWORK = ["consistency", "entropy", "mc_dropout"]


@pytest.fixture(params=sorted(SELECTORS))
def name(request):
    return request.param


def test_template_is_an_estimator(name):
    selector = SELECTORS[name](random_state=7, unit="image", batch_size=3)
    assert isinstance(selector, BaseSelector)
    params = selector.get_params()
    assert params["random_state"] == 7 and params["unit"] == "image" and params["batch_size"] == 3
    twin = clone(selector)
    assert twin is not selector and twin.get_params() == params
    assert repr(twin) == repr(selector)
    assert selector.set_params(reduction="max") is selector and selector.reduction == "max"
    assert not hasattr(selector, "scores_")
    # __init__ validates nothing; use does
    bad = SELECTORS[name](unit="pixel", reduction="median")
    assert bad.unit == "pixel"


def test_template_select_sets_scores_and_orders(name, seg, pool):
    selector = SELECTORS[name](random_state=0)
    picked = selector.select(pool, 5, seg)
    assert picked.dtype == np.intp and picked.shape == (5,)
    scores = selector.scores_
    assert scores.shape == (len(pool),) and scores.dtype == np.float64
    np.testing.assert_array_equal(scores, SELECTORS[name](random_state=0).score(pool, seg))
    assert np.all(np.diff(scores[picked]) <= 0)
    assert scores[picked[-1]] >= np.delete(scores, picked).max()


def test_template_n_equal_to_pool_is_a_permutation(name, seg, pool):
    picked = SELECTORS[name](random_state=0).select(pool, len(pool), seg)
    np.testing.assert_array_equal(np.sort(picked), np.arange(len(pool)))


def test_template_bad_n(name, seg, pool):
    selector = SELECTORS[name](random_state=0)
    with pytest.raises(ValueError, match=rf"more shots than candidates.*{len(pool)} candidate"):
        selector.select(pool, len(pool) + 1, seg)
    with pytest.raises(ValueError, match=r"only 5 candidate images"):
        SELECTORS[name](unit="image", random_state=0).select(pool, 6, seg)
    for n in (0, -2, 1.5, "3", True, None):
        with pytest.raises(ValueError, match="positive integer"):
            selector.select(pool, n, seg)


def test_template_empty_pool(name, seg):
    selector = SELECTORS[name](random_state=0)
    with pytest.raises(ValueError, match="empty"):
        selector.select(np.empty((0, PATCH, PATCH), np.uint8), 1, seg)
    with pytest.raises(ValueError, match="empty"):
        selector.score(PatchSet([np.zeros((32, 32), np.uint8)], np.empty((0, 3)), PATCH), seg)
    with pytest.raises(ValueError, match="empty"):
        selector.score([], seg)


def test_template_bad_parameters(name, seg, pool):
    for params in ({"unit": "pixel"}, {"reduction": "median"}, {"batch_size": 0}):
        with pytest.raises(ValueError, match=next(iter(params))):
            SELECTORS[name](**params).score(pool, seg)
    with pytest.raises(ValueError, match="wrap it in a list"):  # one RGB image, not H images
        SELECTORS[name]().score(np.zeros((2 * PATCH, 2 * PATCH, 3), np.uint8), seg)


def test_template_stack_is_images_cut_into_patches(name, seg, images):
    """An (n, H, W) stack means n images everywhere in kwtl: cut into the grid, any dtype."""
    same = [im for im in images if im.shape == images[0].shape]
    stack = np.stack(same)
    expected = SELECTORS[name](random_state=0).score(same, seg)
    got = SELECTORS[name](random_state=0).score(stack, seg)
    assert len(got) > len(stack)  # patches, not whole images
    np.testing.assert_array_equal(got, expected)
    as_float = SELECTORS[name](random_state=0).score(stack.astype(np.float32), seg)
    np.testing.assert_array_equal(as_float, expected)  # 8-bit values in float: same picture


def test_template_unfitted_estimator(name, pool):
    unfitted = FCRNSegmenter(module__width=4, patch_size=PATCH, stride=STRIDE, precision="fp32")
    selector = SELECTORS[name](random_state=0)
    if name == "random":  # needs no network at all
        assert selector.select(pool, 2, unfitted).shape == (2,)
    else:
        with pytest.raises(NotFittedError):
            selector.select(pool, 2, unfitted)


def test_template_reproducible(name, seg, pool):
    a = SELECTORS[name](random_state=42).select(pool, 8, seg)
    b = clone(SELECTORS[name](random_state=42)).select(pool, 8, seg)
    np.testing.assert_array_equal(a, b)


def test_template_inputs_agree(name, seg, pool, images):
    """Images, the equivalent PatchSet and the stacked patches give the same scores."""
    stack = pool[np.arange(len(pool))]
    from_pool = SELECTORS[name](random_state=0).score(pool, seg)
    np.testing.assert_array_equal(SELECTORS[name](random_state=0).score(images, seg), from_pool)
    np.testing.assert_array_equal(SELECTORS[name](random_state=0).score(stack, seg), from_pool)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_template_batch_size_does_not_change_scores(name, seg, pool):
    reference = SELECTORS[name]().score(pool, seg)
    for batch_size in (1, 5, 1000):
        np.testing.assert_allclose(SELECTORS[name](batch_size=batch_size).score(pool, seg),
                                   reference, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", NETWORK)
def test_template_streams_in_chunks(name, seg, pool):
    class CountingPatchSet(PatchSet):
        largest = 0

        def __getitem__(self, index):
            out = super().__getitem__(index)
            if out.ndim == 3:
                CountingPatchSet.largest = max(CountingPatchSet.largest, len(out))
            return out

    counting = CountingPatchSet(pool.arrays, pool.coords, pool.patch_size)
    scores = SELECTORS[name](batch_size=4, random_state=0).score(counting, seg)
    assert CountingPatchSet.largest == 4 and scores.shape == (len(pool),)


@pytest.mark.parametrize("name", NETWORK)
def test_template_ties_break_by_lower_index(name, seg, pool):
    constant = SELECTORS[name](reduction=lambda maps: np.zeros(len(maps)), random_state=0)
    np.testing.assert_array_equal(constant.select(pool, 6, seg), np.arange(6))


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_template_identical_patches_tie(name, seg, pool):
    stack = np.repeat(pool[np.arange(1)], 6, axis=0)
    stack[3] = pool[10]
    selector = SELECTORS[name]()
    scores = selector.score(stack, seg)
    assert len(np.unique(np.delete(scores, 3))) == 1
    picked = selector.select(stack, 6, seg)
    rest = [i for i in range(6) if i != 3]
    expected = [3] + rest if scores[3] > scores[0] else rest + [3]
    np.testing.assert_array_equal(picked, expected)


@pytest.mark.parametrize("name", NETWORK)
def test_template_pixel_scores_reduce_to_scores(name, seg, pool):
    selector = SELECTORS[name](random_state=0)
    maps = selector.pixel_scores(pool, seg)
    assert maps.dtype == np.float32 and maps.shape == (len(pool), PATCH, PATCH)
    np.testing.assert_allclose(maps.mean(axis=(1, 2)), selector.score(pool, seg),
                               rtol=1e-5, atol=1e-7)
    if name in DETERMINISTIC:
        np.testing.assert_allclose(selector.pixel_scores(pool, seg, indices=[7, 2]),
                                   maps[[7, 2]], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="out of range"):
        selector.pixel_scores(pool, seg, indices=[len(pool)])


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(),
                    reason="no native bf16 support on this CPU")
@pytest.mark.parametrize("name", NETWORK)
def test_bf16_scores_rank_like_fp32(name, seg, pool):
    seg16 = copy.deepcopy(seg)
    seg16.precision = "bf16"
    fp32 = SELECTORS[name](random_state=0).score(pool, seg)
    bf16 = SELECTORS[name](random_state=0).score(pool, seg16)
    assert spearmanr(fp32, bf16)[0] > 0.9
