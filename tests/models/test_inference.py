"""Layer-by-layer batch-statistics BatchNorm: resuming from stored activations gives the
same statistics as recomputing every pass from the images, and does less work."""

import numpy as np
import pytest
import torch
from torch import nn

from kwtl.models import FCRN
from kwtl.models._inference import predict_logit_maps


@pytest.fixture(scope="module")
def net_and_images():
    torch.manual_seed(0)
    net = FCRN(width=4, init="default")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 40), dtype=np.uint8) for _ in range(6)]
    return net, images


def _one_batch_train_mode(net, images):
    """Independent reference: one forward of all images with train-mode BatchNorm."""
    train = FCRN(width=4, init="default")
    train.load_state_dict(net.state_dict())
    x = torch.from_numpy(np.stack(images)).float().div(127.5).sub(1.0)[:, None]
    with torch.no_grad():
        return train.train()(x)[:, 0].numpy()


@pytest.mark.parametrize("cache_bytes", [0, 4_000, 40_000, 10**9])
def test_cached_layerwise_statistics_match(net_and_images, cache_bytes):
    net, images = net_and_images
    ref = _one_batch_train_mode(net, images)
    out = predict_logit_maps(
        net, images, bn_mode="batch", max_pixels=2 * 32 * 40, cache_bytes=cache_bytes
    )
    np.testing.assert_allclose(np.stack(out), ref, rtol=1e-4, atol=1e-4)


def test_first_convolution_runs_once_per_batch_with_cache(net_and_images, monkeypatch):
    net, images = net_and_images
    calls = {"n": 0}
    original = nn.Conv2d.forward

    def counting(self, x):
        if self.in_channels == 1:  # the first convolution only
            calls["n"] += 1
        return original(self, x)

    monkeypatch.setattr(nn.Conv2d, "forward", counting)
    counts = {}
    for cache_bytes in (0, 10**9):
        calls["n"] = 0
        predict_logit_maps(
            net, images, bn_mode="batch", max_pixels=2 * 32 * 40, cache_bytes=cache_bytes
        )
        counts[cache_bytes] = calls["n"]
    n_batches, n_bn = 3, 7
    # without a cache: one partial pass per BatchNorm, then the prediction pass
    assert counts[0] == n_batches * (n_bn + 1)
    # with it: the statistics of conv1's BatchNorm, the stored stage output, the prediction
    assert counts[10**9] == 3 * n_batches


def test_module_without_stages_falls_back():
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(), nn.Conv2d(3, 1, 3, padding=1)
    )
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (16, 16), dtype=np.uint8) for _ in range(4)]
    out = predict_logit_maps(net, images, bn_mode="batch", max_pixels=16 * 16, cache_bytes=10**9)
    x = torch.from_numpy(np.stack(images)).float().div(127.5).sub(1.0)[:, None]
    with torch.no_grad():
        ref = net.train()(x)[:, 0].numpy()
    np.testing.assert_allclose(np.stack(out), ref, rtol=1e-4, atol=1e-4)
