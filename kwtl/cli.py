"""The ``kwtl`` command line: ``kwtl run`` runs the main job; ``kwtl pretrain``,
``select``, ``finetune`` and ``predict`` are the lab workflow (:mod:`kwtl.workflow`)."""

import argparse
import os
import re
import sys
import time
import warnings
from pathlib import Path

from ._version import __version__
from .selection import SELECTORS
from .utils._output import OUTPUT_MARKER, OutputFolderError, prepare_output_dir  # noqa: F401

_DESCRIPTION = """\
kwtl: knowing what to label (Dawoud et al., WACV 2023).

The lab workflow, from a folder of unlabelled images to masks:
  kwtl pretrain SOURCE_DIR... --out model.kwtl   (or --from authors:B39 ..., or
                 --from auto --images IMAGES_DIR: the released model that suits them)
  kwtl select IMAGES_DIR --model model.kwtl --budget N --out TODO_DIR
  (annotate the patches in TODO_DIR as its README.txt says)
  kwtl finetune TODO_DIR --out tuned.kwtl
  (round 2: kwtl select ... --exclude TODO_DIR --out TODO2_DIR; annotate;
   kwtl finetune TODO_DIR TODO2_DIR --out tuned2.kwtl)
  kwtl predict IMAGES_DIR --model tuned.kwtl --out MASKS_DIR
  kwtl evaluate MASKS_DIR --truth TRUE_MASKS_DIR   (on a few images you labelled)
  kwtl export tuned.kwtl --format bioimageio --image IMAGE --out model.zip

'kwtl run' runs the whole method (source pre-training, pseudo-label fine-tuning, selection,
fine-tuning on the selected patches, evaluation) for every selector, shot count and repeat,
prints a selector x shots table of mean +- std mIoU, and writes results, plots and a report.
With no options it uses the embedded synthetic benchmark and finishes in minutes on a CPU.
"""


def _parser():
    parser = argparse.ArgumentParser(
        prog="kwtl", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"kwtl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run",
        help="run the method and report mIoU per selector and shots",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "--data",
        metavar="DIR",
        help="folder of datasets (each with images/ and masks/), e.g. ../shared/data; "
        "default: the embedded synthetic benchmark",
    )
    run.add_argument(
        "--target", nargs="+", metavar="NAME", help="target dataset(s); default: the profile's"
    )
    run.add_argument(
        "--selectors",
        nargs="+",
        metavar="NAME",
        help=f"{', '.join(SELECTORS)}; default: the profile's",
    )
    run.add_argument("--shots", nargs="+", type=int, metavar="K", help="shot counts, e.g. 1 3 5")
    run.add_argument("--repeats", type=int, metavar="N", help="random pool/test splits per target")
    run.add_argument(
        "--profile",
        default=None,
        metavar="NAME",
        help="quick (synthetic default), cpu (real data on a CPU) or paper (GPU)",
    )
    run.add_argument(
        "--min-foreground",
        metavar="N|none",
        help="override the profile's ground-truth patch filter (the authors' "
        "360-pixel rule; it reads labels): a pixel count, or 'none'",
    )
    run.add_argument(
        "--splits",
        metavar="FILE|none",
        help="the authors' splits.json (fixed test sets of ssTEM and EM); default: "
        "$KWTL_SPLITS, else reference/splits.json in a parent folder of --data "
        "(e.g. ../shared/reference/splits.json for --data ../shared/data); "
        "'none' draws seeded random splits",
    )
    run.add_argument("--device", default="cpu", help="torch device: cpu or cuda (default cpu)")
    run.add_argument(
        "--out",
        default="kwtl_output",
        metavar="DIR",
        help="output folder (default kwtl_output); a folder kwtl made is resumed, "
        "a non-empty folder kwtl did not make is refused",
    )
    mode = run.add_mutually_exclusive_group()
    mode.add_argument(
        "--resume", action="store_true", help="require --out to hold a kwtl run and continue it"
    )
    mode.add_argument(
        "--force",
        action="store_true",
        help="write into a non-empty --out that kwtl did not make (files named "
        "like kwtl's outputs, e.g. report.md, are replaced)",
    )
    run.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    run.add_argument(
        "--n-jobs", type=int, default=1, metavar="N", help="parallel jobs (joblib; default 1)"
    )
    run.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads per job for torch (default: the CPU cores divided by "
        "--n-jobs, torch's own default for one job). On a machine shared "
        "with other work use --threads 1: torch's threads wait for busy "
        "cores, and the quick start ran 9-19x slower with the default than "
        "with one thread on a busy 2-core machine",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    _workflow_parsers(sub)
    return parser


def subcommands():
    """The names of the ``kwtl`` commands, in the order of ``kwtl --help``."""
    actions = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return list(actions[0].choices)


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


def _set_threads(threads, n_jobs):
    """Apply the ``--threads`` choice to this process and to joblib's worker processes."""
    import torch

    n_jobs = int(n_jobs)
    if n_jobs < 1:  # joblib: -1 = all CPUs, -2 = all but one ...
        n_jobs = max(1, (os.cpu_count() or 1) + 1 + n_jobs)
    if threads is None:
        threads = max(1, torch.get_num_threads() // n_jobs)
    if threads < 1:
        raise ValueError("--threads must be at least 1")
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # read by the workers' torch at start-up
    return threads


def _run(args):
    from .experiments import run_experiment, selector_shots_table

    profile = args.profile or ("quick" if args.data is None else "cpu")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"--device {args.device}: CUDA is not available on this machine")
    if args.repeats is not None and args.repeats < 1:
        raise ValueError("--repeats must be at least 1")
    if args.shots is not None and min(args.shots) < 1:
        raise ValueError("--shots must be positive")
    overrides = {}
    if args.min_foreground is not None:
        value = args.min_foreground.strip().lower()
        try:
            overrides["min_foreground"] = None if value == "none" else int(value)
        except ValueError:
            raise ValueError(
                f"--min-foreground must be an integer or 'none', got {value!r}"
            ) from None
        if overrides["min_foreground"] is not None and overrides["min_foreground"] < 0:
            raise ValueError("--min-foreground must be non-negative")
    splits = _splits_file(args.splits, args.data)
    if args.data is not None and not os.path.isdir(args.data):
        raise FileNotFoundError(f"--data {args.data}: data folder not found")
    _set_threads(args.threads, args.n_jobs)  # validates --threads before anything is written
    prepare_output_dir(args.out, force=args.force, resume=args.resume)
    started = time.perf_counter()
    experiment = run_experiment(
        args.out,
        profile=profile,
        data=args.data,
        n_jobs=args.n_jobs,
        progress=not args.no_progress,
        targets=args.target,
        selectors=args.selectors,
        shots=tuple(args.shots) if args.shots else None,
        repeats=args.repeats,
        random_state=args.seed,
        device=args.device,
        profile_overrides=overrides,
        splits=splits,
    )
    print()
    print(selector_shots_table(experiment.records()))
    print()
    print(f"mIoU in % (mean +- std over repeats); {time.perf_counter() - started:.0f} s.")
    print(f"Results, plots and report.md in {os.path.abspath(args.out)}")
    return 0


def _splits_file(option, data):
    """The splits file: ``--splits``, else ``$KWTL_SPLITS``, else ``reference/splits.json``
    in a parent folder of ``--data``; None for the synthetic data or 'none'."""
    if option is not None:
        return None if option.strip().lower() == "none" else Path(option)
    env = os.environ.get("KWTL_SPLITS")
    if env:
        return Path(env)
    if data is None:
        return None
    for folder in Path(data).resolve().parents:
        candidate = folder / "reference" / "splits.json"
        if candidate.is_file():
            return candidate
    return None


def _tune_process():
    """Process-wide settings of the application (never set by the library).

    glibc malloc keeps freed large buffers (1.5-2x faster passes on CPU, see
    ``kwtl.utils._allocator``); the same thresholds go to joblib's worker processes through
    the environment, which glibc reads at their start-up.
    """
    from .utils._allocator import malloc_environment, tune_malloc

    if tune_malloc():
        for key, value in malloc_environment().items():
            os.environ.setdefault(key, value)


#: How the library's messages (Python terms) read on the command line.
CLI_TERMS = (
    ("pass overwrite=True", "pass --force"),
    ("even with overwrite=True", "even with --force"),
    ("another out outside", "another --out outside"),
    ("pass accept_masks=True", "pass --accept-masks"),
    ("with images=", "with --images IMAGES_DIR"),
    ("another out,", "another --out,"),
    ("out=", "--out "),
    ("resume=True", "--resume"),
    ("start='", "--from '"),
    ("unit='patch'", "--unit patch"),
    ("unit='image'", "--unit image"),
    ("allow_overlap=True", "--allow-overlap"),
    ("after exclude", "after --exclude"),
    ("format='tif'", "--format tif"),
)


#: Arguments whose command-line flag is not their name with dashes.
_FLAGS = {
    "random_state": "seed",
    "pl_max_patches": "pl-patches",
    "overwrite": "force",
    "start": "from",
    "images": "IMAGES_DIR",
    "todo_dir": "TODO_DIR",
}


def _in_cli_terms(message):
    """A library message with its argument names replaced by the command line's flags."""
    message = re.sub(
        r"The '(\w+)' parameter of \w+ must be",
        lambda m: f"--{_FLAGS.get(m.group(1), m.group(1).replace('_', '-'))} must be",
        message,
    )
    for python, flag in CLI_TERMS:
        message = message.replace(python, flag)
    return message


def _one_line_warning(message, category, filename, lineno, line=None):
    return f"kwtl: warning: {message}\n"


def main(argv=None):
    """Entry point of the ``kwtl`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _tune_process()
    formatwarning, warnings.formatwarning = warnings.formatwarning, _one_line_warning
    try:  # the command line reports warnings in single lines
        return _run(args) if args.command == "run" else _workflow(args)
    except (ValueError, KeyError, ImportError) as err:  # ImportError: an optional extra
        print(f"kwtl: error: {_in_cli_terms(str(err))}", file=sys.stderr)
        return 2
    except OSError as err:  # missing data, unwritable output, full disk ...
        where = f" {err.filename}" if getattr(err, "filename", None) else ""
        print(f"kwtl: error:{where} {_in_cli_terms(str(err.strerror or err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "kwtl: interrupted; finished results are kept; rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    finally:
        warnings.formatwarning = formatwarning


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
