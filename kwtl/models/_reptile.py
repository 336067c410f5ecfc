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

__all__ = ["first_order_reptile"]


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
