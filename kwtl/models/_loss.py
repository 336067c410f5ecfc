"""The weighted binary cross-entropy of the paper (Eq. 2)."""

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["weighted_bce_with_logits", "WeightedBCEWithLogitsLoss"]


def foreground_weights(target):
    """Per-sample positive weight ``N_bg / N_fg`` (1 where a sample has no foreground).

    A sample that is all foreground gets weight ``0 / N_fg = 0`` (the authors' formula), so
    it contributes exactly 0 to the loss: training masks that are all foreground teach
    nothing. kwtl's mask policy therefore refuses such training masks
    (:func:`kwtl.utils.check_training_masks`) and warns when no training patch has both
    classes; the weight itself is kept as the paper's.

    Parameters
    ----------
    target : torch.Tensor of shape (B, ...)
        Binary masks (0/1).

    Returns
    -------
    weights : torch.Tensor of shape (B,)
    """
    flat = target.reshape(target.shape[0], -1)
    n_fg = flat.sum(dim=1)
    n_bg = flat.shape[1] - n_fg
    # A patch without foreground has no positive term, so its weight is irrelevant; 1 avoids
    # the authors' division by zero.
    return torch.where(n_fg > 0, n_bg / n_fg.clamp(min=1), torch.ones_like(n_fg))


def weighted_bce_with_logits(logits, target):
    """Weighted BCE-with-logits with a per-sample background/foreground ratio.

    ``L = -(1 / (B·H·W)) Σ_n Σ_ω [w_n y log σ(z) + (1 - y) log(1 - σ(z))]`` with
    ``w_n = N_bg(n) / N_fg(n)`` counted per sample (the authors' ``calc_weights``).

    Parameters
    ----------
    logits : torch.Tensor of shape (B, 1, H, W) or (B, H, W)
    target : torch.Tensor of the same shape, values in {0, 1}

    Returns
    -------
    loss : torch.Tensor (scalar)

    Examples
    --------
    >>> import torch
    >>> z = torch.zeros(1, 1, 2, 2)
    >>> y = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    >>> # w = 3; each pixel costs log 2, the positive one three times: (3 + 3) / 4 · log 2
    >>> round(float(weighted_bce_with_logits(z, y)), 6) == round(1.5 * float(torch.log(torch.tensor(2.0))), 6)
    True
    """
    logits = logits.float()
    target = target.to(logits.dtype)
    if logits.shape != target.shape:
        raise ValueError(
            f"logits shape {tuple(logits.shape)} != target shape {tuple(target.shape)}"
        )
    w = foreground_weights(target).view(-1, *([1] * (target.dim() - 1)))
    loss = -(w * target * F.logsigmoid(logits) + (1 - target) * F.logsigmoid(-logits))
    return loss.mean()


class WeightedBCEWithLogitsLoss(nn.Module):
    """Module form of :func:`weighted_bce_with_logits`, used as the skorch criterion."""

    def forward(self, logits, target):
        return weighted_bce_with_logits(logits, target)
