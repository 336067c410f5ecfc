"""Representativeness on the model's encoder features (k-means / TypiClust-style)."""

import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors

from ..utils import derive_seed
from ..utils.validation import POSITIVE_INT, Options
from ._base import BaseSelector
from ._pixel import PixelSelector

__all__ = ["RepresentativeSelector", "dense_encoder_features", "representative_order", "typicality"]

_WITHIN = ("centre", "typical")


def typicality(features, n_neighbors=20):
    """TypiClust's typicality: inverse mean Euclidean distance to the k nearest neighbours.

    Examples
    --------
    >>> import numpy as np
    >>> typicality(np.array([[0.0], [1.0], [3.0]]), n_neighbors=1).round(3).tolist()
    [1.0, 1.0, 0.5]
    """
    x = np.asarray(features, dtype=np.float64)
    k = min(int(n_neighbors), len(x) - 1)
    if k < 1:
        return np.ones(len(x))
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    return 1.0 / np.maximum(dist[:, 1:].mean(axis=1), 1e-12)


def dense_encoder_features(pool, estimator):
    """Per-candidate encoder features from one encoder pass per image.

    Each image (reflect-padded to a multiple of 8) goes through the encoder once
    (:func:`~kwtl.models._features.image_encoder_maps`); a candidate's features are the
    mean of the bottleneck map over the cells its window covers, its corner rounded to the
    nearest cell (integral image, O(1) per candidate).

    Returns
    -------
    features : ndarray of shape (n_candidates, n_channels), float64
    """
    from ..models._features import ENCODER_STRIDE, image_encoder_maps

    s = ENCODER_STRIDE
    ph, pw = (max(1, -(-v // s)) for v in pool.patch_size)
    out = None
    owners = pool.coords[:, 0]
    for i in np.unique(owners):
        which = np.flatnonzero(owners == i)
        image = np.asarray(pool.arrays[i])
        pad = [(0, -n % s) for n in image.shape[:2]]
        maps = image_encoder_maps(estimator, np.pad(image, pad, mode="reflect"))
        c, h, w = maps.shape
        table = np.zeros((c, h + 1, w + 1))
        table[:, 1:, 1:] = maps.astype(np.float64).cumsum(1).cumsum(2)
        r0 = np.clip(np.rint(pool.coords[which, 1] / s).astype(int), 0, h - ph)
        c0 = np.clip(np.rint(pool.coords[which, 2] / s).astype(int), 0, w - pw)
        sums = (
            table[:, r0 + ph, c0 + pw]
            - table[:, r0, c0 + pw]
            - table[:, r0 + ph, c0]
            + table[:, r0, c0]
        )
        if out is None:
            out = np.empty((len(pool), c))
        out[which] = (sums / (ph * pw)).T
    return out


def representative_order(features, labels, centres=None, within="centre", n_neighbors=20):
    """Order: the best candidate of each cluster (largest clusters first), then the second
    best of each, and so on. "Best" is nearest the cluster centre (``within="centre"``) or
    most typical within its cluster (``within="typical"``, TypiClust).

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0], [0.1], [0.2], [5.0], [5.2]])
    >>> representative_order(x, [0, 0, 0, 1, 1], centres=np.array([[0.1], [5.1]])).tolist()
    [1, 3, 0, 4, 2]
    """
    x = np.asarray(features, dtype=np.float64)
    labels = np.asarray(labels)
    ids, sizes = np.unique(labels, return_counts=True)
    ids = ids[np.argsort(-sizes, kind="stable")]
    per_cluster = []
    for c in ids:
        members = np.flatnonzero(labels == c)
        if within == "centre":
            goodness = -np.linalg.norm(x[members] - centres[c], axis=1)
        else:
            goodness = typicality(x[members], n_neighbors)
        per_cluster.append(members[np.argsort(-goodness, kind="stable")])
    order = []
    depth = 0
    while len(order) < len(x):
        for members in per_cluster:
            if depth < len(members):
                order.append(members[depth])
        depth += 1
    return np.asarray(order, dtype=np.intp)


class RepresentativeSelector(BaseSelector):
    """Pick candidates that represent the pool in the model's encoder feature space.

    Every candidate is described by its average-pooled bottleneck features
    (``estimator.encoder_features``), reduced by PCA to ``n_components`` dimensions and
    clustered by k-means into ``n_clusters`` clusters. The order takes the best candidate of
    each cluster (largest clusters first; nearest the centre, or most typical as in
    TypiClust), then the second best of each, … so with a budget ``n ≤ n_clusters`` it is
    "one representative per cluster" for the ``n`` largest clusters. No label is read;
    wrap it in :class:`~kwtl.selection.ForegroundGate` to cluster only what the model
    thinks is foreground (the gate ranks its kept candidates by this selector's order).

    Parameters
    ----------
    n_clusters : int, default=20
        Number of k-means clusters (set it to the budget for classic TypiClust); at most
        the number of candidates.
    within : {"centre", "typical"}, default="centre"
        The best candidate of a cluster: nearest its k-means centre, or the most typical
        (inverse mean distance to its ``n_neighbors`` nearest cluster mates, TypiClust).
    n_components : int or None, default=32
        PCA dimensions before clustering (None: raw features).
    n_neighbors : int, default=20
        Neighbours of the typicality (``within="typical"``).
    unit : {"patch", "image"}, default="patch"
        ``"image"``: an image is described by the mean of its patches' features (the
        average-pooled features of the whole image, up to the patch overlap) and the images
        are clustered.
    dense : bool, default=False
        ``True``: the encoder runs once per whole image and each candidate's features are
        the mean of the bottleneck map over its window (to the nearest of the map's 8-pixel
        cells; :func:`dense_encoder_features`), instead of one encoder pass per candidate —
        one pass per image instead of one per candidate on a stride-30 grid. Up to border
        effects the features agree.
    batch_size : int or None, default=None
        Patches per forward pass of the feature extraction (None: the segmenter's
        ``inference_batch_size``).
    random_state : None, int or RandomState, default=None
        Seeds k-means (and PCA's randomised solver).

    Attributes
    ----------
    features_ : ndarray of shape (n_candidates, n_features)
    labels_ : ndarray of shape (n_candidates,)
    scores_ : ndarray

    Examples
    --------
    >>> import numpy as np
    >>> from kwtl.models import FCRNSegmenter
    >>> from kwtl.selection import RepresentativeSelector
    >>> seg = FCRNSegmenter(module__width=4, patch_size=16, stride=16, precision="fp32",
    ...                     random_state=0).initialize()
    >>> patches = np.random.default_rng(0).integers(0, 256, (8, 16, 16), dtype=np.uint8)
    >>> RepresentativeSelector(n_clusters=3, random_state=0).select(patches, 3, seg).shape
    (3,)
    """

    def __init__(
        self,
        n_clusters=20,
        within="centre",
        n_components=32,
        n_neighbors=20,
        *,
        dense=False,
        unit="patch",
        batch_size=None,
        random_state=None,
    ):
        self.dense = dense
        self.n_clusters = n_clusters
        self.within = within
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.unit = unit
        self.batch_size = batch_size
        self.random_state = random_state

    #: The features the candidates are clustered on.
    required_methods = ("encoder_features",)
    #: k-means initialisation is random (reproducible with a seed).
    stochastic = True

    _parameter_constraints = {
        **BaseSelector._parameter_constraints,
        "n_clusters": [POSITIVE_INT],
        "within": [Options(_WITHIN)],
        "n_components": [None, POSITIVE_INT],
        "n_neighbors": [POSITIVE_INT],
        "dense": ["boolean"],
        "batch_size": [None, POSITIVE_INT],
    }

    def _check_estimator(self, estimator, X):
        estimator = super()._check_estimator(estimator, X)
        if not hasattr(estimator, "encoder_features"):
            raise TypeError(
                f"RepresentativeSelector needs a segmenter with an encoder_features "
                f"method (e.g. FCRNSegmenter), got {type(estimator).__name__}"
            )
        return estimator

    def _score_pool(self, pool, estimator):
        if self.dense:
            feats = dense_encoder_features(pool, estimator)
        else:
            step = int(self.batch_size or getattr(estimator, "inference_batch_size", 16) or 1)
            feats = np.concatenate(
                [
                    np.asarray(
                        estimator.encoder_features(PixelSelector._as_batch(batch)), dtype=np.float64
                    )
                    for _, batch in pool.iter_batches(step)
                ]
            )
        if self.unit == "patch":
            return self.scores_from(feats)
        owners = pool.coords[:, 0]
        present = np.unique(owners)  # images without a patch (a subset pool) rank last
        sums = np.zeros((len(pool.arrays), feats.shape[1]))
        np.add.at(sums, owners, feats)
        counts = np.bincount(owners, minlength=len(pool.arrays))
        scores = np.full(len(pool.arrays), -np.inf)
        scores[present] = self.scores_from(sums[present] / counts[present, None])
        return scores

    def scores_from(self, features):
        """Scores (``n − position`` in the order) from precomputed candidate features."""
        self._validate_params()
        x = np.asarray(features, dtype=np.float64)
        n = len(x)
        seed = derive_seed(self.random_state, "representative")
        if self.n_components is not None and min(x.shape) > int(self.n_components):
            x = PCA(n_components=int(self.n_components), random_state=seed).fit_transform(x)
        # k-means cannot make more clusters than there are distinct candidates
        distinct = len(np.unique(x, axis=0))
        k = min(int(self.n_clusters), distinct)
        if k < int(self.n_clusters):
            warnings.warn(
                f"n_clusters={self.n_clusters} but only {distinct} distinct clusters "
                "can be formed from the candidates' features; using "
                f"{k}",
                UserWarning,
                stacklevel=2,
            )
        km = KMeans(n_clusters=k, n_init=3, random_state=seed).fit(x)
        self.features_ = x
        self.labels_ = km.labels_
        order = representative_order(
            x, km.labels_, km.cluster_centers_, self.within, self.n_neighbors
        )
        scores = np.empty(n, dtype=np.float64)
        scores[order] = n - np.arange(n)
        return scores
