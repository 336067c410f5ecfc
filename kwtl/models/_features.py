"""Per-candidate encoder features and window statistics of whole-image maps.

The label-free selectors (:mod:`kwtl.selection`) need, for every candidate patch, a short
feature vector (representativeness) and statistics of the model's prediction (foreground
gate). Two ways to get them:

* per patch: :func:`encoder_features` runs the encoder on each patch and average-pools its
  bottleneck (the output of ``conv4``, stride 8, ``16 · width`` channels);
* whole image (cheap): :func:`image_encoder_maps` runs the encoder once per image and
  :func:`window_means` averages any map over the windows of a patch grid with an integral
  image, so a pool of tens of thousands of overlapping candidates costs one forward pass per
  image. Up to border effects (a patch is zero-padded at its own border, a window of the
  whole image sees its neighbours) both give the same numbers.
"""

import numpy as np
import torch

from ..datasets import patch_coordinates
from ._inference import _to_input

__all__ = ["encoder_features", "image_encoder_maps", "window_means", "ENCODER_STRIDE"]

#: Down-sampling factor of the bottleneck (three 2x2 poolings).
ENCODER_STRIDE = 8


def _encoder(module):
    return torch.nn.Sequential(module.conv1, module.conv2, module.conv3, module.conv4)


def encoder_features(segmenter, patches, batch_size=None):
    """Average-pooled bottleneck features of uint8 patches (BatchNorm in eval mode).

    Parameters
    ----------
    segmenter : fitted FCRNSegmenter
    patches : ndarray of shape (n, h, w), dtype uint8
        h and w divisible by 8.
    batch_size : int or None
        Patches per forward pass; None uses ``segmenter.inference_batch_size``.

    Returns
    -------
    features : ndarray of shape (n, 16 * width), float32
    """
    patches = segmenter._check_patches(patches)
    step = int(batch_size or segmenter.inference_batch_size)
    encoder = _encoder(segmenter.module_)
    was_training = segmenter.module_.training
    out = []
    try:
        segmenter.module_.eval()
        with torch.no_grad():
            for s in range(0, len(patches), step):
                x = _to_input(patches[s : s + step], segmenter.device, channels_last=False)
                out.append(encoder(x).float().mean(dim=(2, 3)).cpu().numpy())
    finally:
        segmenter.module_.train(was_training)
    if not out:
        return np.zeros((0, segmenter.module_.conv4[0].out_channels), np.float32)
    return np.concatenate(out).astype(np.float32)


def image_encoder_maps(segmenter, image):
    """Bottleneck map ``(C, H / 8, W / 8)`` of one uint8 image (eval-mode BatchNorm).

    H and W must be divisible by 8 (crop or pad first).
    """
    image = np.asarray(image)
    if image.ndim != 2 or image.dtype != np.uint8 or image.shape[0] % 8 or image.shape[1] % 8:
        raise ValueError(
            f"image must be a 2-D uint8 array with sides divisible by 8, got "
            f"{image.dtype} {image.shape}"
        )
    segmenter.check_is_fitted()
    encoder = _encoder(segmenter.module_)
    was_training = segmenter.module_.training
    try:
        segmenter.module_.eval()
        with torch.no_grad():
            x = _to_input(image[None], segmenter.device, channels_last=False)
            return encoder(x).float()[0].cpu().numpy()
    finally:
        segmenter.module_.train(was_training)


def window_means(maps, patch_size, stride, scale=1):
    """Mean of ``maps`` over every window of a patch grid (integral image).

    Parameters
    ----------
    maps : ndarray of shape (H', W') or (C, H', W')
        A map at ``1 / scale`` of the image resolution (e.g. a bottleneck map,
        ``scale=8``).
    patch_size, stride : int or (int, int)
        The grid in image pixels (as :class:`~kwtl.datasets.PatchSet`); both must be
        divisible by ``scale``.
    scale : int, default=1

    Returns
    -------
    means : ndarray of shape (n_windows,) or (n_windows, C), float64
        Row-major window order, the order of ``PatchSet.from_images`` for one image.
    """
    maps = np.asarray(maps, dtype=np.float64)
    squeeze = maps.ndim == 2
    if squeeze:
        maps = maps[None]
    c, h, w = maps.shape
    ph, pw = (patch_size, patch_size) if np.isscalar(patch_size) else patch_size
    coords = patch_coordinates([(h * scale, w * scale)], (ph, pw), stride)
    if any(v % scale for v in (ph, pw)) or np.any(coords[:, 1:] % scale):
        raise ValueError(f"patch_size and stride must be divisible by scale={scale}")
    integral = np.zeros((c, h + 1, w + 1))
    integral[:, 1:, 1:] = maps.cumsum(1).cumsum(2)
    r0, c0 = coords[:, 1] // scale, coords[:, 2] // scale
    r1, c1 = r0 + ph // scale, c0 + pw // scale
    sums = integral[:, r1, c1] - integral[:, r0, c1] - integral[:, r1, c0] + integral[:, r0, c0]
    means = (sums / ((ph // scale) * (pw // scale))).T
    return means[:, 0] if squeeze else means
