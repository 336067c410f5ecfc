"""A deterministic generator of synthetic microscopy images with several imaging domains.

The domains imitate the five benchmarks of the paper closely enough that the domain shift
between them is real (foreground polarity, intensity distribution, texture, object size and
shape, distractors), while being small and fast enough for examples, tests and ``kwtl run``
on a laptop CPU. Every image has hard cases: its contrast and focus vary, some objects are dim
or out of focus, and the EM-like domains have dark structures that are not foreground.

Object sizes are in pixels and object counts scale with the image area, so a larger
``image_size`` shows a larger field of view at the same magnification.

**Foreground density, set from the real data.** The foreground of microscopy is sparse and
its density varies between images: most candidate patches of the EM benchmarks hold no
mitochondrion at all, which is what makes the paper's uncertainty selectors pick empty
background when no ground-truth filter removes it. The object counts and the spread of the
density across images are set so that, at the same field of view, each domain's
foreground matches its real counterpart's (ground-truth masks of ``../shared/data``;
``PYTHONPATH=$PWD python benchmarks/foreground_stats.py``, output in
``benchmarks/results/foreground_stats.json``). The scale is the linear size ratio of the
objects (real / synthetic mean object area, square-rooted): ×3.5 for EM, ×4.7 ssTEM, ×2.9
B5, ×2.8 B39, ×3.0 TNBC, so a 96² synthetic image is a 270–450 px crop of the real
images and a 32² patch a 90–150 px patch. Measured on the real crops (per-image foreground
fraction: mean, coefficient of variation across images; share of patches under the
authors' 360-px/256² filter), with the synthetic domain after the arrow (40 images of 96²,
32² patches, seed 0):

==================  ========================  ================  ==============
domain (real)       fg fraction, real → syn.  CV across images  empty patches
==================  ========================  ================  ==============
em (EM)             0.053 → 0.058             0.65 → 0.61       0.56 → 0.58
sstem (ssTEM)       0.055 → 0.055             0.50 → 0.57       0.54 → 0.51
fluorescence (B5)   0.278 → 0.253             0.18 → 0.26       0.02 → 0.05
fl._dense (B39)     0.175 → 0.165             0.49 → 0.47       0.12 → 0.07
histology (TNBC)    0.180 → 0.173             0.80 → 0.63       0.16 → 0.21
==================  ========================  ================  ==============

Before this calibration the fluorescence domain had half the real foreground (0.146, 21 %
empty patches), ssTEM too many mitochondria (0.070) and the dense-fluorescence and
histology domains a third of the real spread across images (CV 0.22, 0.28). The
density of an image is its domain's mean density times a gamma factor of mean 1 and
coefficient of variation ``_DENSITY_CV[domain]`` (0 where Poisson counts alone already
spread as much as the real crops). B5 here is the DSB2018 substitute of BBBC005
(``../shared/data/README.md``): densely packed nuclei, almost no empty patch.
"""

import numbers
import zlib

import numpy as np
from sklearn.utils import Bunch, check_random_state

from ._domains import _RENDERERS

__all__ = ["SYNTHETIC_DOMAINS", "make_cells", "make_synthetic_benchmark"]


SYNTHETIC_DOMAINS = tuple(_RENDERERS)


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def _check_image_size(image_size):
    if isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool):
        image_size = (int(image_size), int(image_size))
    try:
        height, width = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise TypeError(
            f"image_size must be an int or a pair (H, W) of ints, got {image_size!r}"
        ) from None
    if height < 16 or width < 16:
        raise ValueError(f"image_size must be at least 16 x 16 pixels, got {image_size!r}")
    return height, width


def _check_n_images(n_images):
    if not isinstance(n_images, numbers.Integral) or isinstance(n_images, bool) or n_images < 1:
        raise ValueError(f"n_images must be a positive int, got {n_images!r}")
    return int(n_images)


def _check_domain(domain):
    if domain not in _RENDERERS:
        raise ValueError(f"unknown domain {domain!r}; expected one of {SYNTHETIC_DOMAINS}")
    return domain


def _base_seed(random_state):
    """An int seed, or a fresh ``SeedSequence`` entropy when ``random_state`` is None."""
    if random_state is None:
        return np.random.SeedSequence().entropy
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be non-negative, got {random_state}")
        return int(random_state)
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**63))
    return int(check_random_state(random_state).randint(2**31 - 1))


def _image_streams(seed, domain, n_images):
    """One generator per image, derived from ``(seed, domain)``; image ``i``'s stream does
    not depend on ``n_images`` or on other domains."""
    root = np.random.SeedSequence([seed, zlib.crc32(domain.encode())])
    return [np.random.default_rng(child) for child in root.spawn(n_images)]


def make_cells(n_images=8, image_size=128, domain="fluorescence", random_state=None):
    """Generate synthetic microscopy images of one domain with their ground-truth masks.

    Parameters
    ----------
    n_images : int, default=8
        Number of images.
    image_size : int or (int, int), default=128
        Image height and width (at least 16). Objects keep their size in pixels, and their
        number grows with the area.
    domain : str, default="fluorescence"
        One of :data:`SYNTHETIC_DOMAINS`:

        - ``"fluorescence"``: large round bright nuclei on a dark background, per-image focus
          blur, some dim or out-of-focus nuclei, Poisson noise (BBBC005-like);
        - ``"fluorescence_dense"``: small crowded touching nuclei with chromatin texture,
          uneven illumination, dim and saturated mitotic nuclei (BBBC039-like);
        - ``"histology"``: dark nuclei of mixed size and irregular shape (small round
          lymphocytes, large pale tumour nuclei) in bright fibrous stroma and grey cytoplasm
          (grey H&E, TNBC-like);
        - ``"em"``: dark elongated mitochondria with cristae and a double membrane in granular
          grey cytoplasm with dark vesicles and membranes (FIB-SEM, EPFL EM-like);
        - ``"sstem"``: dark round mitochondria inside neurites outlined by a dense web of
          dark membranes, with dark synaptic dots, on a light background (ssTEM-like).

        The foreground density of each domain and its spread across images are set from the
        real counterpart's ground truth (see the module docstring): about 5 % foreground
        and more than half of the 32² patches empty for ``"em"`` and ``"sstem"``.
    random_state : int, RandomState instance, Generator or None, default=None
        Seed. With an int, image ``i`` depends only on ``(random_state, domain, i)``: the
        first images do not change when ``n_images`` grows, and
        :func:`make_synthetic_benchmark` with the same seed returns the same images.

    Returns
    -------
    images : list of ndarray of shape (H, W), dtype uint8
    masks : list of ndarray of shape (H, W), dtype bool
        Foreground (nuclei or mitochondria), including dim and out-of-focus objects.

    Examples
    --------
    >>> from kwtl.datasets import make_cells
    >>> images, masks = make_cells(n_images=2, image_size=(64, 96), domain="em",
    ...                            random_state=0)
    >>> images[0].shape, images[0].dtype, masks[0].dtype
    ((64, 96), dtype('uint8'), dtype('bool'))
    >>> # bright foreground in fluorescence, dark foreground in EM
    >>> bright, bright_masks = make_cells(1, 64, "fluorescence", random_state=0)
    >>> bool(bright[0][bright_masks[0]].mean() > bright[0][~bright_masks[0]].mean())
    True
    >>> bool(images[0][masks[0]].mean() < images[0][~masks[0]].mean())
    True
    """
    n_images = _check_n_images(n_images)
    shape = _check_image_size(image_size)
    render = _RENDERERS[_check_domain(domain)]
    seed = _base_seed(random_state)
    images, masks = [], []
    for rng in _image_streams(seed, domain, n_images):
        image, mask = render(rng, shape)
        images.append(image)
        masks.append(mask)
    return images, masks


def make_synthetic_benchmark(n_images=12, image_size=128, domains=None, random_state=0):
    """Generate a multi-domain synthetic benchmark shaped like :func:`load_benchmark`'s.

    It is the embedded default data of kwtl: leave-one-domain-out runs on it in minutes on a
    CPU.

    Parameters
    ----------
    n_images : int, default=12
        Number of images per domain.
    image_size : int or (int, int), default=128
        Image height and width.
    domains : str or list of str, default=None
        Domains to generate, in this order; ``None`` means all of :data:`SYNTHETIC_DOMAINS`.
    random_state : int, RandomState instance, Generator or None, default=0
        Seed. Each domain draws from its own stream derived from the seed and the domain
        name, so adding or removing a domain does not change the others' images.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        With keys

        - ``images``: list of ndarray of shape (H, W), dtype uint8, domain after domain;
        - ``masks``: list of ndarray of shape (H, W), dtype bool;
        - ``names``: list of str such as ``"fluorescence_000"``;
        - ``dataset``: ndarray of str, the domain of each image;
        - ``datasets``: list of str, the domain names in order.

    Examples
    --------
    >>> from kwtl.datasets import make_synthetic_benchmark
    >>> data = make_synthetic_benchmark(n_images=2, image_size=64,
    ...                                 domains=["fluorescence", "em"])
    >>> data.names
    ['fluorescence_000', 'fluorescence_001', 'em_000', 'em_001']
    >>> data.dataset
    array(['fluorescence', 'fluorescence', 'em', 'em'], dtype='<U12')
    """
    n_images = _check_n_images(n_images)
    shape = _check_image_size(image_size)
    if domains is None:
        domains = list(SYNTHETIC_DOMAINS)
    elif isinstance(domains, str):
        domains = [domains]
    else:
        domains = list(domains)
    if not domains:
        raise ValueError("domains is empty: give at least one domain")
    for domain in domains:
        _check_domain(domain)
    repeated = sorted({d for d in domains if domains.count(d) > 1})
    if repeated:
        raise ValueError(f"domains listed more than once: {repeated}")

    seed = _base_seed(random_state)
    images, masks, names, dataset = [], [], [], []
    for domain in domains:
        domain_images, domain_masks = make_cells(n_images, shape, domain, random_state=seed)
        images.extend(domain_images)
        masks.extend(domain_masks)
        names.extend(f"{domain}_{i:03d}" for i in range(n_images))
        dataset.extend([domain] * n_images)
    return Bunch(
        images=images,
        masks=masks,
        names=names,
        dataset=np.asarray(dataset, dtype=str),
        datasets=domains,
    )
