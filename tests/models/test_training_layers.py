"""Layers with faster CPU training passes (kwtl.models._fold.use_training_layers): same
function and gradients as PyTorch's layers, same parameters, and what the segmenter trains."""

import copy
import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from torch import nn

from kwtl.models import FCRN, FCRNSegmenter
from kwtl.models._fold import SingleOutputConv2d, Stride2ConvTranspose2d, use_training_layers
from kwtl.models._loss import weighted_bce_with_logits
from kwtl.utils import normalize_uint8

CL = torch.channels_last


def _grads(layer, params, x, g):
    x = x.detach().clone().requires_grad_()
    for p in params:
        p.grad = None
    out = layer(x)
    out.backward(g)
    return [out.detach(), x.grad] + [p.grad.clone() for p in params]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 4, 1, 3), (2, 2, 2, 2)])
@pytest.mark.parametrize("kernel", [3, 5])
def test_single_output_conv_backward_equals_conv2d(bias, shape, kernel):
    torch.manual_seed(0)
    conv = nn.Conv2d(shape[1], 1, kernel, padding=kernel // 2, bias=bias).double()
    fast = SingleOutputConv2d.from_conv(conv)
    x = torch.randn(*shape, dtype=torch.float64).contiguous(memory_format=CL)
    g = torch.randn(shape[0], 1, *shape[2:], dtype=torch.float64)
    params = [p for p in (conv.weight, conv.bias) if p is not None]
    got = _grads(fast, params, x, g)
    assert got[0].grad_fn is None  # detached copy; the fast autograd function ran:
    assert type(fast(x.requires_grad_()).grad_fn).__name__ == "_SingleOutputConvFunctionBackward"
    want = _grads(conv, params, x.contiguous(), g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_single_output_conv_gradcheck():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 1, 3, padding=1).double()
    fast = SingleOutputConv2d.from_conv(conv)
    x = torch.randn(2, 3, 4, 5, dtype=torch.float64).contiguous(memory_format=CL)
    x.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x, w, b: _with_params(fast, w, b)(x), (x, conv.weight, conv.bias)
    )


def _with_params(layer, weight, bias):
    new = copy.copy(layer)
    new.weight, new.bias = weight, bias
    return new


@pytest.mark.parametrize("bias", [True, False])
def test_stride2_conv_transpose_backward_equals_conv_transpose(bias):
    torch.manual_seed(0)
    deconv = nn.ConvTranspose2d(4, 3, 2, stride=2, bias=bias).double()
    fast = Stride2ConvTranspose2d.from_conv(deconv)
    x = torch.randn(2, 4, 3, 5, dtype=torch.float64).contiguous(memory_format=CL)
    g = torch.randn(2, 3, 6, 10, dtype=torch.float64)
    params = [p for p in (deconv.weight, deconv.bias) if p is not None]
    assert (
        type(fast(x.clone().requires_grad_()).grad_fn).__name__ == "_Stride2DeconvFunctionBackward"
    )
    got = _grads(fast, params, x, g)
    want = _grads(deconv, params, x.contiguous(), g)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda x, w, b=None: _with_params(fast, w, b)(x), (x, *params))


def test_ordinary_paths_outside_cpu_channels_last_training():
    deconv = nn.ConvTranspose2d(4, 3, 2, stride=2)
    fast = Stride2ConvTranspose2d.from_conv(deconv)
    x = torch.randn(1, 4, 3, 3, requires_grad=True)  # NCHW: the ordinary layer
    assert type(fast(x).grad_fn).__name__ == "ConvolutionBackward0"
    with torch.no_grad():  # inference: the ordinary layer
        y = fast(x.detach().contiguous(memory_format=CL))
    torch.testing.assert_close(y, deconv(x).detach())


def test_use_training_layers_swaps_in_place_and_shares_parameters():
    net = FCRN(width=4, init="default")
    keys = list(net.state_dict())
    weight = net.conv8.weight
    out = use_training_layers(net)
    assert out is net
    assert isinstance(net.conv8, SingleOutputConv2d) and net.conv8.weight is weight
    assert all(isinstance(getattr(net, f"conv{i}")[0], Stride2ConvTranspose2d) for i in (5, 6, 7))
    assert isinstance(net.conv2[0], nn.Conv2d) and not isinstance(net.conv2[0], SingleOutputConv2d)
    assert list(net.state_dict()) == keys


def test_segmenter_trains_with_the_fast_layers_and_the_same_gradients():
    seg = FCRNSegmenter(
        module__width=4,
        module__affine=True,
        module__init="default",
        patch_size=16,
        precision="fp32",
        random_state=0,
    ).initialize()
    assert isinstance(seg.module_.conv8, SingleOutputConv2d)
    assert seg.module_.conv2[0].weight.is_contiguous(memory_format=CL)
    plain = FCRN(width=4, affine=True, init="default")
    plain.load_state_dict(seg.module_.state_dict())
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.integers(0, 256, (4, 1, 16, 16), dtype=np.uint8))
    y = torch.from_numpy((rng.random((4, 1, 16, 16)) > 0.6).astype(np.float32))
    seg.module_.train()
    loss_fast = weighted_bce_with_logits(seg.infer(x), y)
    loss_fast.backward()
    loss_plain = weighted_bce_with_logits(plain.train()(normalize_uint8(x)), y)
    loss_plain.backward()
    torch.testing.assert_close(loss_fast, loss_plain, rtol=1e-5, atol=1e-6)
    fast_grads = dict(seg.module_.named_parameters())
    for name, p in plain.named_parameters():
        scale = p.grad.abs().max().item() + 1e-12
        torch.testing.assert_close(
            fast_grads[name].grad / scale, p.grad / scale, rtol=1e-4, atol=1e-4
        )


def test_segmenter_with_fast_layers_pickles_and_clones():
    seg = FCRNSegmenter(
        module__width=4, patch_size=16, precision="fp32", random_state=0
    ).initialize()
    again = pickle.loads(pickle.dumps(seg))
    for (k, a), (_, b) in zip(seg.module_.state_dict().items(), again.module_.state_dict().items()):
        assert torch.equal(a, b), k
    fresh = clone(seg).initialize()
    assert isinstance(fresh.module_.conv8, SingleOutputConv2d)


def test_a_module_instance_given_by_the_user_is_not_modified():
    net = FCRN(width=4, init="default")
    FCRNSegmenter(module=net, patch_size=16, precision="fp32").initialize()
    assert type(net.conv8) is nn.Conv2d
    assert type(net.conv5[0]) is nn.ConvTranspose2d
