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
    epochs=20,
    batch_size=None,
    random_state=None,
    progress=None,
    checkpoint=None,
):
    """Support fine-tuning: a copy of ``segmenter`` trained on the annotated patches.

    A fresh Adam (the segmenter's ``lr`` and weight decay), the paper's weighted BCE,
    ``epochs`` epochs over ``patches`` in batches of ``batch_size``, as one seeded training
    run of the segmenter (its ``random_state`` seeds the shuffling).

    Parameters
    ----------
    segmenter : FCRNSegmenter
        The starting model (fitted; after PLFT in the paper); it is not changed.
    patches, masks : PatchSet
        The annotated patches and their masks (same coordinates), e.g. what an
        :class:`~kwtl.few_shot.Oracle` revealed.
    epochs : int, default=20
        The paper's 20; 0 returns the copy untrained.
    batch_size : int or None, default=None
        None keeps the segmenter's (64).
    random_state : int or None, default=None
        The copy's seed; None keeps the segmenter's.
    progress : bool, callable or None, default=None
        Progress by training batch.
    checkpoint : object or None, default=None
        Makes the run resumable: an object with ``load()`` (the last saved state, a dict,
        or None) and ``save(**state)``, called after every epoch with the weights, the
        optimizer state, the random generator's state, the epoch and the losses so far. A
        run resumed from a checkpoint ends with the same weights as an uninterrupted one.

    Returns
    -------
    segmenter : FCRNSegmenter
        The fine-tuned copy; ``epoch_losses_`` holds the training loss of every epoch.

    Examples
    --------
    >>> from kwtl.datasets import PatchSet, make_cells
    >>> from kwtl.models import FCRNSegmenter
    >>> images, masks = make_cells(2, 32, random_state=0)
    >>> seg = FCRNSegmenter(module__width=4, patch_size=16, stride=16, precision="fp32",
    ...                     random_state=0).initialize()
    >>> patches = PatchSet.from_images(images, 16, 16)
    >>> tuned = fine_tune(seg, patches, patches.with_arrays(masks), epochs=2, batch_size=4)
    >>> len(tuned.epoch_losses_)
    2
    """
    model = copy.deepcopy(segmenter)
    if batch_size is not None:
        model.set_params(batch_size=int(batch_size))
    if random_state is not None:
        model.set_params(random_state=random_state)
    model.initialize_optimizer()
    saved = None if checkpoint is None else checkpoint.load()
    done, losses = 0, []
    if saved is not None:
        model.module_.load_state_dict(saved["module"])
        model.optimizer_.load_state_dict(saved["optimizer"])
        done, losses = int(saved["epoch"]), list(saved["losses"])
    if done < epochs:
        callbacks = [_EpochLosses(losses, checkpoint)]
        if saved is not None:
            callbacks.append(_RestoreRandomState(saved["rng"]))
        _train(model, patches, masks, int(epochs), callbacks, progress, "fine-tuning", done)
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
