"""What a selector may ask of the model: the :class:`SelectionModel` protocol.

Selectors never reach into a segmenter's internals; they call only the methods below, and
each selector lists the ones it calls in its ``required_methods`` class attribute, so a
model lacking one is refused up front with a clear error. :class:`kwtl.models.FCRNSegmenter`
implements the protocol; any other model that does can be scored by every selector that
needs no more than it provides.
"""

from typing import Protocol, Tuple, Union

import numpy as np
import torch

__all__ = ["SelectionModel"]


class SelectionModel(Protocol):
    """The interface selectors use (a :class:`typing.Protocol`; no base class needed).

    Every entry point takes a stack of same-size **uint8** patches ``(n, h, w)`` (``h`` and
    ``w`` divisible by 8), runs with BatchNorm in eval mode (running statistics), under no
    gradient, and returns a tensor **on the model's device**. A fitted (initialised) model
    is required: selectors call ``check_is_fitted()`` when the model has it.

    Attributes
    ----------
    patch_size : int or (int, int)
        Side of the candidate grid's patches (used to cut images into candidates).
    stride : int or (int, int)
        Step of that grid.
    inference_batch_size : int
        Patches per forward pass; the default scoring chunk of the selectors.
    device : str or torch.device
        Where the returned tensors live.

    Notes
    -----
    Entry points, by the selectors that need them:

    ``patch_logits(patches, mc_dropout=None)``
        Logit maps ``(n, h, w)`` float32. With ``mc_dropout=p`` the dropout layer before
        the last convolution is active with probability ``p`` (MC dropout). Needed by
        :class:`ConsistencySelector`, :class:`EntropySelector`, :class:`MCDropoutSelector`.
    ``mc_dropout_proba(patches, p=0.5, n_passes=10)``
        Mean probability ``(n, h, w)`` over ``n_passes`` MC-dropout passes (optional speed-up:
        :class:`MCDropoutSelector` falls back to ``patch_logits(..., mc_dropout=p)``).
    ``encoder_features(patches)``
        Per-patch encoder features ``(n, d)`` float32 for diversity/representativeness
        selectors (the deepest encoder activations, pooled). Provided by
        :class:`~kwtl.models.FCRNSegmenter` together with the selectors that use it.
    Whole-image (dense) scoring
        Selectors that score whole images at once and read patch scores off the maps
        declare the whole-image entry point they call in ``required_methods`` the same way;
        the name and signature are documented with those selectors.
    """

    patch_size: Union[int, Tuple[int, int]]
    stride: Union[int, Tuple[int, int]]
    inference_batch_size: int
    device: Union[str, torch.device]

    def patch_logits(
        self, patches: np.ndarray, mc_dropout: Union[float, None] = None
    ) -> torch.Tensor:
        """Logits ``(n, h, w)`` of uint8 patches ``(n, h, w)``."""

    def mc_dropout_proba(
        self, patches: np.ndarray, p: float = 0.5, n_passes: int = 10
    ) -> torch.Tensor:
        """Mean MC-dropout probability ``(n, h, w)`` of uint8 patches ``(n, h, w)``."""

    def encoder_features(self, patches: np.ndarray) -> torch.Tensor:
        """Encoder features ``(n, d)`` of uint8 patches ``(n, h, w)``."""
