"""FCRNSegmenter.image_logits: whole images per pass when they fit, tiles otherwise."""

import numpy as np
import torch
from tiny import tiny_segmenter

from kwtl.models import _entry_points as _segmenter
from kwtl.models._inference import forward_patches


def _seg():
    # budget: 4 * inference_batch_size * patch_size**2 = 1024 input pixels per pass
    return tiny_segmenter(inference_batch_size=1, random_state=0).initialize()


def _whole(seg, images):
    h, w = images.shape[1:]
    padded = np.pad(images, ((0, 0), (0, (-h) % 8), (0, (-w) % 8)), mode="reflect")
    return forward_patches(
        seg._inference_module(), padded, channels_last=seg._inference_channels_last
    )[:, :h, :w]


def _count_passes(monkeypatch):
    calls = []
    real = _segmenter.forward_tiled

    def counting(forward, module, images, **kw):
        calls.append((len(images), kw["tile_size"]))
        return real(forward, module, images, **kw)

    monkeypatch.setattr(_segmenter, "forward_tiled", counting)
    return calls


def test_copies_that_fit_go_through_whole_in_groups(monkeypatch):
    seg = _seg()
    images = np.random.default_rng(0).integers(0, 256, (5, 20, 24), dtype=np.uint8)
    calls = _count_passes(monkeypatch)
    got = seg.image_logits(images)
    # 24 x 24 padded = 576 pixels: one whole image per pass, never tiled
    assert [k for k, _ in calls] == [1] * 5 and all(side >= 24 for _, side in calls)
    torch.testing.assert_close(got, _whole(seg, images), rtol=1e-4, atol=1e-4)


def test_an_image_larger_than_the_budget_is_tiled(monkeypatch):
    seg = _seg()
    images = np.random.default_rng(1).integers(0, 256, (2, 70, 90), dtype=np.uint8)
    calls = _count_passes(monkeypatch)
    got = seg.image_logits(images)
    assert len(calls) == 2 and all(side < 72 for _, side in calls)
    torch.testing.assert_close(got, _whole(seg, images), rtol=1e-4, atol=1e-4)
