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
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree
from sklearn.utils import Bunch, check_random_state

__all__ = ["SYNTHETIC_DOMAINS", "make_cells", "make_synthetic_benchmark"]


# --------------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------------
def _smooth_noise(rng, shape, sigma):
    """Gaussian-smoothed white noise with unit standard deviation."""
    field = gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    std = field.std()
    return field / std if std > 0 else field


def _count(rng, shape, per_128_square, density=1.0):
    """Poisson object count for a density given per 128 x 128 pixels (times the image's
    ``density`` factor); at least one."""
    return max(1, int(rng.poisson(density * per_128_square * shape[0] * shape[1] / 128.0**2)))


#: Coefficient of variation of the per-image density factor of each domain, set so that the
#: per-image foreground fraction spreads like the real counterpart's at the same field of
#: view (see the module docstring): CV_real² ≈ CV_poisson² + CV_factor².
_DENSITY_CV = {"fluorescence": 0.0, "fluorescence_dense": 0.45, "histology": 0.75,
               "em": 0.0, "sstem": 0.0}


def _density(rng, domain):
    """Per-image density factor: gamma with mean 1 and CV ``_DENSITY_CV[domain]``; 1 (and
    no draw, so the image stream is unchanged) when the CV is 0."""
    cv = _DENSITY_CV[domain]
    if cv <= 0:
        return 1.0
    shape = 1.0 / cv**2
    return float(rng.gamma(shape, 1.0 / shape))


def _place_objects(rng, shape, n_objects, radius, aspect, gap, irregularity=0.0,
                   max_tries=25, preferred=None):
    """Place up to ``n_objects`` ellipses that do not overlap (``gap`` pixels apart).

    ``radius`` and ``aspect`` are ``(low, high)`` ranges: the semi-axes are
    ``radius * sqrt(aspect)`` and ``radius / sqrt(aspect)``. A negative ``gap`` lets
    neighbours overlap by that much (touching, merged cells). ``irregularity`` perturbs the
    outline with low-order harmonics. ``preferred`` is an optional boolean map where object
    centres are accepted more often.

    Returns a list of dicts with the pixel ``rows``/``cols`` of each object, its local
    coordinates ``u`` (along the long axis, in pixels), ``v`` (across) and ``rho`` (0 at
    the centre, 1 on the outline).
    """
    height, width = shape
    occupied = np.zeros(shape, dtype=bool)
    objects = []
    for _ in range(n_objects):
        for _ in range(max_tries):
            r = rng.uniform(*radius)
            ratio = np.sqrt(rng.uniform(*aspect))
            a, b = r * ratio, r / ratio
            r0, c0 = rng.uniform(-0.3 * b, height - 1 + 0.3 * b), rng.uniform(
                -0.3 * b, width - 1 + 0.3 * b)
            if preferred is not None:
                inside = preferred[int(np.clip(r0, 0, height - 1)),
                                   int(np.clip(c0, 0, width - 1))]
                if rng.random() > (0.9 if inside else 0.25):
                    continue
            theta = rng.uniform(0, np.pi)
            extent = int(np.ceil(a * (1 + 2 * irregularity) + max(gap, 0))) + 1
            rows = np.arange(max(0, int(r0) - extent), min(height, int(r0) + extent + 2))
            cols = np.arange(max(0, int(c0) - extent), min(width, int(c0) + extent + 2))
            if rows.size == 0 or cols.size == 0:
                continue
            dr, dc = np.meshgrid(rows - r0, cols - c0, indexing="ij")
            along = dr * np.cos(theta) + dc * np.sin(theta)
            across = -dr * np.sin(theta) + dc * np.cos(theta)
            rho = np.hypot(along / a, across / b)
            if irregularity > 0:
                angle = np.arctan2(across / b, along / a)
                outline = 1.0
                for harmonic in (2, 3, 5):
                    outline = outline + irregularity / harmonic * rng.uniform(0.5, 1.5) * np.cos(
                        harmonic * angle + rng.uniform(0, 2 * np.pi))
                rho = rho / outline
            inside = rho <= 1.0
            if not inside.any():
                continue
            # distance-like margin: rho scaled by the short semi-axis approximates pixels
            keep_out = rho <= 1.0 + gap / b
            rr, cc = np.meshgrid(rows, cols, indexing="ij")
            if occupied[rr[keep_out], cc[keep_out]].any():
                continue
            occupied[rr[inside], cc[inside]] = True
            objects.append(dict(rows=rr[inside], cols=cc[inside], u=along[inside],
                                v=across[inside], rho=rho[inside], a=a, b=b))
            break
    return objects


def _union_mask(shape, objects):
    mask = np.zeros(shape, dtype=bool)
    for obj in objects:
        mask[obj["rows"], obj["cols"]] = True
    return mask


def _membranes(rng, shape, n_cells, width, wobble):
    """Thin dark cell boundaries (0..1) from a warped Voronoi tessellation."""
    height, width_px = shape
    seeds = rng.uniform((0, 0), (height, width_px), size=(max(n_cells, 2), 2))
    rows, cols = np.mgrid[0:height, 0:width_px].astype(np.float64)
    rows += wobble * _smooth_noise(rng, shape, 6)
    cols += wobble * _smooth_noise(rng, shape, 6)
    dist, _ = cKDTree(seeds).query(np.column_stack([rows.ravel(), cols.ravel()]), k=2)
    to_boundary = 0.5 * (dist[:, 1] - dist[:, 0]).reshape(shape)
    return np.exp(-((to_boundary / width) ** 2))


def _electron_exposure(rng, image, contrast, shift):
    """Per-image contrast and brightness, slight defocus, then detector noise."""
    mean = image.mean()
    image = mean + (image - mean) * rng.uniform(*contrast) + rng.uniform(*shift)
    image = gaussian_filter(image, rng.uniform(0.5, 1.0))
    return image + rng.uniform(5, 9) * rng.standard_normal(image.shape)


def _to_uint8(image):
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# domains
# --------------------------------------------------------------------------------------------
def _render_fluorescence(rng, shape):
    """Large, round, well separated bright nuclei on a dark background (BBBC005-like)."""
    objects = _place_objects(rng, shape, _count(rng, shape, 21), radius=(6.0, 11.5),
                             aspect=(1.0, 1.7), gap=2.0, irregularity=0.05)
    in_focus = np.zeros(shape)
    out_of_focus = np.zeros(shape)
    texture = _smooth_noise(rng, shape, 1.5)
    for obj in objects:
        brightness = rng.uniform(110, 230) if rng.random() > 0.2 else rng.uniform(30, 70)
        dome = 1.0 - 0.35 * obj["rho"] ** 2
        layer = out_of_focus if rng.random() < 0.15 else in_focus
        layer[obj["rows"], obj["cols"]] = brightness * dome * (
            1 + 0.1 * texture[obj["rows"], obj["cols"]])
    focus = rng.uniform(0.6, 2.2)  # images differ in focus, like BBBC005's blur levels
    signal = gaussian_filter(in_focus, focus) + gaussian_filter(out_of_focus, focus + 2.5)
    image = rng.uniform(6, 25) + rng.uniform(0.45, 1.05) * signal
    photons_per_level = rng.uniform(0.3, 1.0)
    image = rng.poisson(np.maximum(image, 0) * photons_per_level) / photons_per_level
    return _to_uint8(image), _union_mask(shape, objects)


def _render_fluorescence_dense(rng, shape):
    """Small, crowded, touching nuclei with chromatin texture on an uneven background
    (BBBC039 / U2OS Hoechst-like)."""
    density = _density(rng, "fluorescence_dense")
    objects = _place_objects(rng, shape, _count(rng, shape, 38, density), radius=(3.5, 7.0),
                             aspect=(1.0, 1.6), gap=-1.0, irregularity=0.08)
    signal = np.zeros(shape)
    chromatin = _smooth_noise(rng, shape, 0.8)
    for obj in objects:
        if rng.random() < 0.06:  # condensed mitotic nucleus: small and saturated
            brightness, speckle = rng.uniform(190, 240), 0.05
        elif rng.random() < 0.25:  # dim, low-contrast nucleus
            brightness, speckle = rng.uniform(20, 45), 0.3
        else:
            brightness, speckle = rng.uniform(60, 150), 0.3
        values = brightness * (1 - 0.15 * obj["rho"] ** 2) * (
            1 + speckle * chromatin[obj["rows"], obj["cols"]])
        signal[obj["rows"], obj["cols"]] = np.maximum(values, 0)
    height, width = shape
    rows, cols = np.mgrid[0:height, 0:width]
    centre = rng.uniform((0, 0), (height, width))
    vignette = 1 - 0.35 * (np.hypot(rows - centre[0], cols - centre[1])
                           / np.hypot(height, width)) ** 2
    background = rng.uniform(22, 45) * vignette * (1 + 0.08 * _smooth_noise(rng, shape, 10))
    image = background + rng.uniform(0.55, 1.1) * gaussian_filter(signal, rng.uniform(0.5, 1.2))
    photons_per_level = rng.uniform(1.0, 3.0)
    image = rng.poisson(np.maximum(image, 0) * photons_per_level) / photons_per_level
    return _to_uint8(image), _union_mask(shape, objects)


def _render_histology(rng, shape):
    """Dark nuclei of mixed size and shape in bright fibrous stroma and mid-grey cytoplasm
    (grey H&E, TNBC-like)."""
    fibres = _smooth_noise(rng, shape, (0.8, 5.0) if rng.random() < 0.5 else (5.0, 0.8))
    image = rng.uniform(175, 215) + 12 * fibres + 6 * _smooth_noise(rng, shape, 3)
    tumour_nest = _smooth_noise(rng, shape, 9) > rng.uniform(-0.4, 0.4)
    cytoplasm_level = rng.uniform(135, 165)
    image = np.where(tumour_nest, cytoplasm_level + 8 * _smooth_noise(rng, shape, 1.5), image)
    image = gaussian_filter(image, 1.0)

    density = _density(rng, "histology")
    lymphocytes = _place_objects(rng, shape, _count(rng, shape, 8, density), radius=(3.0, 4.5),
                                 aspect=(1.0, 1.3), gap=0.5, irregularity=0.05)
    occupied = _union_mask(shape, lymphocytes)
    tumour = _place_objects(rng, shape, _count(rng, shape, 15, density), radius=(5.5, 10.0),
                            aspect=(1.1, 2.2), gap=0.0, irregularity=0.18,
                            preferred=tumour_nest & ~occupied)
    # tumour nuclei placed independently may overlap lymphocytes: they then merge, as in H&E
    chromatin = _smooth_noise(rng, shape, 1.2)
    for obj, kind in [(o, "lymphocyte") for o in lymphocytes] + [(o, "tumour") for o in tumour]:
        rows, cols = obj["rows"], obj["cols"]
        if kind == "lymphocyte":
            level = rng.uniform(45, 85) + 6 * chromatin[rows, cols]
        else:
            pale = rng.random() < 0.2  # pale nuclei barely darker than cytoplasm
            level = (rng.uniform(110, 130) if pale else rng.uniform(70, 115)) \
                + 18 * chromatin[rows, cols] - 20 * (obj["rho"] > 0.75)
        image[rows, cols] = level
    stain = rng.uniform(0.7, 1.15)  # staining strength varies between slides
    image = 255 - (255 - gaussian_filter(image, rng.uniform(0.6, 1.2))) * stain
    image += rng.uniform(3, 7) * rng.standard_normal(shape)
    return _to_uint8(image), _union_mask(shape, lymphocytes + tumour)


def _render_em(rng, shape):
    """Elongated mitochondria with cristae and a dark double membrane in granular grey
    cytoplasm with vesicles and sparse membranes (FIB-SEM, EPFL/Lucchi EM-like)."""
    base = rng.uniform(120, 160)
    image = (base + 10 * _smooth_noise(rng, shape, 0.7) + 9 * _smooth_noise(rng, shape, 4)
             - rng.uniform(35, 55) * _membranes(rng, shape, _count(rng, shape, 6), 0.9, 4))
    vesicles = _place_objects(rng, shape, _count(rng, shape, 18), radius=(1.8, 3.8),
                              aspect=(1.0, 1.4), gap=1.0)
    for obj in vesicles:  # dark rim, light lumen: dark like mitochondria but not foreground
        image[obj["rows"], obj["cols"]] += np.where(obj["rho"] > 0.55, -45, 12)
    mitochondria = _place_objects(rng, shape, _count(rng, shape, 5), radius=(6.5, 11.0),
                                  aspect=(2.0, 5.0), gap=3.0, irregularity=0.06)
    for obj in mitochondria:
        darkness = rng.uniform(35, 60) if rng.random() > 0.2 else rng.uniform(15, 25)
        period = rng.uniform(3.0, 5.0)
        cristae = 14 * np.cos(2 * np.pi * obj["u"] / period + rng.uniform(0, 2 * np.pi))
        rim = np.where(obj["rho"] > 0.8, -30, 0)
        grain = 6 * rng.standard_normal(obj["rows"].size)
        image[obj["rows"], obj["cols"]] = base - darkness + cristae + rim + grain
    image = _electron_exposure(rng, image, contrast=(0.7, 1.25), shift=(-15, 15))
    return _to_uint8(image), _union_mask(shape, mitochondria)


def _render_sstem(rng, shape):
    """Uniformly dark, roundish mitochondria inside neurite profiles outlined by a dense web of
    dark membranes on a light background (ssTEM-like)."""
    base = rng.uniform(150, 190)
    membranes = _membranes(rng, shape, _count(rng, shape, 28), rng.uniform(1.0, 1.6), 3)
    image = base + 8 * _smooth_noise(rng, shape, 2) - rng.uniform(65, 95) * membranes
    synaptic = _place_objects(rng, shape, _count(rng, shape, 30), radius=(1.0, 1.8),
                              aspect=(1.0, 1.3), gap=1.0)
    for obj in synaptic:  # vesicles and small densities: dark dots that are not foreground
        image[obj["rows"], obj["cols"]] -= rng.uniform(40, 70)
    mitochondria = _place_objects(rng, shape, _count(rng, shape, 6.3), radius=(4.5, 9.0),
                                  aspect=(1.0, 2.2), gap=2.0, irregularity=0.1)
    matrix = _smooth_noise(rng, shape, 1.0)
    for obj in mitochondria:
        level = rng.uniform(55, 95) if rng.random() > 0.2 else rng.uniform(100, 125)
        image[obj["rows"], obj["cols"]] = (level + 8 * matrix[obj["rows"], obj["cols"]]
                                           - 25 * (obj["rho"] > 0.8))
    image = _electron_exposure(rng, image, contrast=(0.75, 1.2), shift=(-15, 10))
    return _to_uint8(image), _union_mask(shape, mitochondria)


_RENDERERS = {
    "fluorescence": _render_fluorescence,
    "fluorescence_dense": _render_fluorescence_dense,
    "histology": _render_histology,
    "em": _render_em,
    "sstem": _render_sstem,
}

#: Names of the synthetic imaging domains, in the order :func:`make_synthetic_benchmark` uses.
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
