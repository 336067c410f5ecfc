"""The synthetic cell domains: building blocks and one renderer per imaging domain
(used by :func:`kwtl.datasets.make_cells`)."""

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.spatial import cKDTree


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
_DENSITY_CV = {
    "fluorescence": 0.0,
    "fluorescence_dense": 0.45,
    "histology": 0.75,
    "em": 0.0,
    "sstem": 0.0,
}


def _density(rng, domain):
    """Per-image density factor: gamma with mean 1 and CV ``_DENSITY_CV[domain]``; 1 (and
    no draw, so the image stream is unchanged) when the CV is 0."""
    cv = _DENSITY_CV[domain]
    if cv <= 0:
        return 1.0
    shape = 1.0 / cv**2
    return float(rng.gamma(shape, 1.0 / shape))


def _place_objects(
    rng, shape, n_objects, radius, aspect, gap, irregularity=0.0, max_tries=25, preferred=None
):
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
            r0, c0 = (
                rng.uniform(-0.3 * b, height - 1 + 0.3 * b),
                rng.uniform(-0.3 * b, width - 1 + 0.3 * b),
            )
            if preferred is not None:
                inside = preferred[int(np.clip(r0, 0, height - 1)), int(np.clip(c0, 0, width - 1))]
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
                        harmonic * angle + rng.uniform(0, 2 * np.pi)
                    )
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
            objects.append(
                dict(
                    rows=rr[inside],
                    cols=cc[inside],
                    u=along[inside],
                    v=across[inside],
                    rho=rho[inside],
                    a=a,
                    b=b,
                )
            )
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
    objects = _place_objects(
        rng,
        shape,
        _count(rng, shape, 21),
        radius=(6.0, 11.5),
        aspect=(1.0, 1.7),
        gap=2.0,
        irregularity=0.05,
    )
    in_focus = np.zeros(shape)
    out_of_focus = np.zeros(shape)
    texture = _smooth_noise(rng, shape, 1.5)
    for obj in objects:
        brightness = rng.uniform(110, 230) if rng.random() > 0.2 else rng.uniform(30, 70)
        dome = 1.0 - 0.35 * obj["rho"] ** 2
        layer = out_of_focus if rng.random() < 0.15 else in_focus
        layer[obj["rows"], obj["cols"]] = (
            brightness * dome * (1 + 0.1 * texture[obj["rows"], obj["cols"]])
        )
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
    objects = _place_objects(
        rng,
        shape,
        _count(rng, shape, 38, density),
        radius=(3.5, 7.0),
        aspect=(1.0, 1.6),
        gap=-1.0,
        irregularity=0.08,
    )
    signal = np.zeros(shape)
    chromatin = _smooth_noise(rng, shape, 0.8)
    for obj in objects:
        if rng.random() < 0.06:  # condensed mitotic nucleus: small and saturated
            brightness, speckle = rng.uniform(190, 240), 0.05
        elif rng.random() < 0.25:  # dim, low-contrast nucleus
            brightness, speckle = rng.uniform(20, 45), 0.3
        else:
            brightness, speckle = rng.uniform(60, 150), 0.3
        values = (
            brightness
            * (1 - 0.15 * obj["rho"] ** 2)
            * (1 + speckle * chromatin[obj["rows"], obj["cols"]])
        )
        signal[obj["rows"], obj["cols"]] = np.maximum(values, 0)
    height, width = shape
    rows, cols = np.mgrid[0:height, 0:width]
    centre = rng.uniform((0, 0), (height, width))
    vignette = (
        1 - 0.35 * (np.hypot(rows - centre[0], cols - centre[1]) / np.hypot(height, width)) ** 2
    )
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
    lymphocytes = _place_objects(
        rng,
        shape,
        _count(rng, shape, 8, density),
        radius=(3.0, 4.5),
        aspect=(1.0, 1.3),
        gap=0.5,
        irregularity=0.05,
    )
    occupied = _union_mask(shape, lymphocytes)
    tumour = _place_objects(
        rng,
        shape,
        _count(rng, shape, 15, density),
        radius=(5.5, 10.0),
        aspect=(1.1, 2.2),
        gap=0.0,
        irregularity=0.18,
        preferred=tumour_nest & ~occupied,
    )
    # tumour nuclei placed independently may overlap lymphocytes: they then merge, as in H&E
    chromatin = _smooth_noise(rng, shape, 1.2)
    for obj, kind in [(o, "lymphocyte") for o in lymphocytes] + [(o, "tumour") for o in tumour]:
        rows, cols = obj["rows"], obj["cols"]
        if kind == "lymphocyte":
            level = rng.uniform(45, 85) + 6 * chromatin[rows, cols]
        else:
            pale = rng.random() < 0.2  # pale nuclei barely darker than cytoplasm
            level = (
                (rng.uniform(110, 130) if pale else rng.uniform(70, 115))
                + 18 * chromatin[rows, cols]
                - 20 * (obj["rho"] > 0.75)
            )
        image[rows, cols] = level
    stain = rng.uniform(0.7, 1.15)  # staining strength varies between slides
    image = 255 - (255 - gaussian_filter(image, rng.uniform(0.6, 1.2))) * stain
    image += rng.uniform(3, 7) * rng.standard_normal(shape)
    return _to_uint8(image), _union_mask(shape, lymphocytes + tumour)


def _render_em(rng, shape):
    """Elongated mitochondria with cristae and a dark double membrane in granular grey
    cytoplasm with vesicles and sparse membranes (FIB-SEM, EPFL/Lucchi EM-like)."""
    base = rng.uniform(120, 160)
    image = (
        base
        + 10 * _smooth_noise(rng, shape, 0.7)
        + 9 * _smooth_noise(rng, shape, 4)
        - rng.uniform(35, 55) * _membranes(rng, shape, _count(rng, shape, 6), 0.9, 4)
    )
    vesicles = _place_objects(
        rng, shape, _count(rng, shape, 18), radius=(1.8, 3.8), aspect=(1.0, 1.4), gap=1.0
    )
    for obj in vesicles:  # dark rim, light lumen: dark like mitochondria but not foreground
        image[obj["rows"], obj["cols"]] += np.where(obj["rho"] > 0.55, -45, 12)
    mitochondria = _place_objects(
        rng,
        shape,
        _count(rng, shape, 5),
        radius=(6.5, 11.0),
        aspect=(2.0, 5.0),
        gap=3.0,
        irregularity=0.06,
    )
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
    synaptic = _place_objects(
        rng, shape, _count(rng, shape, 30), radius=(1.0, 1.8), aspect=(1.0, 1.3), gap=1.0
    )
    for obj in synaptic:  # vesicles and small densities: dark dots that are not foreground
        image[obj["rows"], obj["cols"]] -= rng.uniform(40, 70)
    mitochondria = _place_objects(
        rng,
        shape,
        _count(rng, shape, 6.3),
        radius=(4.5, 9.0),
        aspect=(1.0, 2.2),
        gap=2.0,
        irregularity=0.1,
    )
    matrix = _smooth_noise(rng, shape, 1.0)
    for obj in mitochondria:
        level = rng.uniform(55, 95) if rng.random() > 0.2 else rng.uniform(100, 125)
        image[obj["rows"], obj["cols"]] = (
            level + 8 * matrix[obj["rows"], obj["cols"]] - 25 * (obj["rho"] > 0.8)
        )
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
