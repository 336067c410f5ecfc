"""The lab workflow's commands (``kwtl pretrain``, ``select``, ``finetune``, ``predict``,
``evaluate``, ``export``): their parsers and how their arguments reach :mod:`kwtl.workflow`.
:mod:`kwtl.cli` holds the entry point, ``kwtl run`` and the error handling."""

import argparse

from .selection import SELECTORS

__all__ = []


def _common_options(parser, force_help):
    parser.add_argument("--force", action="store_true", help=force_help)
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--device", default=None, help="torch device: cpu or cuda (default: cpu)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads for torch (default: torch's; on a machine shared "
        "with other work, 1 is often faster)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


_MODEL_HELP = (
    "a model file (kwtl pretrain / kwtl finetune) or the authors' released "
    "weights by name: {names} (found in $KWTL_WEIGHTS, else downloaded from the "
    "authors' pinned commit, sha256 checked)"
)
_AUTO_HELP = (
    "; or 'auto': the released model whose masks agree best with the classical "
    "pseudo-labels of these images (no label read; measured right for fluorescence, "
    "wrong for electron microscopy: the user guide's table 'Which model to start "
    "from' is the measured advice)"
)


def _workflow_parsers(sub):
    from .models import PRETRAINED
    from .selection import DEFAULT_SELECTOR

    model_help = _MODEL_HELP.format(names=", ".join(PRETRAINED))
    fmt = argparse.HelpFormatter  # wraps the descriptions
    pre = sub.add_parser(
        "pretrain",
        help="pre-train a model on annotated folders (Reptile)",
        formatter_class=fmt,
        description="Pre-train the segmentation network on annotated source folders by "
        "first-order Reptile (one task per folder) and write a model file. A "
        "folder holds images/ + masks/ (paired by name) or Cellpose-style pairs "
        "x.tif + x_masks.tif; any PNG/TIFF, 8/16-bit, grey/RGB; binary or "
        "instance-label masks. The paper's schedule (300 meta-iterations) takes "
        "hours on a CPU: start from the authors' weights (--from authors:EM) or "
        "use fewer --meta-iterations. Resumable: rerun the same command.",
    )
    pre.add_argument("sources", nargs="*", metavar="SOURCE_DIR", help="annotated folders")
    pre.add_argument(
        "--out",
        required=True,
        metavar="FILE",
        help="model file to write, e.g. model.kwtl (its sidecar is FILE.json)",
    )
    pre.add_argument(
        "--from",
        dest="start",
        metavar="MODEL",
        help="start from these weights: "
        + model_help
        + "; or 'auto' with --images: the released model that suits those images best "
        "(see kwtl select --model auto)",
    )
    pre.add_argument(
        "--images",
        metavar="IMAGES_DIR",
        default=None,
        help="with --from auto: the lab's unlabelled images to choose for",
    )
    for name, what in (
        ("width", "network width (default 32)"),
        ("patch-size", "training patch size, a multiple of 8 (default 256)"),
        ("stride", "patch grid step (default 30)"),
        ("meta-iterations", "Reptile meta-iterations (default 300)"),
        ("inner-steps", "Adam steps per task (default 30)"),
        ("meta-shots", "patches per task (default 5)"),
    ):
        pre.add_argument(f"--{name}", type=int, default=None, metavar="N", help=what)
    _common_options(pre, "replace an existing --out made from other inputs")

    sel = sub.add_parser(
        "select",
        help="choose what to annotate; write an annotation package",
        formatter_class=fmt,
        description="Pseudo-label fine-tune the model on a folder of unlabelled images, "
        "score every candidate patch (or image) and write an annotation package "
        "to --out: the chosen patches as PNG files named by source image and "
        "position (in colour, contrast-stretched; model_input/ holds them as the model "
        "sees them), selection.csv, contact_sheet.png, an overview picture per source "
        "image holding a chosen item and a "
        "README.txt for the annotator. Resumable: rerun the same command.",
    )
    sel.add_argument("images", metavar="IMAGES_DIR", help="folder of unlabelled images")
    sel.add_argument("--model", required=True, metavar="MODEL", help=model_help + _AUTO_HELP)
    sel.add_argument(
        "--budget",
        required=True,
        type=int,
        metavar="N",
        help="how many patches (or images, --unit image) to annotate",
    )
    sel.add_argument(
        "--unit",
        choices=("patch", "image"),
        default="patch",
        help="annotate patches of the model's patch size (default) or whole images",
    )
    sel.add_argument(
        "--selector",
        default=None,
        metavar="NAME",
        help=f"{', '.join(SELECTORS)} (default {DEFAULT_SELECTOR})",
    )
    sel.add_argument(
        "--channel",
        type=int,
        default=None,
        metavar="C",
        help="channel of multi-channel images (default: grey from RGB)",
    )
    sel.add_argument(
        "--stride",
        type=int,
        default=None,
        metavar="N",
        help="step of the candidate grid (default: the model's)",
    )
    sel.add_argument(
        "--allow-overlap",
        action="store_true",
        help="let chosen patches overlap (the paper's top candidates)",
    )
    sel.add_argument(
        "--pl-epochs",
        type=int,
        default=1,
        metavar="N",
        help="pseudo-label fine-tuning epochs (default 1; 0 skips it)",
    )
    sel.add_argument(
        "--pl-patches",
        type=int,
        default=64,
        metavar="N",
        help="at most N patches for pseudo-label fine-tuning (default 64)",
    )
    sel.add_argument(
        "--exclude",
        nargs="+",
        default=None,
        metavar="PACKAGE",
        help="packages of earlier rounds: never choose a region that overlaps one of theirs",
    )
    sel.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="a Dask scheduler (e.g. tcp://host:8786): score images on its workers",
    )
    sel.add_argument("--out", required=True, metavar="TODO_DIR", help="annotation package")
    _common_options(
        sel,
        "write into a folder kwtl did not make, or replace a selection "
        "made from other inputs (saved masks are kept)",
    )

    fin = sub.add_parser(
        "finetune",
        help="fine-tune on the annotated masks",
        formatter_class=fmt,
        description="Read the masks named in TODO_DIR/selection.csv (binary or instance "
        "labels, PNG/TIFF, same size as their images; every one must be there), "
        "check them (likely inverted, painted pictures, JPEG), "
        "fine-tune the model on them and write a model file. Resumable: "
        "rerun the same command.",
    )
    fin.add_argument(
        "todo",
        nargs="+",
        metavar="TODO_DIR",
        help="folder(s) written by kwtl select (rounds: all of them)",
    )
    fin.add_argument(
        "--from-model",
        "--model",
        dest="model",
        default=None,
        metavar="MODEL",
        help="starting model (default: the first TODO_DIR's model_plft.kwtl, the "
        "model the selection was made with, as in the paper); " + model_help,
    )
    fin.add_argument("--out", required=True, metavar="FILE", help="model file to write")
    fin.add_argument(
        "--steps",
        type=int,
        default=None,
        metavar="N",
        help="optimiser steps of the default recipe (250 steps of batch 8 with random "
        "flips and quarter turns, about 5 minutes on 2 CPU cores)",
    )
    fin.add_argument(
        "--epochs",
        type=int,
        default=None,
        metavar="N",
        help="the paper's schedule instead of the recipe: N epochs, no augmentation, "
        "batches of the model's batch size (the paper: 20)",
    )
    fin.add_argument(
        "--batch-size",
        type=int,
        default=None,
        metavar="N",
        help="patches per batch (default: the recipe's, 8; with --epochs the model's, 64)",
    )
    fin.add_argument(
        "--accept-masks",
        action="store_true",
        help="train on masks the checks flag (likely inverted: over 90%% foreground, or "
        "over half and far above the model's prediction; values that are neither binary "
        "nor instance labels)",
    )
    _common_options(fin, "replace an existing --out made from other inputs")

    pred = sub.add_parser(
        "predict",
        help="segment a folder of images",
        formatter_class=fmt,
        description="Write a full-resolution mask for every image of IMAGES_DIR (same base "
        "name) into MASKS_DIR/masks/, an overlay picture into overlays/, and optionally "
        "probability maps into probabilities/. Resumable: rerun the same command.",
    )
    pred.add_argument("images", metavar="IMAGES_DIR", help="folder of images")
    pred.add_argument("--model", required=True, metavar="MODEL", help=model_help)
    pred.add_argument("--out", required=True, metavar="MASKS_DIR", help="output folder")
    pred.add_argument(
        "--instances",
        action="store_true",
        help="16-bit instance labels (0 background, 1..n one per cell; touching cells "
        "split by a distance-transform watershed, specks under 16 pixels "
        "removed) instead of 0/255 masks",
    )
    pred.add_argument(
        "--probabilities",
        action="store_true",
        help="also write probabilities/NAME_prob.tif, the foreground probability as 16-bit "
        "TIFF (probability = value / 65535)",
    )
    pred.add_argument(
        "--suffix",
        default="",
        metavar="TEXT",
        help="appended to the mask names, e.g. _masks (Cellpose style)",
    )
    pred.add_argument(
        "--format", choices=("png", "tif"), default="png", help="mask file format (default png)"
    )
    pred.add_argument(
        "--channel", type=int, default=None, metavar="C", help="channel of multi-channel images"
    )
    pred.add_argument("--no-overlay", action="store_true", help="no overlays/NAME_overlay.png")
    pred.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="a Dask scheduler (e.g. tcp://host:8786): predict images on its "
        "workers (results identical to a plain run)",
    )
    _common_options(
        pred,
        "write into a folder kwtl did not make, or replace masks predicted "
        "with another model or options",
    )
    from ._cli_evaluate import add_evaluate_parser

    add_evaluate_parser(sub)
    _export_parser(sub, model_help)


def _export_parser(sub, model_help):
    """``kwtl export``: a model file as a bioimage.io package (:mod:`kwtl.workflow._export`)."""
    exp = sub.add_parser(
        "export",
        help="write a model as a bioimage.io package (Fiji, QuPath, ilastik)",
        formatter_class=argparse.HelpFormatter,
        description="Write MODEL as a bioimage.io model package (format 0.5): PyTorch "
        "state-dict weights with their architecture file and TorchScript weights, "
        "kwtl's intensity rule as preprocessing, test tensors computed by kwtl "
        "from --image, a cover, documentation, the paper as citation. Fiji "
        "(deepImageJ), QuPath and ilastik open it.",
    )
    exp.add_argument("model", metavar="MODEL", help=model_help)
    exp.add_argument(
        "--format",
        choices=("bioimageio",),
        default="bioimageio",
        help="package format (default bioimageio)",
    )
    exp.add_argument(
        "--image",
        required=True,
        metavar="FILE",
        help="a typical image (at least 16x16): the package's test input and cover",
    )
    exp.add_argument(
        "--out", required=True, metavar="FILE", help="package to write, e.g. model.zip"
    )
    exp.add_argument("--name", default=None, help="model name (default: from MODEL)")
    exp.add_argument(
        "--author",
        action="append",
        default=None,
        metavar="NAME",
        help="an author (repeat for several; default: this account's user name)",
    )
    exp.add_argument(
        "--license",
        default="MIT",
        metavar="SPDX",
        help="licence of the weights (SPDX identifier, default MIT)",
    )
    exp.add_argument(
        "--channel", type=int, default=None, metavar="C", help="channel of a multi-channel --image"
    )
    exp.add_argument("--force", action="store_true", help="replace an existing --out")
    exp.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for torch")
    exp.add_argument("--device", default=None, help=argparse.SUPPRESS)
    exp.add_argument("--no-progress", action="store_true", help=argparse.SUPPRESS)


def _workflow(args):
    from . import workflow

    if args.command == "evaluate":
        from ._cli_evaluate import run_evaluate

        return run_evaluate(args)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError("--threads must be at least 1")
        import torch

        torch.set_num_threads(args.threads)
    device = args.device
    if device is not None and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available on this machine")
    progress = not args.no_progress
    if args.command == "pretrain":
        workflow.pretrain(
            args.sources,
            args.out,
            start=args.start,
            images=args.images,
            width=args.width,
            patch_size=args.patch_size,
            stride=args.stride,
            meta_iterations=args.meta_iterations,
            inner_steps=args.inner_steps,
            meta_shots=args.meta_shots,
            random_state=args.seed,
            device=device or "cpu",
            overwrite=args.force,
            progress=progress,
            verbose=True,
        )
    elif args.command == "select":
        workflow.select(
            args.images,
            args.model,
            args.budget,
            args.out,
            unit=args.unit,
            selector=args.selector,
            channel=args.channel,
            stride=args.stride,
            allow_overlap=args.allow_overlap,
            pl_epochs=args.pl_epochs,
            pl_max_patches=args.pl_patches,
            exclude=args.exclude,
            scheduler=args.scheduler,
            random_state=args.seed,
            device=device,
            overwrite=args.force,
            progress=progress,
            verbose=True,
        )
    elif args.command == "export":
        workflow.export_bioimageio(
            args.model,
            args.out,
            args.image,
            name=args.name,
            authors=args.author,
            license=args.license,
            channel=args.channel,
            overwrite=args.force,
            verbose=True,
        )
    elif args.command == "finetune":
        workflow.finetune(
            args.todo,
            args.out,
            model=args.model,
            steps=args.steps,
            epochs=args.epochs,
            batch_size=args.batch_size,
            random_state=args.seed,
            device=device,
            overwrite=args.force,
            accept_masks=args.accept_masks,
            progress=progress,
            verbose=True,
        )
    else:
        workflow.predict(
            args.images,
            args.model,
            args.out,
            instances=args.instances,
            probabilities=args.probabilities,
            mask_suffix=args.suffix,
            format=args.format,
            channel=args.channel,
            overlay=not args.no_overlay,
            scheduler=args.scheduler,
            device=device,
            overwrite=args.force,
            progress=progress,
            verbose=True,
        )
    return 0
