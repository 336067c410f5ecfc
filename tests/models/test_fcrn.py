"""FCRN architecture, checkpoint layout, BatchNorm switch, and the weighted BCE."""

import math

import numpy as np
import pytest
import torch

from kwtl.models import FCRN, WeightedBCEWithLogitsLoss
from kwtl.models._fcrn import enable_mc_dropout, switch_to_affine
from kwtl.models._loss import weighted_bce_with_logits

# Parameter counts of SPEC §1, written out by hand per layer (c = 32).
HAND_COUNT = (
    1 * 32 * 9
    + 32 * 64 * 9
    + 64 * 128 * 9
    + 128 * 512 * 9
    + 512 * 128 * 4
    + 128 * 64 * 4
    + 64 * 32 * 4
    + (32 * 9 + 1)
)


def authors_state_dict(affine, width=32):
    """A random state dict with the authors' key layout and shapes, built from SPEC §1."""
    c = width
    convs = {
        "conv1": (c, 1, 3, 3),
        "conv2": (2 * c, c, 3, 3),
        "conv3": (4 * c, 2 * c, 3, 3),
        "conv4": (16 * c, 4 * c, 3, 3),
        "conv5": (16 * c, 4 * c, 2, 2),
        "conv6": (4 * c, 2 * c, 2, 2),
        "conv7": (2 * c, c, 2, 2),
    }
    bn_channels = {
        "conv1": c,
        "conv2": 2 * c,
        "conv3": 4 * c,
        "conv4": 16 * c,
        "conv5": 4 * c,
        "conv6": 2 * c,
        "conv7": c,
    }
    g = torch.Generator().manual_seed(0)
    sd = {}
    for name, shape in convs.items():
        sd[f"{name}.0.weight"] = torch.randn(shape, generator=g)
        n = bn_channels[name]
        if affine:
            sd[f"{name}.1.weight"] = torch.rand(n, generator=g)
            sd[f"{name}.1.bias"] = torch.randn(n, generator=g)
        sd[f"{name}.1.running_mean"] = torch.randn(n, generator=g)
        sd[f"{name}.1.running_var"] = torch.rand(n, generator=g) + 0.5
        sd[f"{name}.1.num_batches_tracked"] = torch.tensor(300)
    sd["conv8.weight"] = torch.randn(1, c, 3, 3, generator=g)
    sd["conv8.bias"] = torch.randn(1, generator=g)
    return sd


def test_parameter_count_matches_spec():
    assert HAND_COUNT == 985_665
    assert sum(p.numel() for p in FCRN().parameters()) == HAND_COUNT
    assert sum(p.numel() for p in FCRN(affine=True).parameters()) == 987_585


def test_only_last_conv_has_bias_and_output_is_logits():
    net = FCRN()
    biases = [n for n, _ in net.named_parameters() if n.endswith("bias")]
    assert biases == ["conv8.bias"]
    net.conv8.bias.data.fill_(-50.0)
    net.conv8.weight.data.zero_()
    out = net(torch.zeros(1, 1, 16, 16))
    assert torch.allclose(out, torch.full_like(out, -50.0))  # no sigmoid inside


@pytest.mark.parametrize("affine, n_keys", [(False, 30), (True, 44)])
def test_authors_checkpoint_layout_loads_strictly(affine, n_keys):
    sd = authors_state_dict(affine)
    assert len(sd) == n_keys  # SPEC §9: meta checkpoints 30 keys, PLFT 44
    net = FCRN(affine=affine)
    net.load_state_dict(sd, strict=True)
    assert set(net.state_dict()) == set(sd)
    rebuilt = FCRN.from_state_dict(sd)
    assert rebuilt.affine is affine and rebuilt.width == 32


def test_forward_shapes_and_no_skip_connections():
    net = FCRN(width=8).eval()
    assert net(torch.zeros(3, 1, 40, 24)).shape == (3, 1, 40, 24)
    # No skip connections: the decoder sees only conv4's output.
    x = torch.randn(2, 1, 16, 16)
    feats = {}

    def keep_input(module, inputs, output):
        feats["in"] = inputs[0]

    net.conv5.register_forward_hook(keep_input)
    net(x)
    assert feats["in"].shape == (2, 128, 2, 2)


def test_switch_to_affine_sets_gamma_beta_and_fresh_stats():
    net = FCRN(width=4)
    net.conv2[1].running_mean.fill_(3.0)
    switch_to_affine(net, gamma=0.1, beta=0.0)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == 7 and all(b.affine for b in bns)
    for b in bns:
        assert torch.all(b.weight == 0.1) and torch.all(b.bias == 0.0)
        assert torch.all(b.running_mean == 0) and torch.all(b.running_var == 1)
    assert (
        sum(b.num_features for b in FCRN().modules() if isinstance(b, torch.nn.BatchNorm2d)) == 960
    )


def test_dropout_adds_no_parameters_and_mc_dropout_context():
    assert len(FCRN(dropout=0.5).state_dict()) == len(FCRN().state_dict())
    net = FCRN(width=4).eval()
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        ref = net(x)
        with enable_mc_dropout(net, p=0.5):
            assert not net.conv3[1].training
            outs = [net(x) for _ in range(5)]
        assert not net.dropout.training and net.dropout.p == 0.0
        assert torch.equal(net(x), ref)
    assert any(not torch.equal(o, ref) for o in outs)


def test_paper_init_is_standard_normal():
    w = FCRN(init="paper").conv4[0].weight.detach()
    assert abs(float(w.mean())) < 0.01 and abs(float(w.std()) - 1.0) < 0.01


@pytest.mark.parametrize("kwargs", [{"width": 0}, {"dropout": 1.0}, {"init": "xavier"}])
def test_fcrn_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        FCRN(**kwargs)


def _hand_weighted_bce(logits, target):
    """Straight loops over a (B, H, W) array, as Eq. 2 reads."""
    total, count = 0.0, 0
    for z_n, y_n in zip(logits, target):
        n_fg = int(y_n.sum())
        n_bg = y_n.size - n_fg
        w = n_bg / n_fg if n_fg else 1.0
        for z, y in zip(z_n.ravel(), y_n.ravel()):
            s = 1.0 / (1.0 + math.exp(-z))
            total += -(w * y * math.log(s) + (1 - y) * math.log(1 - s))
            count += 1
    return total / count


def test_weighted_bce_against_hand_computation_4x4():
    z0 = np.zeros((4, 4))
    y0 = np.zeros((4, 4))
    y0[1:3, 1:3] = 1  # 4 foreground, 12 background -> w = 3
    # all-zero logits: 12 pixels cost log 2 once, 4 pixels cost 3 log 2
    assert _hand_weighted_bce(z0[None], y0[None]) == pytest.approx(24 * math.log(2) / 16)

    rng = np.random.default_rng(1)
    z = rng.normal(size=(2, 4, 4))
    y = np.stack([y0, np.zeros((4, 4))])  # second patch: no foreground at all
    expected = _hand_weighted_bce(z, y)
    got = weighted_bce_with_logits(torch.tensor(z[:, None]), torch.tensor(y[:, None]))
    assert float(got) == pytest.approx(expected, rel=1e-6)
    assert math.isfinite(float(got))
    module_loss = WeightedBCEWithLogitsLoss()(torch.tensor(z[:, None]), torch.tensor(y[:, None]))
    assert float(module_loss) == pytest.approx(expected, rel=1e-6)


def test_weighted_bce_all_background_equals_plain_bce():
    z = torch.randn(3, 1, 4, 4)
    y = torch.zeros(3, 1, 4, 4)
    plain = torch.nn.functional.binary_cross_entropy_with_logits(z, y)
    assert torch.allclose(weighted_bce_with_logits(z, y), plain)


def test_weighted_bce_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        weighted_bce_with_logits(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 3))
