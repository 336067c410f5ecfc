"""BatchNorm folding: the folded copy computes the eval-mode output, and the cache follows
every change of the module."""

import pickle

import numpy as np
import pytest
import torch
from torch import nn

from kwtl.models import FCRN, FCRNSegmenter
from kwtl.models._fcrn import switch_to_affine
from kwtl.models._fold import fold_batchnorm
from kwtl.models._entry_points import FoldedModuleCache
from kwtl.models._fold import ChannelsLastMaxPool2d, SingleOutputConv2d


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
        nn.ConvTranspose2d(3, 5, 2, stride=2, bias=True),
        nn.BatchNorm2d(5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(5, 4, 3, padding=1, groups=1),
        nn.BatchNorm2d(4, affine=False),
    )
    _randomise_batchnorm(net, seed=3, negative_gamma=True).eval()
    folded = fold_batchnorm(net)
    assert [type(m).__name__ for m in folded] == [
        "ConvTranspose2d",
        "ChannelsLastMaxPool2d",
        "ReLU",
        "Conv2d",
    ]
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net(x), rtol=1e-5, atol=1e-5)


def test_unfoldable_layers_are_kept():
    net = nn.Sequential(
        nn.Conv2d(4, 4, 3, padding=1, groups=2), nn.BatchNorm2d(4), nn.BatchNorm2d(4), nn.ReLU()
    )
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
        for m in fourth.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
    )


def _segmenter():
    return FCRNSegmenter(
        module__width=4, patch_size=16, stride=16, precision="fp32", batch_size=4, random_state=0
    ).initialize()


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
    torch.testing.assert_close(
        before, eval_logits(), rtol=1e-3, atol=1e-3
    )  # N(0, 1) init: logits ~ 1e2
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


def _channels_last(x):
    return x.contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("shape", [(2, 3, 6, 8), (1, 5, 7, 9), (2, 1, 4, 4), (1, 4, 2, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("channels_last", [False, True])
def test_channels_last_max_pool_equals_max_pool(shape, dtype, channels_last):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    if channels_last:
        x = _channels_last(x)
    got = ChannelsLastMaxPool2d()(x)
    expected = nn.MaxPool2d(2, 2)(x)
    assert torch.equal(got, expected)  # max is exact: no rounding allowed
    if channels_last and shape[1] > 1 and min(got.shape[2:]) > 1:
        assert got.is_contiguous(memory_format=torch.channels_last)


def test_max_pool_too_small_input_raises_as_max_pool():
    x = _channels_last(torch.randn(1, 4, 1, 3))
    with pytest.raises(RuntimeError, match="too small"):
        ChannelsLastMaxPool2d()(x)


def test_max_pool_by_hand():
    x = torch.tensor([[1.0, 5.0, -2.0], [3.0, 0.0, 9.0], [7.0, 8.0, 4.0]])  # odd: floor mode
    x = _channels_last(torch.stack([x, -x])[None])  # (1, 2, 3, 3)
    out = ChannelsLastMaxPool2d()(x)
    np.testing.assert_array_equal(out[0, :, 0, 0].numpy(), [5.0, 0.0])  # max 1,5,3,0 and of −


@pytest.mark.parametrize(
    "pool, supported",
    [
        (nn.MaxPool2d(2), True),
        (nn.MaxPool2d((2, 2), stride=(2, 2)), True),
        (nn.MaxPool2d(3), False),
        (nn.MaxPool2d(2, stride=1), False),
        (nn.MaxPool2d(2, padding=1), False),
        (nn.MaxPool2d(2, ceil_mode=True), False),
        (nn.MaxPool2d(2, return_indices=True), False),
        (nn.MaxPool2d(2, dilation=2), False),
    ],
)
def test_max_pool_replacement_only_when_equivalent(pool, supported):
    assert ChannelsLastMaxPool2d.supports(pool) is supported
    folded = fold_batchnorm(nn.Sequential(pool))
    assert isinstance(folded[0], ChannelsLastMaxPool2d) is supported
    assert type(fold_batchnorm(nn.Sequential(pool), replace_layers=False)[0]) is nn.MaxPool2d


@pytest.mark.parametrize("kernel", [1, 3, 5, (3, 5)])
@pytest.mark.parametrize("hw", [(8, 8), (5, 9), (2, 3), (1, 1)])
@pytest.mark.parametrize("bias", [True, False])
def test_single_output_conv_equals_conv(kernel, hw, bias):
    torch.manual_seed(0)
    k = (kernel, kernel) if isinstance(kernel, int) else kernel
    conv = nn.Conv2d(6, 1, k, padding=(k[0] // 2, k[1] // 2), bias=bias)
    fast = SingleOutputConv2d.from_conv(conv)
    assert fast.weight is conv.weight and fast.bias is conv.bias
    x = torch.randn(3, 6, *hw, dtype=torch.float64)
    with torch.no_grad():
        conv64 = conv.double()
        expected = conv64(x)
        for inp in (x, _channels_last(x)):  # NCHW: the ordinary kernel; NHWC: the matrix product
            torch.testing.assert_close(fast(inp), expected, rtol=1e-12, atol=1e-12)


def test_single_output_conv_by_hand():
    """Two channels, 3x3 kernel of ones and twos on a 2x2 image: every output pixel sees the
    whole image (zero padding), so each output is sum(x0) + 2 * sum(x1) + bias."""
    conv = nn.Conv2d(2, 1, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.stack([torch.ones(3, 3), 2 * torch.ones(3, 3)])[None])
        conv.bias.fill_(0.5)
    x = _channels_last(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, -1.0], [1.0, 0.5]]]]))
    out = SingleOutputConv2d.from_conv(conv)(x)
    np.testing.assert_allclose(out.detach().numpy(), np.full((1, 1, 2, 2), 10 + 2 * 0.5 + 0.5))


def test_single_output_conv_under_bf16_autocast_is_float32_and_close():
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 1, 3, padding=1)
    x = _channels_last(torch.randn(2, 32, 16, 16))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        got = SingleOutputConv2d.from_conv(conv)(x)
        approx = conv(x)
    exact = conv(x).detach()
    assert got.dtype == torch.float32 and approx.dtype == torch.bfloat16
    # bf16 keeps 8 significant bits: both errors are a few 2**-9 of the output's scale
    # (a missing or misplaced tap would be off by a whole term, ~0.1 of it)
    scale = exact.abs().max()
    assert (got - exact).abs().max() <= 2**-6 * scale
    assert (approx.float() - exact).abs().max() <= 2**-6 * scale


@pytest.mark.parametrize(
    "conv, supported",
    [
        (nn.Conv2d(4, 1, 3, padding=1), True),
        (nn.Conv2d(4, 1, (1, 5), padding=(0, 2)), True),
        (nn.Conv2d(4, 2, 3, padding=1), False),
        (nn.Conv2d(4, 1, 3, padding=0), False),
        (nn.Conv2d(4, 1, 3, padding=1, stride=2), False),
        (nn.Conv2d(4, 1, 3, padding=2, dilation=2), False),
        (nn.Conv2d(4, 1, 2, padding=1), False),
        (nn.Conv2d(4, 1, 3, padding=1, padding_mode="reflect"), False),
    ],
)
def test_single_output_conv_replacement_only_when_equivalent(conv, supported):
    assert SingleOutputConv2d.supports(conv) is supported
    folded = fold_batchnorm(conv)
    assert isinstance(folded, SingleOutputConv2d) is supported
    assert type(fold_batchnorm(conv, replace_layers=False)) is nn.Conv2d
    if not supported:
        with pytest.raises(ValueError, match="one-output"):
            SingleOutputConv2d.from_conv(conv)
