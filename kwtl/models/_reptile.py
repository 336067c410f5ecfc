"""First-order Reptile (Nichol et al. 2018): source pre-training outside skorch's loop.

Reptile trains a *copy* of the network on one task at a time and moves the meta weights
towards the adapted copies; skorch's epoch loop (one model, one data set) does not describe
that, so it lives here as a plain function over a module, called by
:meth:`kwtl.models.FCRNSegmenter.meta_fit`.
"""

import copy

import numpy as np
import torch
from tqdm.auto import tqdm

from ..datasets import PatchSet
from ..utils import check_images, check_masks, check_training_masks, derive_seed

__all__ = ["MetaFitting", "first_order_reptile"]


def first_order_reptile(
    meta,
    tasks,
    forward,
    criterion,
    *,
    meta_iterations,
    meta_shots,
    inner_steps,
    inner_lr,
    weight_decay,
    meta_step,
    device,
    rng,
    progress=False,
):
    """Run first-order Reptile on ``meta`` in place; returns the per-iteration losses.

    Each meta-iteration visits ``tasks`` in order. For each, a copy of the meta weights
    takes ``inner_steps`` Adam steps (``inner_lr``, ``weight_decay``) on ``meta_shots``
    patches drawn with replacement (``rng``) from that task; the meta weights then move by
    ``meta_step`` times the mean of the adapted-minus-meta differences. BatchNorm buffers
    of ``meta`` are not updated (as in the authors' code).

    Parameters
    ----------
    meta : torch.nn.Module
        The network; its parameters are updated in place.
    tasks : list of (PatchSet, PatchSet)
        Image patches and mask patches of each task.
    forward : callable
        ``forward(module, uint8_batch) -> logits`` (the segmenter's precision settings).
    criterion : callable
        ``criterion(logits, targets) -> loss``.
    rng : numpy.random.Generator
        Draws the patches of every inner batch.

    Returns
    -------
    history : list of float
        Mean final inner loss per meta-iteration.
    """
    learner = copy.deepcopy(meta).train()
    meta_params = list(meta.parameters())
    history = []
    for _ in tqdm(range(int(meta_iterations)), desc="meta-fit (Reptile)", disable=not progress):
        theta = [p.detach().clone() for p in meta_params]
        delta = [torch.zeros_like(p) for p in meta_params]
        losses = []
        for patches, mask_patches in tasks:
            with torch.no_grad():
                for p, t in zip(learner.parameters(), theta):
                    p.copy_(t)
            optimizer = torch.optim.Adam(
                learner.parameters(), lr=inner_lr, weight_decay=weight_decay
            )
            pick = rng.integers(0, len(patches), size=int(meta_shots))
            xb = torch.from_numpy(patches[pick]).to(device)
            yb = torch.from_numpy(mask_patches[pick].astype(np.float32))[:, None]
            for _step in range(int(inner_steps)):
                optimizer.zero_grad()
                loss = criterion(forward(learner, xb), yb.to(device))
                loss.backward()
                optimizer.step()
            losses.append(float(loss.detach()))
            with torch.no_grad():
                for d, p, t in zip(delta, learner.parameters(), theta):
                    d.add_(p - t)
        with torch.no_grad():
            for p, t, d in zip(meta_params, theta, delta):
                p.copy_(t + float(meta_step) * d / len(tasks))
        history.append(float(np.mean(losses)))
    return history


class MetaFitting:
    """:meth:`meta_fit` of :class:`~kwtl.models.FCRNSegmenter` (source pre-training by
    Reptile), kept beside the algorithm it runs."""

    def meta_fit(self, X, y, groups):
        """Source pre-training by first-order Reptile, one task per group.

        Each meta-iteration visits the groups in sorted order. For each, a copy of the meta
        weights takes ``inner_steps`` Adam steps (``inner_lr``, the optimizer's weight decay) on
        ``meta_shots`` patches drawn with replacement from that group; the meta weights then
        move by ``meta_step`` times the mean of the adapted-minus-meta differences. BatchNorm
        buffers of the meta model are not updated (as in the authors' code).

        Parameters
        ----------
        X : list of 2-D arrays
            Source images (any sizes); cut into patches with ``patch_size`` and ``stride``.
        y : list of 2-D arrays
            Their masks.
        groups : array-like of shape (n_images,)
            Source dataset of each image; one Reptile task per distinct value.

        Returns
        -------
        self
        """
        self._validate_params()
        images = check_images(X, min_size=8)
        masks = check_masks(y, images)
        check_training_masks(masks)
        groups = np.asarray(groups)
        if groups.shape != (len(images),):
            raise ValueError(
                f"groups must have one entry per image ({len(images)}), got shape {groups.shape}"
            )
        if int(self.meta_iterations) < 0 or int(self.inner_steps) < 1 or int(self.meta_shots) < 1:
            raise ValueError("meta_iterations must be >= 0; inner_steps and meta_shots >= 1")
        if not self.initialized_:
            self.initialize()
        tasks = []
        for g in np.unique(groups):
            idx = np.flatnonzero(groups == g)
            patches = PatchSet.from_images(
                [images[i] for i in idx], self.patch_size, self._meta_stride_for(g)
            )
            tasks.append((patches, patches.with_arrays([masks[i] for i in idx])))
        rng = np.random.default_rng(derive_seed(self.random_state, "meta-tasks"))
        seed = derive_seed(self.random_state, "meta")
        if seed is not None:
            torch.manual_seed(seed)
        weight_decay = float(getattr(self, "optimizer__weight_decay", self.weight_decay))
        self.meta_history_ = first_order_reptile(
            self.module_,
            tasks,
            self._forward,
            self.criterion_,
            meta_iterations=self.meta_iterations,
            meta_shots=self.meta_shots,
            inner_steps=self.inner_steps,
            inner_lr=self.inner_lr,
            weight_decay=weight_decay,
            meta_step=self.meta_step,
            device=self.device,
            rng=rng,
            progress=bool(self.verbose),
        )
        self.initialize_optimizer()
        return self

    def _meta_stride_for(self, group):
        step = self.meta_stride
        if step is None:
            return self.stride
        if isinstance(step, dict):
            key = group.item() if hasattr(group, "item") else group
            return step.get(key, step.get("default", self.stride))
        return step
