"""The FCRN network of the paper and its BatchNorm switch."""

from torch import nn

__all__ = ["FCRN", "enable_mc_dropout", "is_affine", "switch_to_affine"]


def _block(conv, channels, affine, pool):
    layers = [conv, nn.BatchNorm2d(channels, affine=affine), nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


class FCRN(nn.Module):
    """Fully convolutional regression network of Dawoud et al. (encoder–decoder, no skips).

    Layer names and shapes follow the authors' ``FCRNECML``, so their checkpoints load with
    ``load_state_dict(strict=True)``: ``conv1 … conv7`` are ``(conv, BatchNorm, ReLU[, pool])``
    blocks (keys ``conv1.0.weight``, ``conv1.1.running_mean`` …) and ``conv8`` is a plain
    convolution with bias that outputs logits. Only ``conv8`` has a bias.

    Parameters
    ----------
    width : int, default=32
        Base width ``c``: encoder ``c, 2c, 4c, 16c``, decoder ``4c, 2c, c`` channels.
        At 32 the network has 985,665 parameters (non-affine BatchNorm).
    affine : bool, default=False
        Learnable BatchNorm scale/shift. The paper meta-trains without (``False``) and switches
        to affine BatchNorm on the target side (see :func:`switch_to_affine`).
    dropout : float, default=0.0
        Probability of the ``Dropout2d`` between the last ReLU and ``conv8`` (the paper's
        MC-dropout layer). The layer has no parameters, so state dicts are unaffected; at 0 it
        is the identity. :func:`enable_mc_dropout` turns it on at selection time.
    init : {"paper", "default"}, default="paper"
        ``"paper"`` draws every conv weight from N(0, 1) and sets the last bias to 0, as the
        authors do for meta-training from scratch; ``"default"`` keeps PyTorch's init.

    Examples
    --------
    >>> import torch
    >>> net = FCRN()
    >>> sum(p.numel() for p in net.parameters())
    985665
    >>> net(torch.zeros(2, 1, 64, 64)).shape
    torch.Size([2, 1, 64, 64])
    """

    def __init__(self, width=32, affine=False, dropout=0.0, init="paper"):
        super().__init__()
        c = int(width)
        if c < 1:
            raise ValueError(f"width must be a positive integer, got {width!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if init not in ("paper", "default"):
            raise ValueError(f"init must be 'paper' or 'default', got {init!r}")
        self.width, self.affine, self.init = c, bool(affine), init

        def conv(i, o):
            return nn.Conv2d(i, o, 3, stride=1, padding=1, bias=False)

        def deconv(i, o):
            return nn.ConvTranspose2d(i, o, 2, stride=2, bias=False)

        self.conv1 = _block(conv(1, c), c, affine, pool=True)
        self.conv2 = _block(conv(c, 2 * c), 2 * c, affine, pool=True)
        self.conv3 = _block(conv(2 * c, 4 * c), 4 * c, affine, pool=True)
        self.conv4 = _block(conv(4 * c, 16 * c), 16 * c, affine, pool=False)
        self.conv5 = _block(deconv(16 * c, 4 * c), 4 * c, affine, pool=False)
        self.conv6 = _block(deconv(4 * c, 2 * c), 2 * c, affine, pool=False)
        self.conv7 = _block(deconv(2 * c, c), c, affine, pool=False)
        self.dropout = nn.Dropout2d(float(dropout))
        self.conv8 = nn.Conv2d(c, 1, 3, stride=1, padding=1, bias=True)
        if init == "paper":
            self._paper_init()

    def _paper_init(self):
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, 0.0, 1.0)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d) and m.affine:
                nn.init.constant_(m.weight, 0.1)
                nn.init.zeros_(m.bias)

    def features(self, x):
        """Output of ``conv1 … conv7`` (everything before the dropout layer and ``conv8``)."""
        for block in (
            self.conv1,
            self.conv2,
            self.conv3,
            self.conv4,
            self.conv5,
            self.conv6,
            self.conv7,
        ):
            x = block(x)
        return x

    def head(self, features):
        """Dropout then ``conv8``: logits from :meth:`features`."""
        return self.conv8(self.dropout(features))

    def stages(self):
        """The submodules whose composition, in this order, is :meth:`forward`.

        Lets inference code resume a forward pass from a stored intermediate activation
        (see :func:`~kwtl.models._inference.pooled_batchnorm_statistics`).
        """
        return [
            self.conv1,
            self.conv2,
            self.conv3,
            self.conv4,
            self.conv5,
            self.conv6,
            self.conv7,
            self.dropout,
            self.conv8,
        ]

    def forward(self, x):
        """Logits of shape ``(N, 1, H, W)`` for input ``(N, 1, H, W)``, H and W divisible by 8."""
        return self.head(self.features(x))

    @classmethod
    def from_state_dict(cls, state_dict, **kwargs):
        """Build an FCRN whose width and BatchNorm affinity match ``state_dict`` and load it.

        Works with the authors' meta (non-affine, 30 keys) and PLFT (affine, 44 keys)
        checkpoints.
        """
        width = state_dict["conv1.0.weight"].shape[0]
        affine = "conv1.1.weight" in state_dict
        net = cls(width=width, affine=affine, **kwargs)
        net.load_state_dict(state_dict, strict=True)
        return net


def switch_to_affine(module, gamma=0.1, beta=0.0):
    """Replace every BatchNorm2d by a fresh affine one (γ = ``gamma``, β = ``beta``).

    This is the authors' target-side switch: the new layers have fresh running
    statistics (mean 0, variance 1), the same ``eps``/``momentum``, and live on the same
    device. Works in place and returns ``module``.

    Examples
    --------
    >>> net = switch_to_affine(FCRN())
    >>> sum(p.numel() for p in net.parameters())
    987585
    >>> round(float(net.conv3[1].weight[0].detach()), 6)
    0.1
    """
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            ref = next(child.buffers(), None)
            bn = nn.BatchNorm2d(
                child.num_features,
                eps=child.eps,
                momentum=child.momentum,
                affine=True,
                track_running_stats=child.track_running_stats,
            )
            nn.init.constant_(bn.weight, gamma)
            nn.init.constant_(bn.bias, beta)
            if ref is not None:
                bn = bn.to(ref.device)
            bn.train(child.training)
            setattr(module, name, bn)
        else:
            switch_to_affine(child, gamma, beta)
    if isinstance(module, FCRN):
        module.affine = True
    return module


class enable_mc_dropout:
    """Context manager for MC dropout: eval mode except the Dropout2d layer(s), set to ``p``.

    BatchNorm stays in eval mode (running statistics), as the paper's MC-dropout baseline.
    The module's modes and dropout probabilities are restored on exit.

    Examples
    --------
    >>> import torch
    >>> net = FCRN(width=4).eval()
    >>> x = torch.zeros(1, 1, 8, 8)
    >>> with enable_mc_dropout(net, p=0.5):
    ...     net.dropout.training, net.conv1[1].training
    (True, False)
    >>> net.dropout.training, net.dropout.p
    (False, 0.0)
    """

    def __init__(self, module, p=0.5):
        self.module, self.p = module, float(p)

    def __enter__(self):
        self._modes = {m: m.training for m in self.module.modules()}
        self._probs = {}
        self.module.eval()
        for m in self.module.modules():
            if isinstance(m, nn.modules.dropout._DropoutNd):
                self._probs[m] = m.p
                m.p = self.p
                m.train()
        if not self._probs:
            raise ValueError("the module has no dropout layer for MC dropout")
        return self.module

    def __exit__(self, *exc):
        for m, p in self._probs.items():
            m.p = p
        for m, mode in self._modes.items():
            m.training = mode
        return False


def is_affine(module):
    """Whether the module's BatchNorm layers are affine (after :func:`switch_to_affine`)."""
    return any(
        getattr(m, "affine", False) for m in module.modules() if isinstance(m, nn.BatchNorm2d)
    )
