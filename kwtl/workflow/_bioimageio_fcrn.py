"""kwtl's FCRN as a bioimage.io model architecture (self-contained: imports torch only).

This file is copied unchanged into the model packages that ``kwtl export --format
bioimageio`` writes (``kwtl_fcrn.py``), where bioimage.io consumers (bioimageio.core,
deepImageJ, ilastik) import it to build the network for the ``pytorch_state_dict`` weights;
the TorchScript weights are this same module, scripted. It must therefore not import kwtl.

The network is Dawoud et al.'s FCRN with the same layer names as :class:`kwtl.models.FCRN`
(``conv1.0.weight`` ... ``conv8.bias``), so kwtl's state dicts load unchanged. What kwtl's
``predict_proba`` does around the network is done inside :meth:`KwtlFCRN.forward`, so that a
consumer that feeds the whole image gets kwtl's numbers:

* the input (already scaled to [-1, 1] by the package's preprocessing) is padded at the
  bottom and right by reflection to a multiple of 8 and the output cropped back;
* BatchNorm uses the statistics of each input image itself (kwtl's default
  ``bn_mode="batch"``, which ``kwtl predict`` applies to one image at a time) or the
  running averages (``bn_mode="running"``), whatever the module's train/eval mode;
* the output is the foreground probability (sigmoid of the logits).
"""

from typing import List

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ImageBatchNorm2d", "KwtlFCRN"]


class ImageBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d with a fixed choice of statistics, independent of ``train()``/``eval()``.

    ``image_statistics=True`` normalises each sample with its own mean and (biased)
    variance over the image, which is what a train-mode BatchNorm does to a batch of one
    image; ``False`` uses the running averages, as an eval-mode BatchNorm does.
    """

    def __init__(
        self,
        num_features: int,
        affine: bool = True,
        eps: float = 1e-5,
        image_statistics: bool = True,
    ):
        super().__init__(num_features, eps=eps, affine=affine)
        self.image_statistics = image_statistics

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.image_statistics:
            return F.instance_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
        )


def _block(
    conv: nn.Module, channels: int, affine: bool, eps: float, image_statistics: bool, pool: bool
) -> nn.Sequential:
    layers: List[nn.Module] = [
        conv,
        ImageBatchNorm2d(channels, affine, eps, image_statistics),
        nn.ReLU(),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


class KwtlFCRN(nn.Module):
    """FCRN: (N, 1, H, W) input scaled to [-1, 1] -> (N, 1, H, W) foreground probability.

    Parameters
    ----------
    width : int
        Base width ``c`` (encoder ``c, 2c, 4c, 16c``, decoder ``4c, 2c, c``).
    affine : bool
        Whether the BatchNorm layers have a learnt scale and shift.
    bn_mode : {"batch", "running"}
        BatchNorm statistics: each image's own, or the running averages.
    eps : float
        BatchNorm epsilon.
    """

    def __init__(
        self, width: int = 32, affine: bool = True, bn_mode: str = "batch", eps: float = 1e-5
    ):
        super().__init__()
        if bn_mode not in ("batch", "running"):
            raise ValueError(f"bn_mode must be 'batch' or 'running', got {bn_mode!r}")
        c, own = int(width), bn_mode == "batch"

        def conv(i: int, o: int) -> nn.Module:
            return nn.Conv2d(i, o, 3, stride=1, padding=1, bias=False)

        def deconv(i: int, o: int) -> nn.Module:
            return nn.ConvTranspose2d(i, o, 2, stride=2, bias=False)

        self.conv1 = _block(conv(1, c), c, affine, eps, own, pool=True)
        self.conv2 = _block(conv(c, 2 * c), 2 * c, affine, eps, own, pool=True)
        self.conv3 = _block(conv(2 * c, 4 * c), 4 * c, affine, eps, own, pool=True)
        self.conv4 = _block(conv(4 * c, 16 * c), 16 * c, affine, eps, own, pool=False)
        self.conv5 = _block(deconv(16 * c, 4 * c), 4 * c, affine, eps, own, pool=False)
        self.conv6 = _block(deconv(4 * c, 2 * c), 2 * c, affine, eps, own, pool=False)
        self.conv7 = _block(deconv(2 * c, c), c, affine, eps, own, pool=False)
        self.conv8 = nn.Conv2d(c, 1, 3, stride=1, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        ph, pw = (8 - h % 8) % 8, (8 - w % 8) % 8
        if ph > 0 or pw > 0:  # kwtl pads the bottom and right by reflection
            x = F.pad(x, [0, pw, 0, ph], mode="reflect")
        x = self.conv4(self.conv3(self.conv2(self.conv1(x))))
        x = self.conv8(self.conv7(self.conv6(self.conv5(x))))
        return torch.sigmoid(x[:, :, :h, :w])
