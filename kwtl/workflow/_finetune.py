"""``finetune``: the annotator's masks in, a fine-tuned model file out (resumable)."""

import time

import numpy as np

from .._version import __version__
from ..datasets import PatchSet
from ..few_shot import fine_tune
from ..utils import derive_seed
from ..utils._inputs import check_out_apart
from ..utils.validation import POSITIVE_INT, validate_arguments
from ._auto import foreground_fraction
from ._files import sha256_array
from ._mask_checks import check_foreground
from ._model import load_model, model_source
from ._package import PLFT_MODEL, read_annotations
from ._rounds import package_list
from ._select import COMMON_ARGUMENTS
from ._step import FileStep, fingerprint, say

__all__ = ["finetune", "read_annotations"]


@validate_arguments(
    {
        "steps": [None, POSITIVE_INT],
        "epochs": [None, POSITIVE_INT],
        "batch_size": [None, POSITIVE_INT],
        "accept_masks": ["boolean"],
        **COMMON_ARGUMENTS,
    }
)
def finetune(
    todo_dir,
    out,
    model=None,
    *,
    steps=None,
    epochs=None,
    recipe=None,
    batch_size=None,
    random_state=0,
    device=None,
    overwrite=False,
    accept_masks=False,
    progress=True,
    verbose=False,
):
    """Fine-tune on the annotator's masks of a ``select`` folder; write a model file.

    The method's support fine-tuning, :func:`kwtl.few_shot.fine_tune` (as in
    :class:`~kwtl.FewShotSegmentation`): by default the measured few-label recipe
    (:class:`~kwtl.models.FineTuneRecipe`: 250 steps of batch 8 with random flips and
    quarter turns, a fresh Adam optimizer with the model's ``lr`` and weight decay, the
    paper's weighted BCE; about 5 minutes on 2 CPU cores whatever the number of annotated
    patches), or the paper's ``epochs`` epochs; whole images are cut into the model's patch
    grid; one training run seeded by ``random_state``.

    Resumable: every 25 steps (every epoch of the paper's schedule) the weights, the
    optimizer state and the random stream are checkpointed in a hidden folder beside
    ``out``; a rerun with the same inputs continues from there and ends with the same
    weights as an uninterrupted run. A finished ``out`` made from the same inputs is loaded,
    not recomputed.

    Parameters
    ----------
    todo_dir : str, path-like or list of them
        The folder written by :func:`select`, with the masks saved in it; or several
        (rounds: ``[todo1, todo2]``), whose annotated items are all trained on.
    out : str or path-like
        The fine-tuned model file (e.g. ``tuned.kwtl``); its sidecar records the kwtl
        version, architecture, parameters, the starting model and every annotated image
        and mask with its sha256.
    model : str, path-like, FCRNSegmenter or None, default=None
        Starting model (``kwtl finetune --from-model``); None is the model the (first)
        selection was made with (``todo_dir/model_plft.kwtl``, after pseudo-label
        fine-tuning), as in the paper: each round retrains from it on all masks so far.
    steps : int or None, default=None
        Optimiser steps of the recipe (None: the recipe's, 250).
    epochs : int or None, default=None
        The paper's schedule instead (20 in the paper): that many epochs, no augmentation,
        batches of the model's ``batch_size``. Exclusive with ``steps`` and ``recipe``.
    recipe : FineTuneRecipe or None, default=None
        The whole recipe (None: ``FineTuneRecipe()``, with ``steps`` if given).
    batch_size : int or None, default=None
        None keeps the recipe's (8; with ``epochs``: the model's, 64).
    random_state : int, default=0
    device : str or None, default=None
    overwrite : bool, default=False
        Replace an ``out`` made from other inputs.
    accept_masks : bool, default=False
        Train on masks that the checks flag: likely inverted (more than 90 % foreground, or
        over half and far above what the starting model predicts on the same items,
        :func:`kwtl.workflow._mask_checks.check_foreground`) or neither binary nor
        instance labels (a picture with cells painted on it). Without it such masks are
        refused with the numbers.
    progress : bool or callable, default=True
    verbose : bool, default=False
        Print a one-line summary.

    Returns
    -------
    segmenter : FCRNSegmenter
    """
    started = time.perf_counter()
    packages = package_list(todo_dir, "annotation package")
    todo = packages[0]
    all_data = [read_annotations(folder, accept_masks) for folder in packages]
    check_out_apart(
        out,
        [("the annotation package", folder) for folder in packages]
        + [("the starting model", model)],
    )
    data = {key: [v for d in all_data for v in d[key]] for key in ("images", "masks", "mask_files")}
    data["metadata"] = all_data[0]["metadata"]
    start = todo / PLFT_MODEL if model is None else model
    start_record = model_source(start)
    items = []
    for folder, d in zip(packages, all_data):
        for r, p, im, m in zip(
            d["table"].itertuples(index=False), d["mask_files"], d["images"], d["masks"]
        ):
            items.append(
                {
                    "image": str(r.image_file),
                    "mask": str(p.relative_to(folder)),
                    "image_sha256": sha256_array(im),
                    "mask_sha256": sha256_array(m),
                    # one package keeps the one-package fingerprint of earlier kwtl
                    **({"package": str(folder.resolve())} if len(packages) > 1 else {}),
                }
            )
    from ..models import FineTuneRecipe

    if epochs is not None and (steps is not None or recipe is not None):
        raise ValueError("give epochs (the paper's schedule) or steps/recipe, not both")
    if epochs is None:
        recipe = FineTuneRecipe() if recipe is None else recipe
        if steps is not None:
            recipe = recipe.set_params(steps=int(steps), epochs=None)
        recipe._validate()
    settings = {
        "epochs": None if epochs is None else int(epochs),
        "recipe": None if recipe is None else {k: repr(v) for k, v in recipe.get_params().items()},
        "batch_size": batch_size,
        "random_state": int(random_state),
    }
    step = FileStep(
        out, fingerprint("finetune", start_record, items, settings, __version__), overwrite
    )
    if step.finished():
        say(verbose, f"{step.out} is already fine-tuned on these masks; nothing to do")
        return load_model(step.out)

    params = {} if device is None else {"device": device}
    start_model = load_model(start, **params)
    problem = check_foreground(data["masks"], foreground_fraction(start_model, data["images"]))
    if problem and not accept_masks:
        raise ValueError(
            f"{', '.join(map(str, packages))}: {problem} Fix the masks (README.txt there), or "
            "pass accept_masks=True to train on them as they are"
        )
    patches = PatchSet.from_images(data["images"], start_model.patch_size, start_model.stride)
    if len(patches) == 0:
        raise ValueError(
            f"the annotated images are smaller than the model's patches "
            f"({start_model.patch_size}x{start_model.patch_size})"
        )
    seg = fine_tune(
        start_model,
        patches,
        patches.with_arrays(data["masks"]),
        recipe=recipe,
        epochs=epochs,
        batch_size=batch_size,
        random_state=derive_seed(random_state, "finetune"),
        progress=progress,
        checkpoint=step.checkpoint(),
    )
    losses = seg.epoch_losses_
    seg.set_params(random_state=int(random_state))
    step.write(
        seg,
        {
            "step": "finetune",
            "start": start_record,
            "selection": {
                "folder": str(todo.resolve()),
                "fingerprint": data["metadata"].get("fingerprint"),
                "model": data["metadata"].get("model"),
                "images": data["metadata"].get("images"),
            },
            **(
                {
                    "selections": [
                        {
                            "folder": str(f.resolve()),
                            "fingerprint": d["metadata"].get("fingerprint"),
                        }
                        for f, d in zip(packages, all_data)
                    ]
                }
                if len(packages) > 1
                else {}
            ),
            "sources": items,
            "parameters": {
                **settings,
                "batch_size": int(
                    batch_size or (seg.batch_size if recipe is None else recipe.batch_size)
                ),
                "steps": (
                    recipe.n_steps(len(patches))
                    if recipe is not None
                    else int(epochs) * -(-len(patches) // int(seg.batch_size))
                ),
                "lr": float(seg.lr),
                "patches": len(patches),
            },
            "losses": losses,
            "seconds": round(time.perf_counter() - started, 1),
        },
    )
    foreground = float(np.mean([m.mean() for m in data["masks"]]))
    say(
        verbose,
        f"fine-tuned {start_record['name']} for "
        f"{f'{epochs} epochs' if recipe is None else f'{recipe.n_steps(len(patches))} steps'}"
        f" on {len(patches)} "
        f"patches from {len(items)} annotated items"
        f"{f' of {len(packages)} packages' if len(packages) > 1 else ''} "
        f"({100 * foreground:.1f}% foreground); loss {losses[0]:.4f} -> {losses[-1]:.4f}; wrote {step.out}",
    )
    return seg
