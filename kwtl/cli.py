"""The ``kwtl`` command line: ``kwtl run`` runs the main job."""
import argparse
import os
import sys
import time

from . import __version__

_DESCRIPTION = """\
kwtl: knowing what to label (Dawoud et al., WACV 2023).

'kwtl run' runs the whole method (source pre-training, pseudo-label fine-tuning, selection,
fine-tuning on the selected patches, evaluation) for every selector, shot count and repeat,
prints a selector x shots table of mean +- std mIoU, and writes results, plots and a report.
With no options it uses the embedded synthetic benchmark and finishes in minutes on a CPU.
"""


def _parser():
    parser = argparse.ArgumentParser(prog="kwtl", description=_DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"kwtl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run the method and report mIoU per selector and shots",
                         description=_DESCRIPTION,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--data", metavar="DIR",
                     help="folder of datasets (each with images/ and masks/), e.g. ../shared/data; "
                          "default: the embedded synthetic benchmark")
    run.add_argument("--target", nargs="+", metavar="NAME",
                     help="target dataset(s); default: the profile's")
    run.add_argument("--selectors", nargs="+", metavar="NAME",
                     help="consistency, entropy, mc_dropout, random; default: all four")
    run.add_argument("--shots", nargs="+", type=int, metavar="K", help="shot counts, e.g. 1 3 5")
    run.add_argument("--repeats", type=int, metavar="N", help="random pool/test splits per target")
    run.add_argument("--profile", default=None, metavar="NAME",
                     help="quick (synthetic default), cpu (real data on a CPU) or paper (GPU)")
    run.add_argument("--min-foreground", metavar="N|none",
                     help="override the profile's ground-truth patch filter (the authors' "
                          "360-pixel rule; it reads labels): a pixel count, or 'none'")
    run.add_argument("--device", default="cpu", help="torch device: cpu or cuda (default cpu)")
    run.add_argument("--out", default="kwtl_output", metavar="DIR",
                     help="output folder; rerunning with the same folder resumes (default kwtl_output)")
    run.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    run.add_argument("--n-jobs", type=int, default=1, metavar="N",
                     help="parallel jobs (joblib; default 1)")
    run.add_argument("--threads", type=int, default=None, metavar="N",
                     help="CPU threads per job for torch (default: the CPU cores divided by "
                          "--n-jobs, torch's own default for one job). On a machine shared "
                          "with other work use --threads 1: torch's threads wait for busy "
                          "cores, and the quick start ran 9-19x slower with the default than "
                          "with one thread on a busy 2-core machine")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


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
            raise ValueError(f"--min-foreground must be an integer or 'none', got {value!r}") from None
        if overrides["min_foreground"] is not None and overrides["min_foreground"] < 0:
            raise ValueError("--min-foreground must be non-negative")
    _set_threads(args.threads, args.n_jobs)
    started = time.perf_counter()
    experiment = run_experiment(
        args.out, profile=profile, data=args.data, n_jobs=args.n_jobs,
        progress=not args.no_progress, targets=args.target, selectors=args.selectors,
        shots=tuple(args.shots) if args.shots else None, repeats=args.repeats,
        random_state=args.seed, device=args.device, profile_overrides=overrides)
    print()
    print(selector_shots_table(experiment.records()))
    print()
    print(f"mIoU in % (mean +- std over repeats); {time.perf_counter() - started:.0f} s.")
    print(f"Results, plots and report.md in {os.path.abspath(args.out)}")
    return 0


def main(argv=None):
    """Entry point of the ``kwtl`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from .utils import tune_malloc

    tune_malloc()  # an application may set process-wide options: 1.5-2x faster passes on CPU
    try:
        return _run(args)
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"kwtl: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kwtl: interrupted; finished results are kept; rerun the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
