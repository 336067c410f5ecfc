"""Uncertainty baselines of the paper: predictive entropy and MC-dropout entropy."""

import contextlib

import torch
import torch.nn.functional as F

from ..utils import derive_seed
from ._params import DENSE, OPEN_UNIT, POSITIVE_INT
from ._pixel import PixelSelector
from ._dense import DenseScoringMixin

__all__ = ["EntropySelector", "MCDropoutSelector", "binary_entropy"]


def binary_entropy(p):
    """Per-element binary entropy ``−p log p − (1−p) log(1−p)`` in nats.

    Uses ``torch.special.entr`` (``−x log x`` with ``0 log 0 = 0``), so ``p = 0`` and
    ``p = 1`` give exactly 0 without clamping.

    Parameters
    ----------
    p : torch.Tensor
        Probabilities in [0, 1].

    Returns
    -------
    torch.Tensor of the same shape

    Examples
    --------
    >>> import torch
    >>> binary_entropy(torch.tensor([0.0, 0.5, 1.0]))
    tensor([0.0000, 0.6931, 0.0000])
    """
    return torch.special.entr(p) + torch.special.entr(1.0 - p)


def _entropy_from_logits(z):
    # −p log p − (1−p) log(1−p) with log p = −softplus(−z), log(1−p) = −softplus(z):
    # exact for saturated logits where σ(z) rounds to 0 or 1 in float32.
    p = torch.sigmoid(z)
    return p * F.softplus(-z) + (1.0 - p) * F.softplus(z)


class EntropySelector(DenseScoringMixin, PixelSelector):
    """Select the candidates with the most uncertain prediction (paper baseline).

    One deterministic pass (BatchNorm running statistics, no dropout), ``p = σ(z)``, and the
    per-pixel binary entropy ``−p log p − (1−p) log(1−p)`` (natural log, computed stably
    from the logits); with the default ``reduction="mean"`` the candidate score is the mean
    pixel entropy, largest first.

    Parameters
    ----------
    dense : bool or "auto", default=False
        ``False``: each candidate patch is scored on its own (the paper; exact). ``True``:
        one entropy map per image (:meth:`~kwtl.models.FCRNSegmenter.image_logits`), each
        candidate's score read off by box sums (see :mod:`kwtl.selection._dense`).
        ``"auto"``: dense when the candidates overlap (cover each pixel at least twice on
        average). :meth:`pixel_scores` always returns the exact per-patch maps.
    unit : {"patch", "image"}, default="patch"
    reduction : {"mean", "sum", "max"} or callable, default="mean"
    batch_size : int or None, default=None
    random_state : None, int or RandomState, default=None
        Unused (the score is deterministic); kept for a uniform API.
        See :class:`~kwtl.selection.PixelSelector` for the common parameters.

    Attributes
    ----------
    scores_ : ndarray of shape (n_candidates,)
        Scores of the last :meth:`select` call.

    Examples
    --------
    >>> import numpy as np
    >>> from kwtl.models import FCRNSegmenter
    >>> from kwtl.selection import EntropySelector
    >>> seg = FCRNSegmenter(module__width=4, patch_size=16, stride=16, precision="fp32",
    ...                     random_state=0).initialize()
    >>> images = [np.random.default_rng(0).integers(0, 256, (32, 48), dtype=np.uint8)]
    >>> EntropySelector(unit="image").score(images, seg).shape
    (1,)
    >>> EntropySelector().pixel_scores(images, seg, indices=[0, 5]).shape
    (2, 16, 16)
    """

    _parameter_constraints = {**PixelSelector._parameter_constraints, "dense": DENSE}

    def __init__(
        self, *, dense=False, unit="patch", reduction="mean", batch_size=None, random_state=None
    ):
        super().__init__(
            unit=unit, reduction=reduction, batch_size=batch_size, random_state=random_state
        )
        self.dense = dense

    def _pixel_scores(self, patches, estimator):
        return _entropy_from_logits(estimator.patch_logits(patches))

    def _dense_maps(self, image, corners, patch_size, estimator):
        yield _entropy_from_logits(estimator.image_logits(image[None])[0]), slice(None)


class MCDropoutSelector(DenseScoringMixin, PixelSelector):
    """Select by the entropy of the MC-dropout mean prediction (paper baseline).

    ``n_passes`` stochastic passes with the dropout layer before the last convolution active
    with probability ``p`` (BatchNorm stays in eval mode), ``p̄ = mean_t σ(z_t)``, and the
    per-pixel binary entropy of ``p̄``; with the default ``reduction="mean"`` the score is
    the mean pixel entropy, largest first. The network needs no dropout in training: the
    layer has no parameters and is switched on only here.

    Parameters
    ----------
    n_passes : int, default=10
        Stochastic forward passes ``T``.
    p : float, default=0.5
        Channel dropout probability, in (0, 1).
    dense : bool or "auto", default=False
        ``False``: each candidate patch is scored on its own (the paper). ``True``: one
        MC-dropout entropy map per image
        (:meth:`~kwtl.models.FCRNSegmenter.image_mc_dropout_proba`), each candidate's score
        read off by box sums. The channel-dropout masks are then drawn per image tile rather
        than per patch, so candidates of one image share their Monte-Carlo draws (their
        ranking within the image is not perturbed by independent noise). ``"auto"``: dense
        when the candidates overlap (cover each pixel at least twice on average).
        :meth:`pixel_scores` always returns the exact per-patch maps.
    unit : {"patch", "image"}, default="patch"
    reduction : {"mean", "sum", "max"} or callable, default="mean"
    batch_size : int or None, default=None
    random_state : None, int or RandomState, default=None
        Seeds the dropout masks. With an int, torch is seeded inside
        ``torch.random.fork_rng`` with ``derive_seed(random_state, "mc-dropout")`` at the
        start of every :meth:`score` / :meth:`select` / :meth:`pixel_scores` call, so the
        global torch random state is left untouched and repeated calls agree. With None the
        global torch generator is used (and advanced).
        See :class:`~kwtl.selection.PixelSelector` for the common parameters.

    Attributes
    ----------
    scores_ : ndarray of shape (n_candidates,)
        Scores of the last :meth:`select` call.

    Notes
    -----
    Masks are drawn chunk by chunk and pass by pass, so for a fixed ``random_state`` the
    scores are reproducible only for the same chunking: the same ``batch_size`` (and
    segmenter ``inference_batch_size``), the same pool and the same device. Different
    chunkings give different, equally distributed draws (differences of the order of the
    Monte-Carlo error, which shrinks as ``n_passes`` grows).

    Examples
    --------
    >>> import numpy as np
    >>> from kwtl.models import FCRNSegmenter
    >>> from kwtl.selection import MCDropoutSelector
    >>> seg = FCRNSegmenter(module__width=4, patch_size=16, stride=16, precision="fp32",
    ...                     random_state=0).initialize()
    >>> images = [np.random.default_rng(0).integers(0, 256, (32, 48), dtype=np.uint8)]
    >>> selector = MCDropoutSelector(n_passes=3, random_state=0)
    >>> a = selector.score(images, seg)
    >>> bool((a == selector.score(images, seg)).all())
    True
    """

    stochastic = True
    #: The dropout masks of a seeded run are drawn in one stream over the whole pool, so an
    #: image's scores depend on the images scored before it: scored (and cached) in one pass.
    separable = False

    def __init__(
        self,
        n_passes=10,
        p=0.5,
        *,
        dense=False,
        unit="patch",
        reduction="mean",
        batch_size=None,
        random_state=None,
    ):
        super().__init__(
            unit=unit, reduction=reduction, batch_size=batch_size, random_state=random_state
        )
        self.n_passes = n_passes
        self.p = p
        self.dense = dense

    _parameter_constraints = {
        **PixelSelector._parameter_constraints,
        "n_passes": [POSITIVE_INT],
        "p": [OPEN_UNIT],
        "dense": DENSE,
    }

    @contextlib.contextmanager
    def _scoring_context(self, estimator):
        seed = derive_seed(self.random_state, "mc-dropout")
        if seed is None:
            yield
            return
        device = torch.device(getattr(estimator, "device", "cpu") or "cpu")
        if device.type == "cuda":
            index = device.index if device.index is not None else torch.cuda.current_device()
            with torch.random.fork_rng(devices=[index]):
                torch.random.default_generator.manual_seed(seed)
                with torch.cuda.device(index):
                    torch.cuda.manual_seed(seed)
                yield
        else:
            with torch.random.fork_rng(devices=[]):
                # CPU generator only: torch.manual_seed would also reseed (unforked) GPUs
                torch.random.default_generator.manual_seed(seed)
                yield

    def _pixel_scores(self, patches, estimator):
        if hasattr(estimator, "mc_dropout_proba"):
            mean = estimator.mc_dropout_proba(patches, p=float(self.p), n_passes=int(self.n_passes))
        else:  # any segmenter with patch_logits: full stochastic passes
            mean = None
            for _ in range(int(self.n_passes)):
                prob = torch.sigmoid(estimator.patch_logits(patches, mc_dropout=float(self.p)))
                mean = prob if mean is None else mean.add_(prob)
            mean = mean.div_(int(self.n_passes))
        return binary_entropy(mean)

    def _dense_maps(self, image, corners, patch_size, estimator):
        if hasattr(estimator, "image_mc_dropout_proba"):
            mean = estimator.image_mc_dropout_proba(
                image[None], p=float(self.p), n_passes=int(self.n_passes)
            )[0]
        else:  # any segmenter with image_logits: full stochastic passes
            mean = None
            for _ in range(int(self.n_passes)):
                prob = torch.sigmoid(
                    estimator.image_logits(image[None], mc_dropout=float(self.p))[0]
                )
                mean = prob if mean is None else mean.add_(prob)
            mean = mean.div_(int(self.n_passes))
        yield binary_entropy(mean), slice(None)
