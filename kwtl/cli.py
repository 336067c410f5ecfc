"""The ``kwtl`` command line: ``kwtl run`` runs the main job; ``kwtl pretrain``,
``select``, ``finetune``, ``predict``, ``evaluate`` and ``export`` are the lab workflow
(:mod:`kwtl.workflow`; their parsers in ``kwtl/_cli_workflow.py``)."""

import argparse
import os
import re
import sys
import time
import warnings
from pathlib import Path

from ._version import __version__
from .selection import SELECTORS
from ._cli_workflow import _workflow, _workflow_parsers
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
