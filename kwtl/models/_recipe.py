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

__all__ = [
    "AugmentedPatchDataset",
    "CHUNK_STEPS",
    "ENCODER_LAYERS",
    "FineTuneRecipe",
    "paper_recipe",
]

#: The FCRN's encoder blocks (frozen when ``train_encoder=False``).
ENCODER_LAYERS = ("conv1", "conv2", "conv3", "conv4")


class AugmentedPatchDataset(Dataset):
    """Torch dataset that visits patches in a given ``order``, each visit augmented anew.

    Item ``i`` is patch ``order[i]`` transformed by ``augmenter`` with the generator
    ``numpy.random.default_rng([seed, start + i])``: the same item always gets the same
    draw, whichever process or batch reads it, and a run cut into pieces (``start``: the
    piece's first item in the whole run) draws what the whole run draws. Items are ``(uint8
    tensor (1, h, w), float32 mask tensor (1, h, w))``, like the segmenter's own dataset.
    """

    def __init__(self, patches, masks, order, augmenter=None, seed=0, start=0):
        if len(masks) != len(patches):
            raise ValueError(f"{len(patches)} patches but {len(masks)} mask patches")
        self.patches, self.masks = patches, masks
        self.order = np.asarray(order, dtype=np.int64)
        self.augmenter, self.seed, self.start = augmenter, int(seed), int(start)

    def __len__(self):
        return len(self.order)

    def __getitem__(self, i):
        k = int(self.order[i])
        x, y = np.asarray(self.patches[k]), np.asarray(self.masks[k]) != 0
        if self.augmenter is not None and not self.augmenter.is_identity:
            rng = np.random.default_rng([self.seed, self.start + i])
            x, y = self.augmenter.transform_pair(x, y, rng)
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

    def __init__(self, lr, total, warmup, kind, start=0):
        self.lr, self.total, self.warmup, self.kind = lr, total, warmup, kind
        self.t = int(start)

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


#: The chunk of a step-based run between two checkpoints (:meth:`FineTuneRecipe.chunks`).
CHUNK_STEPS = 25


def paper_recipe(batch_size=64):
    """The paper's support fine-tuning: 20 epochs, no augmentation (the segmenter's Adam,
    learning rate and weight decay), batches of ``batch_size``.

    Examples
    --------
    >>> paper_recipe()
    FineTuneRecipe(augment=None, batch_size=64, epochs=20, steps=None)
    """
    return FineTuneRecipe(steps=None, epochs=20, batch_size=batch_size, augment=None)


class FineTuneRecipe(BaseEstimator):
    """How a segmenter is fine-tuned on a few annotated patches: schedule and augmentation.

    A recipe counts its cost in optimiser steps (``steps``), so one fine-tune costs the same
    whatever the number of annotated patches; ``epochs`` gives the paper's epoch-based
    schedule instead (:func:`paper_recipe`). Either way a fresh optimizer (the segmenter's,
    Adam by default) starts, the paper's weighted BCE is the loss and BatchNorm trains in
    batch mode.

    The defaults are the recipe measured best within 6 CPU minutes (2 cores) on the authors'
    splits 0-4 of ssTEM and EM, one image's worth of randomly chosen patches, from the
    authors' PLFT models: 250 steps of batch 8 at the segmenter's learning rate (1e-4) with
    random flips and quarter turns — 46.8 / 59.9 mIoU against 20.7 / 43.1 for the paper's 20
    epochs on the same patches (``benchmarks/results/effort/README.md``).

    Parameters
    ----------
    steps : int or None, default=250
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
    augment : "default", PatchAugmenter or None, default="default"
        Random transforms of every visit of a patch: "default" is ``PatchAugmenter()`` (the
        8 flips and quarter turns of the square); None trains on the patches as they are.
    schedule : {"constant", "cosine"}, default="constant"
        Learning-rate shape after the warm-up: constant, or cosine decay to 0 at the end.
    warmup : int, default=0
        Steps of linear warm-up from ``lr / warmup`` to ``lr``.
    train_encoder : bool, default=True
        False freezes the encoder (``conv1``-``conv4``): only the decoder learns, and each
        step is cheaper (no backward pass through the encoder).

    Examples
    --------
    >>> from kwtl.datasets import make_cells, PatchSet
    >>> from kwtl.models import FCRNSegmenter, FineTuneRecipe
    >>> images, masks = make_cells(n_images=2, image_size=32, random_state=0)
    >>> seg = FCRNSegmenter(module__width=4, patch_size=16, stride=16,
    ...                     precision="fp32").initialize()
    >>> patches = PatchSet.from_images(images, 16, 16)
    >>> recipe = FineTuneRecipe(steps=3, batch_size=4)
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
        "augment": [
            None,
            Options(("default",)),
            HasMethods(["transform_pair"], example="PatchAugmenter()"),
        ],
        "schedule": [Options(("constant", "cosine"))],
        "warmup": [Interval(numbers.Integral, 0, None, closed="left")],
        "train_encoder": ["boolean"],
    }

    def __init__(
        self,
        steps=250,
        epochs=None,
        batch_size=8,
        lr=None,
        weight_decay=None,
        augment="default",
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

    def augmenter(self):
        """The :class:`~kwtl.datasets.PatchAugmenter` in use, or None."""
        if isinstance(self.augment, str):
            from ..datasets import PatchAugmenter

            return PatchAugmenter()
        return self.augment

    @property
    def plain_epochs(self):
        """True for the paper's plain epochs (no augmentation): ``partial_fit`` as it is."""
        return self.steps is None and self.augmenter() is None

    def n_steps(self, n_patches):
        """Optimiser steps this recipe takes on ``n_patches`` annotated patches."""
        self._validate()
        if self.steps is not None:
            return int(self.steps)
        return int(self.epochs) * -(-int(n_patches) // int(self.batch_size))

    def start(self, segmenter, patches, masks):
        """Check the inputs, set the recipe's learning rate and weight decay on
        ``segmenter`` and start a fresh optimizer."""
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

    def chunks(self, patches, masks, random_state=None, chunk_steps=CHUNK_STEPS):
        """The whole run as torch datasets of at most ``chunk_steps`` batches each (one
        per pass for augmented epochs), in order: training on them one after the other is
        the run; a checkpoint between two chunks makes it resumable. Not for
        :attr:`plain_epochs` (``partial_fit`` on the patches themselves).

        Returns
        -------
        chunks : list of AugmentedPatchDataset
        """
        rng = np.random.default_rng(derive_seed(random_state, "recipe"))
        n, batch, augmenter = len(patches), int(self.batch_size), self.augmenter()
        if self.steps is not None:
            total = int(self.steps) * batch
            order = epoch_order(total, n, rng)
            seed = rng.integers(2**31)
            return [
                AugmentedPatchDataset(
                    patches, masks, order[a : a + chunk_steps * batch], augmenter, seed, a
                )
                for a in range(0, total, chunk_steps * batch)
            ]
        return [  # augmented epochs: one chunk a pass, each with its own draw
            AugmentedPatchDataset(
                patches, masks, rng.permutation(n), augmenter, rng.integers(2**31)
            )
            for _ in range(int(self.epochs))
        ]

    @contextlib.contextmanager
    def training(self, segmenter, total_steps, start_step=0, callbacks=()):
        """Inside the block ``segmenter`` trains as the recipe says: its batch size, no
        reshuffling of a chunk's order, the learning-rate schedule (from ``start_step``),
        the frozen encoder, and extra skorch ``callbacks``."""
        with contextlib.ExitStack() as stack:
            stack.enter_context(_batch_size(segmenter, self.batch_size))
            stack.enter_context(_no_shuffle(segmenter))
            if self.schedule != "constant" or self.warmup:
                schedule = _StepSchedule(
                    float(segmenter.lr), total_steps, int(self.warmup), self.schedule, start_step
                )
                stack.enter_context(
                    _temporary_callback(segmenter, "kwtl_recipe_schedule", schedule)
                )
            for i, cb in enumerate(callbacks):
                stack.enter_context(_temporary_callback(segmenter, f"kwtl_recipe_{i}", cb))
            if not self.train_encoder:
                stack.enter_context(_frozen(segmenter.module_, ENCODER_LAYERS))
            yield

    def train(self, segmenter, patches, masks, random_state=None, callbacks=()):
        """Fine-tune ``segmenter`` in place on ``patches`` and their ``masks``.

        :func:`kwtl.few_shot.fine_tune` runs the same training on a copy, with checkpoints
        and progress; this is the plain run.

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
        self.start(segmenter, patches, masks)
        total = self.n_steps(len(patches))
        if self.plain_epochs:  # the paper's epochs, unchanged
            with contextlib.ExitStack() as stack:
                stack.enter_context(_batch_size(segmenter, self.batch_size))
                for i, cb in enumerate(callbacks):
                    stack.enter_context(_temporary_callback(segmenter, f"kwtl_recipe_{i}", cb))
                if not self.train_encoder:
                    stack.enter_context(_frozen(segmenter.module_, ENCODER_LAYERS))
                segmenter.partial_fit(patches, masks, epochs=int(self.epochs))
            return segmenter
        with self.training(segmenter, total, callbacks=callbacks):
            for chunk in self.chunks(patches, masks, random_state):
                segmenter.partial_fit(chunk, epochs=1)
        return segmenter


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
