"""The entry points selectors call on a segmenter (the :class:`~kwtl.selection.SelectionModel`
protocol): eval-mode logits of patches and of whole images, MC-dropout means and encoder
features, on a BatchNorm-folded copy of the network.

They live beside :mod:`kwtl.models._inference` (the forward passes they run) as a mixin of
:class:`~kwtl.models.FCRNSegmenter`, which provides ``module_``, ``device``,
``inference_batch_size``, ``patch_size``, ``check_is_fitted`` and the precision settings.
"""

import contextlib

import numpy as np
import torch

from ._fcrn import enable_mc_dropout
from ._fold import fold_batchnorm
from ._inference import forward_patches, forward_tiled, mc_dropout_mean_proba

__all__ = ["FoldedModuleCache", "SelectionEntryPoints"]


class SelectionEntryPoints:
    """Mixin: the :class:`~kwtl.selection.SelectionModel` entry points of a segmenter."""

    def patch_logits(self, patches, mc_dropout=None):
        """Logits of uint8 patches with BatchNorm in eval mode (running statistics).

        Used by the selectors. Runs in batches of ``inference_batch_size`` under the
        segmenter's precision setting, on a copy of the network with BatchNorm folded into
        the convolutions (``kwtl.models._fold.fold_batchnorm``; kept until the weights change).

        Parameters
        ----------
        patches : ndarray of shape (n, h, w), dtype uint8
            Same-size patches; h and w divisible by 8.
        mc_dropout : float or None, default=None
            If given, the dropout layer before the last convolution is active with this
            probability (MC dropout); BatchNorm stays in eval mode.

        Returns
        -------
        logits : torch.Tensor of shape (n, h, w), float32, on the segmenter's device
        """
        return self._eval_logits(self._in_chunks, self._check_patches(patches), mc_dropout)

    def mc_dropout_proba(self, patches, p=0.5, n_passes=10):
        """Mean probability of ``n_passes`` MC-dropout passes over uint8 patches.

        Dropout (probability ``p``) is active only in the layer before the last convolution
        and BatchNorm uses its running statistics; the network part before the dropout layer
        is computed once per batch and only the last convolution is repeated.

        Returns
        -------
        proba : torch.Tensor of shape (n, h, w), float32, on the segmenter's device
        """
        return self._eval_mc_mean(self._in_chunks, self._check_patches(patches), p, n_passes)

    def image_logits(self, images, mc_dropout=None):
        """Whole-image logits with BatchNorm in eval mode: the dense selectors' entry point.

        Same network, precision and folded BatchNorm as :meth:`patch_logits`, but over whole
        images of any size: one forward pass per image. A forward pass takes at most
        ``4 * inference_batch_size * patch_size**2`` input pixels: as many whole images as fit,
        or, for an image larger than that, overlapping tiles of it (see
        :func:`~kwtl.models._inference.forward_tiled`; tiles never smaller than 64²), so
        memory is bounded whatever the image size.

        Parameters
        ----------
        images : ndarray of shape (k, H, W), dtype uint8
            Same-shape images (e.g. one image and its augmented copies), computed together.
        mc_dropout : float or None, default=None
            As in :meth:`patch_logits`.

        Returns
        -------
        logits : torch.Tensor of shape (k, H, W), float32, on the segmenter's device
        """
        return self._eval_logits(self._tiled, self._check_images_uint8(images), mc_dropout)

    def image_mc_dropout_proba(self, images, p=0.5, n_passes=10):
        """Whole-image mean MC-dropout probability (as :meth:`mc_dropout_proba`, tiled as
        :meth:`image_logits`; masks are drawn per tile).

        Returns
        -------
        proba : torch.Tensor of shape (k, H, W), float32, on the segmenter's device
        """
        return self._eval_mc_mean(self._tiled, self._check_images_uint8(images), p, n_passes)

    # patches (in chunks) and whole images (in tiles) share the same eval-mode passes
    def _eval_logits(self, run, inputs, mc_dropout):
        module = self._inference_module()
        context = enable_mc_dropout(module, mc_dropout) if mc_dropout else contextlib.nullcontext()
        with context:
            return run(forward_patches, module, inputs)

    def _eval_mc_mean(self, run, inputs, p, n_passes):
        if int(n_passes) < 1:
            raise ValueError(f"n_passes must be at least 1, got {n_passes}")
        module = self._inference_module()
        with enable_mc_dropout(module, p):
            return run(mc_dropout_mean_proba, module, inputs, n_passes=n_passes)

    def _tiled(self, forward, module, images, **kwargs):
        # At most ``budget`` input pixels per forward pass (4 patch_logits chunks). Whole
        # images first: copies of an image that fits go through in groups of whole images,
        # which avoids the tiles' overlapping margins (+15 % pixels for a 768x1024 image in
        # 544-px tiles); only an image larger than the budget is cut into tiles (multiples of
        # 8 on a side).
        budget = 4 * int(self.inference_batch_size) * int(self.patch_size) ** 2
        k, h, w = images.shape
        padded = (-(-h // 8) * 8) * (-(-w // 8) * 8)
        per_pass = max(1, budget // max(1, padded))
        out = []
        for s in range(0, k, per_pass):
            part = images[s : s + per_pass]
            side = max(64, int((budget / len(part)) ** 0.5) // 8 * 8)
            if padded * len(part) <= budget:
                side = max(side, -(-max(h, w) // 8) * 8)  # one tile: the whole image
            out.append(
                forward_tiled(
                    forward,
                    module,
                    part,
                    tile_size=side,
                    device=self.device,
                    dtype=self._amp_dtype,
                    channels_last=self._inference_channels_last,
                    **kwargs,
                )
            )
        return out[0] if len(out) == 1 else torch.cat(out)

    def _check_images_uint8(self, images):
        self.check_is_fitted()
        images = np.asarray(images)
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"images must be a uint8 array (k, H, W) of same-shape images, got "
                f"{images.dtype} {images.shape}"
            )
        return images

    def encoder_features(self, patches):
        """Average-pooled bottleneck features of uint8 patches, ``(n, 16 * width)`` float32.

        BatchNorm in eval mode (running statistics), as for :meth:`patch_logits`; used by the
        representativeness selectors (see :func:`kwtl.models.encoder_features`).
        """
        from ._features import encoder_features

        return encoder_features(self, patches)

    def _in_chunks(self, forward, module, patches, **kwargs):
        """``forward`` over ``inference_batch_size`` patches at a time, concatenated."""
        step = int(self.inference_batch_size)
        out = [
            forward(
                module,
                patches[s : s + step],
                device=self.device,
                dtype=self._amp_dtype,
                channels_last=self._inference_channels_last,
                **kwargs,
            )
            for s in range(0, len(patches), step)
        ]
        if not out:
            return torch.zeros((0,) + patches.shape[1:], device=self.device)
        return torch.cat(out)

    def _inference_module(self):
        """Eval-mode copy of ``module_`` with BatchNorm folded into the convolutions (see
        ``kwtl.models._fold.fold_batchnorm``); rebuilt only when ``module_`` has changed."""
        cache = self.__dict__.get("_folded_cache_")
        if cache is None:
            cache = self._folded_cache_ = FoldedModuleCache()
        folded = cache.get(self.module_)
        if self._inference_channels_last and not getattr(folded, "_kwtl_channels_last", False):
            folded.to(memory_format=torch.channels_last)  # our own copy: converted once
            folded._kwtl_channels_last = True
        return folded

    def _check_patches(self, patches):
        self.check_is_fitted()
        patches = np.asarray(patches)
        if patches.ndim != 3 or patches.dtype != np.uint8:
            raise ValueError(
                f"patches must be a uint8 array (n, h, w), got {patches.dtype} {patches.shape}"
            )
        if patches.shape[1] % 8 or patches.shape[2] % 8:
            raise ValueError(
                f"patch height and width must be divisible by 8, got {patches.shape[1:]}"
            )
        return patches


class FoldedModuleCache:
    """The folded copy of a module, rebuilt only when the module's state has changed.

    The state key is the identity, storage and in-place version counter of every parameter
    and buffer, so optimizer steps, ``load_state_dict``, BatchNorm recalibration and module
    replacement (e.g. :func:`switch_to_affine`) all invalidate the copy.
    """

    def __init__(self):
        self._key = None
        self._folded = None

    @staticmethod
    def _state_key(module):
        tensors = list(module.parameters()) + list(module.buffers())
        return (id(module),) + tuple((id(t), t.data_ptr(), t._version) for t in tensors)

    def get(self, module):
        key = self._state_key(module)
        if self._folded is None or key != self._key:
            self._folded = fold_batchnorm(module)
            self._key = key
        return self._folded

    def clear(self):
        self._key = None
        self._folded = None
