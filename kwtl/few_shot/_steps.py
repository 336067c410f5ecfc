"""The method's target-side training steps, one function each.

:class:`~kwtl.FewShotSegmentation`, the lab workflow (:mod:`kwtl.workflow`) and the
benchmark drivers all call these functions, so a change to a step is made once, here. Each
returns a trained *copy* of the model it is given; what the callers add is theirs alone:
caching (the estimator's ``memory``), checkpoints and files (the workflow), progress.
"""

import contextlib
import copy

import numpy as np
from sklearn.base import clone
from skorch.callbacks import Callback

from ..datasets import PatchSet
from ..utils._progress import progress_bar

__all__ = ["fine_tune", "plft_patches", "pseudo_label_fine_tune"]


def plft_patches(images, patch_size, stride, *, cover_border=False, max_patches=None):
    """The patches pseudo-label fine-tuning trains on: the grid of ``images`` (see
    :meth:`~kwtl.datasets.PatchSet.from_images`), thinned to at most ``max_patches`` evenly
    spaced patches (no randomness).

    Examples
    --------
    >>> import numpy as np
    >>> len(plft_patches([np.zeros((64, 64), np.uint8)], 16, 16, max_patches=5))
    5
    """
    patches = PatchSet.from_images(images, patch_size, stride, cover_border=cover_border)
    if max_patches is not None and len(patches) > max_patches:
        keep = np.unique(np.linspace(0, len(patches) - 1, int(max_patches)).round().astype(int))
        patches = patches.subset(keep)
    return patches


def pseudo_label_fine_tune(
    segmenter,
    images,
    pseudo_labeler="default",
    *,
    epochs=100,
    batch_size=128,
    stride=None,
    cover_border=False,
    max_patches=None,
    switch_affine=True,
    recalibrate_batchnorm=True,
    random_state=None,
    progress=None,
):
    """The target-side BatchNorm switch and pseudo-label fine-tuning (PLFT), on a copy.

    The paper's steps between source pre-training and selection: BatchNorm becomes affine
    (γ = 0.1, β = 0), the model trains ``epochs`` epochs on the pseudo-labels of the target
    images (a fresh Adam, the segmenter's ``lr`` and weight decay, the paper's weighted
    BCE), and — an addition of kwtl — the BatchNorm running statistics that the selectors
    use are set to averages over the training patches. The returned model has a fresh
    optimizer, ready for :func:`fine_tune`.

    Parameters
    ----------
    segmenter : FCRNSegmenter
        The source model (fitted); it is not changed.
    images : list of 2-D uint8 images
        The unlabelled target images.
    pseudo_labeler : PseudoLabeler, None or "default", default="default"
        Where the pseudo-labels come from (cloned, then ``fit_transform(images)``);
        "default" is ``PseudoLabeler()``; None trains nothing (only the switch and the
        recalibration).
    epochs : int, default=100
        The paper's 100; 0 trains nothing.
    batch_size : int, default=128
    stride : int or None, default=None
        Step of the training patch grid; None is the segmenter's.
    cover_border : bool, default=False
        Add patches that reach the right and bottom borders (see
        :meth:`~kwtl.datasets.PatchSet.from_images`).
    max_patches : int or None, default=None
        Train on at most this many evenly spaced patches (:func:`plft_patches`).
    switch_affine : bool or "auto", default=True
        True: switch to fresh affine BatchNorm; "auto": only when the model's BatchNorm is
        not affine yet; False: keep the model's BatchNorm.
    recalibrate_batchnorm : bool, default=True
        Set the BatchNorm running statistics to averages over the training patches
        (:meth:`~kwtl.models.FCRNSegmenter.recalibrate_batchnorm`).
    random_state : int or None, default=None
        The copy's seed (weights' shuffling); None keeps the segmenter's.
    progress : bool, callable or None, default=None
        Progress by training batch (see :func:`kwtl.utils._progress.progress_bar`).

    Returns
    -------
    plft_segmenter : FCRNSegmenter

    Examples
    --------
    >>> from kwtl.datasets import make_cells
    >>> from kwtl.models import FCRNSegmenter
    >>> images, _ = make_cells(2, 32, domain="em", random_state=0)
    >>> seg = FCRNSegmenter(module__width=4, patch_size=16, stride=16, precision="fp32",
    ...                     random_state=0).initialize()
    >>> plft = pseudo_label_fine_tune(seg, images, epochs=1, batch_size=4)
    >>> plft is seg, len(plft.history)
    (False, 1)
    """
    seg = copy.deepcopy(segmenter)
    if random_state is not None:
        seg.set_params(random_state=random_state)
    if switch_affine:
        seg.to_affine(if_needed=switch_affine == "auto")
    else:
        seg.initialize_optimizer()
    patches = plft_patches(
        images,
        seg.patch_size,
        seg.stride if stride is None else stride,
        cover_border=cover_border,
        max_patches=max_patches,
    )
    if pseudo_labeler is not None and epochs:
        if isinstance(pseudo_labeler, str):
            from ..pseudo_label import PseudoLabeler

            pseudo_labeler = PseudoLabeler()
        labels = clone(pseudo_labeler).fit_transform(images)
        own_batch = seg.batch_size
        seg.batch_size = int(batch_size)
        try:
            _train(
                seg,
                patches,
                patches.with_arrays(labels),
                int(epochs),
                [],
                progress,
                "pseudo-label fine-tuning",
            )
        finally:
            seg.batch_size = own_batch
    if recalibrate_batchnorm:
        seg.recalibrate_batchnorm(patches)
    seg.initialize_optimizer()  # fine-tuning starts with a fresh optimizer
    return seg


def fine_tune(
    segmenter,
    patches,
    masks,
    *,
    recipe=None,
    epochs=None,
    batch_size=None,
    random_state=None,
    progress=None,
    checkpoint=None,
):
    """Support fine-tuning: a copy of ``segmenter`` trained on the annotated patches.

    By default the measured few-label recipe (:class:`~kwtl.models.FineTuneRecipe`: 250
    steps of batch 8, random flips and quarter turns, the segmenter's Adam, learning rate
    and weight decay, the paper's weighted BCE); ``epochs`` gives the paper's schedule
    instead (that many epochs over ``patches``, no augmentation). One seeded training run
    either way.

    Parameters
    ----------
    segmenter : FCRNSegmenter
        The starting model (fitted; after PLFT in the paper); it is not changed.
    patches, masks : PatchSet
        The annotated patches and their masks (same coordinates), e.g. what an
        :class:`~kwtl.few_shot.Oracle` revealed.
    recipe : FineTuneRecipe or None, default=None
        None is ``FineTuneRecipe()``. Exclusive with ``epochs``.
    epochs : int or None, default=None
        The paper's schedule (:func:`~kwtl.models.paper_recipe`): ``epochs`` epochs in
        batches of ``batch_size`` (default: the segmenter's, 64); 0 returns the copy
        untrained.
    batch_size : int or None, default=None
        Overrides the recipe's batch size (with ``epochs``: the segmenter's).
    random_state : int or None, default=None
        The copy's seed (the order of the patches and the augmentation draws); None keeps
        the segmenter's.
    progress : bool, callable or None, default=None
        Progress by training batch.
    checkpoint : object or None, default=None
        Makes the run resumable: an object with ``load()`` (the last saved state, a dict,
        or None) and ``save(**state)``, called after every epoch (every
        :data:`~kwtl.models._recipe.CHUNK_STEPS` steps of a step-based recipe) with the
        weights, the optimizer state, the random generator's state, the number of epochs
        (chunks) done and the losses so far. A run resumed from a checkpoint ends with the
        same weights as an uninterrupted one.

    Returns
    -------
    segmenter : FCRNSegmenter
        The fine-tuned copy; ``epoch_losses_`` holds the training loss of every epoch
        (chunk).

    Examples
    --------
    >>> from kwtl.datasets import PatchSet, make_cells
    >>> from kwtl.models import FCRNSegmenter, FineTuneRecipe
    >>> images, masks = make_cells(2, 32, random_state=0)
    >>> seg = FCRNSegmenter(module__width=4, patch_size=16, stride=16, precision="fp32",
    ...                     random_state=0).initialize()
    >>> patches = PatchSet.from_images(images, 16, 16)
    >>> tuned = fine_tune(seg, patches, patches.with_arrays(masks), epochs=2, batch_size=4)
    >>> len(tuned.epoch_losses_)
    2
    >>> tuned = fine_tune(seg, patches, patches.with_arrays(masks),
    ...                   recipe=FineTuneRecipe(steps=30, batch_size=4))
    >>> len(tuned.epoch_losses_)  # checkpoints every 25 steps
    2
    """
    from ..models import FineTuneRecipe

    if recipe is not None and epochs is not None:
        raise ValueError("give a recipe or the paper's epochs, not both")
    model = copy.deepcopy(segmenter)
    if random_state is not None:
        model.set_params(random_state=random_state)
    if epochs is not None:
        if batch_size is not None:
            model.set_params(batch_size=int(batch_size))
        return _fine_tune_epochs(model, patches, masks, int(epochs), progress, checkpoint)
    recipe = FineTuneRecipe() if recipe is None else clone(recipe)
    if batch_size is not None:
        recipe.set_params(batch_size=int(batch_size))
    recipe.start(model, patches, masks)
    if recipe.plain_epochs:
        model.set_params(batch_size=int(recipe.batch_size))
        return _fine_tune_epochs(model, patches, masks, int(recipe.epochs), progress, checkpoint)
    return _fine_tune_chunks(model, patches, masks, recipe, progress, checkpoint)


def _resume(model, checkpoint):
    saved = None if checkpoint is None else checkpoint.load()
    if saved is None:
        return None, 0, []
    model.module_.load_state_dict(saved["module"])
    model.optimizer_.load_state_dict(saved["optimizer"])
    return saved, int(saved["epoch"]), list(saved["losses"])


def _fine_tune_epochs(model, patches, masks, epochs, progress, checkpoint):
    """The paper's schedule: ``epochs`` epochs of ``partial_fit`` on the patches."""
    model.initialize_optimizer()
    saved, done, losses = _resume(model, checkpoint)
    if done < epochs:
        callbacks = [_EpochLosses(losses, checkpoint)]
        if saved is not None:
            callbacks.append(_RestoreRandomState(saved["rng"]))
        _train(model, patches, masks, int(epochs), callbacks, progress, "fine-tuning", done)
    model.epoch_losses_ = losses
    return model


def _fine_tune_chunks(model, patches, masks, recipe, progress, checkpoint):
    """A step-based (or augmented) recipe, chunk after chunk, a checkpoint after each."""
    chunks = recipe.chunks(patches, masks, model.random_state)
    total = recipe.n_steps(len(patches))
    saved, done, losses = _resume(model, checkpoint)
    steps_done = sum(-(-len(c) // int(recipe.batch_size)) for c in chunks[:done])
    bar = (
        progress_bar(progress, total, "fine-tuning", "batch", initial=steps_done)
        if progress
        else None
    )
    extra = [_EpochLosses(losses, checkpoint)] + ([_BatchTick(bar)] if bar else [])
    try:
        with recipe.training(model, total, steps_done, callbacks=extra):
            for k in range(done, len(chunks)):
                if k == done and saved is not None:
                    torch_state = saved["rng"]
                    with _callbacks(model, [_RestoreRandomState(torch_state)]):
                        _train(model, chunks[k], None, 1, [], None, "fine-tuning")
                else:
                    _train(model, chunks[k], None, 1, [], None, "fine-tuning")
    finally:
        if bar is not None:
            bar.close()
    model.epoch_losses_ = losses
    return model


def _train(segmenter, X, y, epochs, callbacks, progress, desc, done=0):
    """Epochs ``done + 1 .. epochs`` as one training run of ``segmenter``, with extra skorch
    ``callbacks`` and progress by batch. skorch stops a run quietly on Ctrl-C; here the
    interruption reaches the caller, so an unfinished model is never taken for a trained
    one."""
    finished = _EpochCount()
    with (
        _training_progress(segmenter, progress, epochs, len(X), desc, done=done),
        _callbacks(segmenter, [finished, *callbacks]),
    ):
        segmenter.partial_fit(X, y, epochs=epochs - done)
    if finished.n < epochs - done:
        raise KeyboardInterrupt(f"{desc} interrupted after {done + finished.n} of {epochs} epochs")


# ---------------------------------------------------------------- training helpers
class _EpochLosses(Callback):
    """Record each epoch's loss; save a checkpoint after each epoch when asked."""

    def __init__(self, losses, checkpoint):
        self.losses, self.checkpoint = losses, checkpoint

    def on_epoch_end(self, net, **kwargs):
        import torch

        self.losses.append(float(net.history[-1, "train_loss"]))
        if self.checkpoint is not None:
            self.checkpoint.save(
                module=net.module_,
                optimizer=net.optimizer_.state_dict(),
                rng=torch.get_rng_state(),
                epoch=len(self.losses),
                losses=list(self.losses),
            )


class _EpochCount(Callback):
    def initialize(self):
        self.n = 0
        return self

    def on_epoch_end(self, net, **kwargs):
        self.n += 1


class _RestoreRandomState(Callback):
    """After the segmenter seeds its training run, continue the saved random stream."""

    def __init__(self, state):
        self.state = state

    def on_train_begin(self, net, **kwargs):
        import torch

        torch.set_rng_state(self.state)


class _BatchTick(Callback):
    def __init__(self, bar):
        self.bar = bar

    def on_batch_end(self, net, batch=None, training=None, **kwargs):
        if training:
            self.bar.update(1)


@contextlib.contextmanager
def _callbacks(segmenter, callbacks):
    """``callbacks`` added to the initialised segmenter for the block only (skorch calls
    them after its own hooks; its parameters are untouched)."""
    entries = [(f"kwtl_step_{i}", cb.initialize()) for i, cb in enumerate(callbacks)]
    segmenter.callbacks_.extend(entries)
    try:
        yield
    finally:
        for entry in entries:
            segmenter.callbacks_.remove(entry)


@contextlib.contextmanager
def _training_progress(segmenter, progress, epochs, n_patches, desc, done=0):
    """A progress bar ticked once per training batch of ``segmenter`` inside the block."""
    if not progress:
        yield
        return
    per_epoch = -(-n_patches // int(segmenter.batch_size))
    bar = progress_bar(progress, epochs * per_epoch, desc, "batch", initial=done * per_epoch)
    try:
        with _callbacks(segmenter, [_BatchTick(bar)]):
            yield
    finally:
        bar.close()
