"""The fine-tuning recipe: how a model learns from a few annotated patches."""

import contextlib
import math
import numbers

import numpy as np
import torch
from sklearn.base import BaseEstimator
from skorch.callbacks import Callback
from torch.utils.data import Dataset

from ..datasets import PatchSet
from ..utils import derive_seed
from ..utils.validation import HasMethods, Interval, Options, validate_params

__all__ = ["FineTuneRecipe", "AugmentedPatchDataset", "ENCODER_LAYERS"]

#: The FCRN's encoder blocks (frozen when ``train_encoder=False``).
ENCODER_LAYERS = ("conv1", "conv2", "conv3", "conv4")


class AugmentedPatchDataset(Dataset):
    """Torch dataset that visits patches in a given ``order``, each visit augmented anew.

    Item ``i`` is patch ``order[i]`` transformed by ``augmenter`` with the generator
    ``numpy.random.default_rng([seed, i])``: the same item always gets the same draw,
    whichever process or batch reads it. Items are ``(uint8 tensor (1, h, w), float32 mask
    tensor (1, h, w))``, like the segmenter's own patch dataset.
    """

    def __init__(self, patches, masks, order, augmenter=None, seed=0):
        if len(masks) != len(patches):
            raise ValueError(f"{len(patches)} patches but {len(masks)} mask patches")
        self.patches, self.masks = patches, masks
        self.order = np.asarray(order, dtype=np.int64)
        self.augmenter, self.seed = augmenter, int(seed)

    def __len__(self):
        return len(self.order)

    def __getitem__(self, i):
        k = int(self.order[i])
        x, y = np.asarray(self.patches[k]), np.asarray(self.masks[k]) != 0
        if self.augmenter is not None and not self.augmenter.is_identity:
            x, y = self.augmenter.transform_pair(x, y, np.random.default_rng([self.seed, i]))
        x = torch.from_numpy(np.require(x, np.uint8, ["C", "W"]))[None]
        return x, torch.from_numpy(np.require(y, np.float32, ["C", "W"]))[None]


def epoch_order(n_items, n_patches, rng):
    """``n_items`` patch indices: shuffled passes over all ``n_patches`` (each pass a new
    permutation), cut to length, so every patch is visited equally often (±1)."""
    passes = -(-int(n_items) // int(n_patches))
    return np.concatenate([rng.permutation(n_patches) for _ in range(passes)])[:n_items]


class _StepSchedule(Callback):
    """skorch callback: the learning rate of each training batch (linear warm-up, then
    constant or cosine decay to 0 over ``total`` batches)."""

    def __init__(self, lr, total, warmup, kind):
        self.lr, self.total, self.warmup, self.kind = lr, total, warmup, kind
        self.t = 0

    def lr_at(self, t):
        if t < self.warmup:
            return self.lr * (t + 1) / self.warmup
        if self.kind == "cosine":
            span = max(1, self.total - self.warmup)
            return self.lr * 0.5 * (1 + math.cos(math.pi * (t - self.warmup) / span))
        return self.lr

    def on_batch_begin(self, net, batch=None, training=False, **kwargs):
        if training:
            for group in net.optimizer_.param_groups:
                group["lr"] = self.lr_at(self.t)
            self.t += 1


@contextlib.contextmanager
def _temporary_callback(segmenter, name, callback):
    """``callback`` on the initialised net for the block only (parameters untouched)."""
    entry = (name, callback.initialize())
    segmenter.callbacks_.append(entry)
    try:
        yield
    finally:
        segmenter.callbacks_.remove(entry)


@contextlib.contextmanager
def _frozen(module, layer_names):
    """Parameters of the named child modules do not train inside the block."""
    params = [p for name in layer_names for p in getattr(module, name).parameters()]
    before = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, before):
            p.requires_grad_(flag)


class FineTuneRecipe(BaseEstimator):
    """How a segmenter is fine-tuned on a few annotated patches: schedule and augmentation.

    A recipe counts its cost in optimiser steps (``steps``), so one fine-tune costs the same
    whatever the number of annotated patches; ``epochs`` gives the paper's epoch-based
    schedule instead. Either way a fresh optimizer (the segmenter's, Adam by default) starts,
    the paper's weighted BCE is the loss and BatchNorm trains in batch mode.

    Parameters
    ----------
    steps : int or None, default=300
        Optimiser steps; batches cycle through shuffled passes over the patches. None when
        ``epochs`` is given.
    epochs : int or None, default=None
        The paper's schedule: ``epochs`` shuffled passes (the last batch of a pass may be
        smaller). With ``augment=None`` this is exactly ``segmenter.partial_fit(patches,
        masks, epochs=epochs)``.
    batch_size : int, default=8
    lr : float or None, default=None
        Peak learning rate; None keeps the segmenter's (1e-4, the paper's).
    weight_decay : float or None, default=None
        None keeps the segmenter's (5e-4, the paper's Adam L2 penalty).
    augment : PatchAugmenter or None, default=None
        Random transforms of every visit of a patch; None trains on the patches as they are.
    schedule : {"constant", "cosine"}, default="constant"
        Learning-rate shape after the warm-up: constant, or cosine decay to 0 at the end.
    warmup : int, default=0
        Steps of linear warm-up from ``lr / warmup`` to ``lr``.
    train_encoder : bool, default=True
        False freezes the encoder (``conv1``-``conv4``): only the decoder learns, and each
        step is cheaper (no backward pass through the encoder).

    Examples
    --------
    >>> from kwtl.datasets import PatchAugmenter, make_cells, PatchSet
    >>> from kwtl.models import FCRNSegmenter, FineTuneRecipe
    >>> images, masks = make_cells(n_images=2, image_size=32, random_state=0)
    >>> seg = FCRNSegmenter(module__width=4, patch_size=16, stride=16,
    ...                     precision="fp32").initialize()
    >>> patches = PatchSet.from_images(images, 16, 16)
    >>> recipe = FineTuneRecipe(steps=3, batch_size=4, augment=PatchAugmenter(flips=True))
    >>> seg = recipe.train(seg, patches, patches.with_arrays(masks), random_state=0)
    >>> len(seg.history[-1, "batches"]), recipe.n_steps(len(patches))
    (3, 3)
    """

    _parameter_constraints = {
        "steps": [None, Interval(numbers.Integral, 1, None, closed="left")],
        "epochs": [None, Interval(numbers.Integral, 1, None, closed="left")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "lr": [None, Interval(numbers.Real, 0, None, closed="neither")],
        "weight_decay": [None, Interval(numbers.Real, 0, None, closed="left")],
        "augment": [None, HasMethods(["transform_pair"], example="PatchAugmenter()")],
        "schedule": [Options(("constant", "cosine"))],
        "warmup": [Interval(numbers.Integral, 0, None, closed="left")],
        "train_encoder": ["boolean"],
    }

    def __init__(
        self,
        steps=300,
        epochs=None,
        batch_size=8,
        lr=None,
        weight_decay=None,
        augment=None,
        schedule="constant",
        warmup=0,
        train_encoder=True,
    ):
        self.steps = steps
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.augment = augment
        self.schedule = schedule
        self.warmup = warmup
        self.train_encoder = train_encoder

    def _validate(self):
        validate_params(
            type(self).__name__, self.get_params(deep=False), self._parameter_constraints
        )
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(
                "give exactly one of steps (a step-based recipe) and epochs (the "
                f"paper's schedule); got steps={self.steps!r}, "
                f"epochs={self.epochs!r}"
            )

    def n_steps(self, n_patches):
        """Optimiser steps this recipe takes on ``n_patches`` annotated patches."""
        self._validate()
        if self.steps is not None:
            return int(self.steps)
        return int(self.epochs) * -(-int(n_patches) // int(self.batch_size))

    def train(self, segmenter, patches, masks, random_state=None, callbacks=()):
        """Fine-tune ``segmenter`` in place on ``patches`` and their ``masks``.

        Parameters
        ----------
        segmenter : FCRNSegmenter
            An initialised segmenter (e.g. a copy of the PLFT model); its optimizer is
            started afresh with the recipe's learning rate and weight decay.
        patches, masks : PatchSet
            The annotated patches and their masks (foreground = non-zero).
        random_state : int or None, default=None
            Seeds the visiting order and the augmentation draws.
        callbacks : sequence of skorch callbacks, default=()
            Extra callbacks for this training only (e.g. a progress bar).

        Returns
        -------
        segmenter : FCRNSegmenter
        """
        self._validate()
        if not isinstance(patches, PatchSet) or not isinstance(masks, PatchSet):
            raise TypeError("patches and masks must be PatchSets (PatchSet.with_arrays)")
        if len(patches) == 0 or len(masks) != len(patches):
            raise ValueError(
                f"need annotated patches with one mask each, got {len(patches)} "
                f"patches and {len(masks)} masks"
            )
        if self.lr is not None:
            segmenter.lr = float(self.lr)
        if self.weight_decay is not None:
            segmenter.weight_decay = float(self.weight_decay)
        segmenter.initialize_optimizer()
        total = self.n_steps(len(patches))
        extra = [(f"kwtl_recipe_{i}", cb) for i, cb in enumerate(callbacks)]
        with contextlib.ExitStack() as stack:
            stack.enter_context(_batch_size(segmenter, self.batch_size))
            if self.schedule != "constant" or self.warmup:
                stack.enter_context(
                    _temporary_callback(
                        segmenter,
                        "kwtl_recipe_schedule",
                        _StepSchedule(float(segmenter.lr), total, int(self.warmup), self.schedule),
                    )
                )
            for name, cb in extra:
                stack.enter_context(_temporary_callback(segmenter, name, cb))
            if not self.train_encoder:
                stack.enter_context(_frozen(segmenter.module_, ENCODER_LAYERS))
            self._run(segmenter, patches, masks, total, random_state)
        return segmenter

    def _run(self, segmenter, patches, masks, total, random_state):
        seed = derive_seed(random_state, "recipe")
        if self.steps is None and self.augment is None:  # the paper's epochs, unchanged
            segmenter.partial_fit(patches, masks, epochs=int(self.epochs))
            return
        rng = np.random.default_rng(seed)
        n = len(patches)
        if self.steps is not None:
            order = epoch_order(total * int(self.batch_size), n, rng)
            dataset = AugmentedPatchDataset(
                patches, masks, order, self.augment, rng.integers(2**31)
            )
            with _no_shuffle(segmenter):
                segmenter.partial_fit(dataset, epochs=1)
            return
        for _ in range(int(self.epochs)):  # epochs with augmentation: a new draw per pass
            dataset = AugmentedPatchDataset(
                patches, masks, rng.permutation(n), self.augment, rng.integers(2**31)
            )
            with _no_shuffle(segmenter):
                segmenter.partial_fit(dataset, epochs=1)


@contextlib.contextmanager
def _batch_size(segmenter, batch_size):
    own = segmenter.batch_size
    segmenter.batch_size = int(batch_size)
    try:
        yield
    finally:
        segmenter.batch_size = own


@contextlib.contextmanager
def _no_shuffle(segmenter):
    """The dataset carries its own seeded order: the loader must not reshuffle it."""
    own = segmenter.shuffle
    segmenter.shuffle = False
    try:
        yield
    finally:
        segmenter.shuffle = own
