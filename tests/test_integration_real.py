"""Integration tests on the real datasets in ../shared/data (CI has them beside the checkout)."""

import pytest

from kwtl.datasets import load_benchmark
from kwtl.models import FCRNSegmenter

pytestmark = pytest.mark.integration


def test_small_segmenter_on_four_sstem_images_beats_untrained(shared_data):
    bench = load_benchmark(shared_data, names=["ssTEM"])
    # four training images, two held-out images, cropped to 256x256 to stay fast on 2 cores
    crop = (slice(384, 640), slice(384, 640))
    train_x = [im[crop] for im in bench.images[:4]]
    train_y = [m[crop] for m in bench.masks[:4]]
    test_x = [im[crop] for im in bench.images[10:12]]
    test_y = [m[crop] for m in bench.masks[10:12]]
    params = dict(
        module__width=8,
        module__init="default",
        patch_size=64,
        stride=16,
        lr=1e-3,
        batch_size=16,
        max_epochs=6,
        random_state=0,
    )
    untrained = FCRNSegmenter(**params).initialize()
    trained = FCRNSegmenter(**params).fit(train_x, train_y)
    before, after = untrained.score(test_x, test_y), trained.score(test_x, test_y)
    assert after > before + 0.05, (before, after)
    assert trained.history[-1, "train_loss"] < trained.history[0, "train_loss"]
