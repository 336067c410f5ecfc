"""Training data and precision settings of :class:`~kwtl.models.FCRNSegmenter`."""

import warnings

import numpy as np
import torch
from torch.utils.data import Dataset

from ..utils._masks import patch_foreground_counts

__all__ = ["PatchDataset", "resolve_precision"]


def resolve_precision(precision, device):
    """The autocast dtype for a ``precision`` setting on ``device`` (None = fp32).

    ``"auto"`` picks bfloat16 where the hardware runs it natively: CUDA devices with bf16
    support, and CPUs with AVX-512 bf16 / AMX (oneDNN reports bf16 support).

    Examples
    --------
    >>> resolve_precision("fp32", "cpu") is None
    True
    """
    if precision not in ("fp32", "bf16", "auto"):
        raise ValueError(f"precision must be 'fp32', 'bf16' or 'auto', got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    if kind == "cpu":
        return torch.bfloat16 if _cpu_has_native_bf16() else None
    return None


def _cpu_has_native_bf16():
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - very old/odd builds
        return False


class PatchDataset(Dataset):
    """Torch dataset over a :class:`~kwtl.datasets.PatchSet` of images (and of masks).

    Items are ``(uint8 tensor (1, h, w), float32 mask tensor (1, h, w))``; images stay 8-bit
    until the batch reaches the network, which keeps loader memory small.
    """

    def __init__(self, patches, masks=None):
        if masks is not None and len(masks) != len(patches):
            raise ValueError(f"{len(patches)} patches but {len(masks)} mask patches")
        self.patches, self.masks = patches, masks

    def __len__(self):
        return len(self.patches)

    def __getitem__(self, i):
        # torch.from_numpy needs a writable array: a read-only one (an image read from a file,
        # a memory map) is copied here, never the user's array written to
        x = torch.from_numpy(np.require(self.patches[i], requirements=["C", "W"]))[None]
        if self.masks is None:
            return x, torch.zeros(0)
        y = torch.from_numpy(np.require(self.masks[i], np.float32, ["C", "W"]))[None]
        return x, y


def _warn_if_one_class(mask_patches):
    """Warn (not fail) when no training patch has both classes: legitimately possible for a
    selected support set, but then the model learns only one class from it."""
    counts = patch_foreground_counts(mask_patches)
    area = mask_patches.patch_size[0] * mask_patches.patch_size[1]
    if len(counts) and not np.any((counts > 0) & (counts < area)):
        n_empty = int(np.sum(counts == 0))
        warnings.warn(
            f"none of the {len(counts)} training patches has both foreground and background "
            f"({n_empty} all background, {len(counts) - n_empty} all foreground): the weighted "
            "BCE learns only background from them",
            UserWarning,
            stacklevel=4,
        )
