import numpy as np
import pytest

from kwtl.datasets import SYNTHETIC_DOMAINS, make_cells, make_synthetic_benchmark

BRIGHT_FOREGROUND = {"fluorescence", "fluorescence_dense"}


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic_benchmark(n_images=6, image_size=96, random_state=0)


def test_domains_listed():
    assert len(SYNTHETIC_DOMAINS) >= 4
    assert len(set(SYNTHETIC_DOMAINS)) == len(SYNTHETIC_DOMAINS)
    assert {"fluorescence", "em", "histology"} <= set(SYNTHETIC_DOMAINS)


@pytest.mark.parametrize("domain", SYNTHETIC_DOMAINS)
def test_make_cells_shapes_and_types(domain):
    images, masks = make_cells(n_images=3, image_size=(48, 80), domain=domain, random_state=1)
    assert isinstance(images, list) and isinstance(masks, list)
    assert len(images) == len(masks) == 3
    for image, mask in zip(images, masks):
        assert image.shape == mask.shape == (48, 80)
        assert image.dtype == np.uint8 and mask.dtype == bool
        assert mask.any() and not mask.all()


@pytest.mark.parametrize("domain", SYNTHETIC_DOMAINS)
def test_make_cells_deterministic(domain):
    first = make_cells(3, 64, domain, random_state=7)
    second = make_cells(3, 64, domain, random_state=7)
    other = make_cells(3, 64, domain, random_state=8)
    for a, b in zip(first[0] + first[1], second[0] + second[1]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0][0], other[0][0])


def test_make_cells_prefix_stable():
    few, few_masks = make_cells(2, 64, "histology", random_state=3)
    many, many_masks = make_cells(5, 64, "histology", random_state=3)
    for i in range(2):
        np.testing.assert_array_equal(few[i], many[i])
        np.testing.assert_array_equal(few_masks[i], many_masks[i])
    assert not np.array_equal(many[0], many[1])


def test_make_cells_random_state_objects():
    images, _ = make_cells(2, 32, "em", random_state=np.random.RandomState(0))
    again, _ = make_cells(2, 32, "em", random_state=np.random.RandomState(0))
    np.testing.assert_array_equal(images[0], again[0])
    images, _ = make_cells(2, 32, "em", random_state=np.random.default_rng(0))
    assert images[0].shape == (32, 32)
    unseeded, _ = make_cells(1, 32, "em")
    assert unseeded[0].dtype == np.uint8


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(domain="phase"), ValueError),
        (dict(n_images=0), ValueError),
        (dict(image_size=8), ValueError),
        (dict(image_size="big"), TypeError),
        (dict(image_size=(32, 32, 3)), TypeError),
    ],
)
def test_make_cells_invalid(kwargs, error):
    with pytest.raises(error):
        make_cells(**{"n_images": 1, "image_size": 32, **kwargs})


def test_benchmark_structure(synthetic):
    n = 6 * len(SYNTHETIC_DOMAINS)
    assert len(synthetic.images) == len(synthetic.masks) == len(synthetic.names) == n
    assert synthetic.datasets == list(SYNTHETIC_DOMAINS)
    assert isinstance(synthetic.dataset, np.ndarray) and synthetic.dataset.shape == (n,)
    assert synthetic.names[:2] == ["fluorescence_000", "fluorescence_001"]
    for domain in SYNTHETIC_DOMAINS:
        index = np.flatnonzero(synthetic.dataset == domain)
        assert index.size == 6
        assert synthetic.names[index[-1]] == f"{domain}_005"
    assert all(image.shape == (96, 96) and image.dtype == np.uint8 for image in synthetic.images)
    assert all(mask.dtype == bool for mask in synthetic.masks)


def test_benchmark_matches_make_cells(synthetic):
    images, masks = make_cells(6, 96, "em", random_state=0)
    index = np.flatnonzero(synthetic.dataset == "em")
    for i, k in enumerate(index):
        np.testing.assert_array_equal(synthetic.images[k], images[i])
        np.testing.assert_array_equal(synthetic.masks[k], masks[i])


def test_benchmark_deterministic(synthetic):
    again = make_synthetic_benchmark(n_images=6, image_size=96, random_state=0)
    for a, b in zip(synthetic.images + synthetic.masks, again.images + again.masks):
        np.testing.assert_array_equal(a, b)
    other = make_synthetic_benchmark(n_images=6, image_size=96, random_state=1)
    assert not np.array_equal(synthetic.images[0], other.images[0])


def test_benchmark_domain_streams_independent(synthetic):
    alone = make_synthetic_benchmark(n_images=6, image_size=96, domains=["sstem"], random_state=0)
    reordered = make_synthetic_benchmark(
        n_images=6, image_size=96, domains=["sstem", "fluorescence"], random_state=0
    )
    index = np.flatnonzero(synthetic.dataset == "sstem")
    for i, k in enumerate(index):
        np.testing.assert_array_equal(alone.images[i], synthetic.images[k])
        np.testing.assert_array_equal(reordered.images[i], synthetic.images[k])
    np.testing.assert_array_equal(reordered.images[6], synthetic.images[0])


def test_benchmark_invalid_domains():
    with pytest.raises(ValueError, match="unknown domain"):
        make_synthetic_benchmark(domains=["fluorescence", "nope"])
    with pytest.raises(ValueError, match="more than once"):
        make_synthetic_benchmark(domains=["em", "em"])
    with pytest.raises(ValueError, match="empty"):
        make_synthetic_benchmark(domains=[])


@pytest.mark.parametrize("domain", SYNTHETIC_DOMAINS)
def test_foreground_fraction(domain):
    _, masks = make_cells(12, 128, domain, random_state=0)
    fractions = np.array([mask.mean() for mask in masks])
    assert 0.04 <= fractions.mean() <= 0.30
    assert fractions.min() > 0.005 and fractions.max() < 0.5


@pytest.mark.parametrize("domain", SYNTHETIC_DOMAINS)
def test_foreground_polarity(domain):
    images, masks = make_cells(6, 96, domain, random_state=0)
    foreground = np.mean([image[mask].mean() for image, mask in zip(images, masks)])
    background = np.mean([image[~mask].mean() for image, mask in zip(images, masks)])
    if domain in BRIGHT_FOREGROUND:
        assert foreground > background + 20
    else:
        assert foreground < background - 20


def test_domains_differ(synthetic):
    stats = {}
    for domain in SYNTHETIC_DOMAINS:
        index = np.flatnonzero(synthetic.dataset == domain)
        images = [synthetic.images[k] for k in index]
        masks = [synthetic.masks[k] for k in index]
        stats[domain] = (
            np.mean([image.mean() for image in images]),
            np.mean([mask.mean() for mask in masks]),
        )
    # bright-on-dark fluorescence versus brighter backgrounds elsewhere
    assert stats["fluorescence"][0] < 80 and stats["fluorescence_dense"][0] < 80
    assert all(stats[d][0] > 100 for d in ("histology", "em", "sstem"))
    # mitochondria are sparse; nuclei are not
    assert stats["em"][1] < stats["histology"][1]
    assert stats["sstem"][1] < stats["fluorescence_dense"][1]
    # no two domains share an intensity histogram
    histograms = {
        d: np.histogram(
            np.concatenate(
                [synthetic.images[k].ravel() for k in np.flatnonzero(synthetic.dataset == d)]
            ),
            bins=32,
            range=(0, 256),
            density=True,
        )[0]
        * 8
        for d in SYNTHETIC_DOMAINS
    }
    names = list(histograms)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            overlap = np.minimum(histograms[a], histograms[b]).sum()
            assert overlap < 0.8, (a, b, overlap)


def test_images_vary_within_domain():
    images, masks = make_cells(8, 96, "fluorescence", random_state=0)
    contrast = [image[mask].mean() - image[~mask].mean() for image, mask in zip(images, masks)]
    assert max(contrast) > 1.3 * min(contrast)


def test_not_trivially_thresholded():
    # dark distractors (membranes, vesicles) make a global threshold fail on EM-like data
    images, masks = make_cells(6, 96, "sstem", random_state=0)
    ious = []
    for image, mask in zip(images, masks):
        predicted = image < np.percentile(image, 100 * mask.mean())
        ious.append((predicted & mask).sum() / (predicted | mask).sum())
    assert np.mean(ious) < 0.7
