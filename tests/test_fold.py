"""BatchNorm folding: the folded copy computes the eval-mode output, and the cache follows
every change of the module."""
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from kwtl.models import FCRN, FCRNSegmenter, fold_batchnorm, switch_to_affine
from kwtl.models._fold import FoldedModuleCache


def _randomise_batchnorm(module, seed=0, negative_gamma=False):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) * 2 - 1)
                m.running_var.copy_(torch.rand(n, generator=gen) * 2 + 0.1)
                if m.affine:
                    gamma = torch.rand(n, generator=gen) + 0.5
                    if negative_gamma:
                        gamma[::2] *= -1
                    m.weight.copy_(gamma)
                    m.bias.copy_(torch.rand(n, generator=gen) - 0.5)
    return module


@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_folded_fcrn_matches_eval_mode(affine, channels_last):
    torch.manual_seed(0)
    net = _randomise_batchnorm(FCRN(width=4, affine=affine, init="default"), negative_gamma=affine)
    net.eval()
    x = torch.randn(3, 1, 24, 32)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        expected = net(x)
        torch.testing.assert_close(folded(x), expected, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(folded.head(folded.features(x)), expected, rtol=1e-5, atol=1e-5)


def test_folded_weights_by_hand():
    """1x1 convolution, one input channel: w' = w·γ/√(v+ε), b' = β − μ·γ/√(v+ε)."""
    conv = nn.Conv2d(1, 2, 1, bias=False)
    bn = nn.BatchNorm2d(2, eps=0.0)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([2.0, -1.0]).view(2, 1, 1, 1))
        bn.running_mean.copy_(torch.tensor([1.0, 3.0]))
        bn.running_var.copy_(torch.tensor([4.0, 0.25]))
        bn.weight.copy_(torch.tensor([3.0, -2.0]))
        bn.bias.copy_(torch.tensor([0.5, 1.0]))
    folded = fold_batchnorm(nn.Sequential(conv, bn))
    assert len(folded) == 1
    # channel 0: scale 3/2 = 1.5 → w 3.0, b 0.5 − 1·1.5 = −1.0
    # channel 1: scale −2/0.5 = −4 → w 4.0, b 1 − 3·(−4) = 13.0
    np.testing.assert_allclose(folded[0].weight.detach().view(-1).numpy(), [3.0, 4.0])
    np.testing.assert_allclose(folded[0].bias.detach().numpy(), [-1.0, 13.0])
    x = torch.tensor([[[[1.0, -2.0]]]])
    expected = torch.tensor([[[[2.0, -7.0]], [[17.0, 5.0]]]])  # 3x−1 and 4x+13
    torch.testing.assert_close(folded(x), expected)


def test_transpose_convolution_and_relu_pool_swap():
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.ConvTranspose2d(3, 5, 2, stride=2, bias=True), nn.BatchNorm2d(5), nn.ReLU(),
        nn.MaxPool2d(2), nn.Conv2d(5, 4, 3, padding=1, groups=1), nn.BatchNorm2d(4, affine=False),
    )
    _randomise_batchnorm(net, seed=3, negative_gamma=True).eval()
    folded = fold_batchnorm(net)
    assert [type(m).__name__ for m in folded] == ["ConvTranspose2d", "MaxPool2d", "ReLU", "Conv2d"]
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), rtol=1e-5, atol=1e-5)


def test_unfoldable_layers_are_kept():
    net = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.BatchNorm2d(4),
                        nn.BatchNorm2d(4), nn.ReLU())
    _randomise_batchnorm(net).eval()
    folded = fold_batchnorm(net)
    assert [type(m).__name__ for m in folded] == ["Conv2d", "BatchNorm2d", "BatchNorm2d", "ReLU"]
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x))


def test_original_is_untouched():
    net = _randomise_batchnorm(FCRN(width=4, init="default")).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = fold_batchnorm(net)
    assert net.training and not folded.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not any(p.requires_grad for p in folded.parameters())
    with pytest.raises(TypeError, match="torch.nn.Module"):
        fold_batchnorm("not a module")


def test_cache_rebuilds_only_after_a_change():
    net = _randomise_batchnorm(FCRN(width=4, init="default"))
    cache = FoldedModuleCache()
    first = cache.get(net)
    assert cache.get(net) is first
    with torch.no_grad():
        net.conv2[0].weight.mul_(2.0)  # in place: a new version
    second = cache.get(net)
    assert second is not first
    net.load_state_dict(FCRN(width=4, init="default").state_dict())
    third = cache.get(net)
    assert third is not second
    switch_to_affine(net)  # new BatchNorm modules
    fourth = cache.get(net)
    assert fourth is not third
    assert sum(p.numel() for p in fourth.parameters()) == sum(
        m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
        for m in fourth.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)))


def _segmenter():
    return FCRNSegmenter(module__width=4, patch_size=16, stride=16, precision="fp32",
                         batch_size=4, random_state=0).initialize()


def test_segmenter_patch_logits_follow_training():
    seg = _segmenter()
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (5, 16, 16), dtype=np.uint8)
    masks = rng.random((4, 16, 16)) > 0.5

    def eval_logits():
        seg.module_.eval()
        with torch.no_grad():
            x = torch.from_numpy(patches).float().div(127.5).sub(1.0)[:, None]
            out = seg.module_(x)[:, 0]
        seg.module_.train()
        return out

    before = seg.patch_logits(patches)
    torch.testing.assert_close(before, eval_logits(), rtol=1e-3, atol=1e-3)  # N(0, 1) init: logits ~ 1e2
    x = torch.from_numpy(patches[:4])[:, None]
    y = torch.from_numpy(masks.astype(np.float32))[:, None]
    seg.train_step((x, y))  # optimizer step and running statistics change in place
    after = seg.patch_logits(patches)
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, eval_logits(), rtol=1e-3, atol=1e-3)


def test_segmenter_pickle_drops_the_folded_copy():
    seg = _segmenter()
    patches = np.random.default_rng(1).integers(0, 256, (2, 16, 16), dtype=np.uint8)
    expected = seg.patch_logits(patches)
    assert "_folded_cache_" in seg.__dict__
    restored = pickle.loads(pickle.dumps(seg))
    assert "_folded_cache_" not in restored.__dict__
    torch.testing.assert_close(restored.patch_logits(patches), expected)
