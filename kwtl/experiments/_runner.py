"""The experiment runner: the paper's protocol over targets, selectors, shots and repeats.

Each finished ``(target, selector, shots, repeat)`` job is written atomically to
``<out>/results/<job>.json`` as soon as it completes; a rerun with the same output folder
skips finished jobs, so an interrupted run resumes where it stopped. Source pre-training and
PLFT are cached on disk in ``<out>/cache`` (joblib.Memory) and shared by all selectors and
shot counts. Jobs run through joblib, so ``n_jobs`` parallelises them on one machine and
``joblib.parallel_config(backend="dask")`` sends them to a Dask cluster.
"""

import functools
import json
import os
import platform
import time
import warnings
from pathlib import Path

import joblib
import numpy as np

from ..few_shot import FewShotSegmentation
from ..datasets import load_benchmark, make_synthetic_benchmark
from ..metrics import iou_score
from ..model_selection import LeaveOneDatasetOut, authors_splits, benchmark_to_Xy
from ..model_selection._split import domain_ids
from ..selection import make_selector as _make_selector
from ..utils._atomic import atomic_write_text as _atomic_write_text
from ..utils._fingerprint import model_fingerprint
from ._files import result_filename
from ._profiles import get_profile, per_target

__all__ = ["Experiment", "run_experiment"]


@functools.lru_cache(maxsize=2)
def _load_data(spec_json):
    spec = json.loads(spec_json)
    if spec["kind"] == "synthetic":
        return make_synthetic_benchmark(**spec["params"])
    return load_benchmark(spec["root"], names=spec.get("names"))


class Experiment:
    """A planned experiment: data, profile, jobs, output folder.

    Parameters
    ----------
    out_dir : str or Path
        Output folder (results, cache, report). Reused on rerun (resume).
    profile : str, default="quick"
        A profile of :data:`kwtl.experiments.PROFILES`.
    data : str, Path or None, default=None
        Folder with the benchmark datasets (e.g. ``../shared/data``); None uses the embedded
        synthetic benchmark.
    targets, selectors, shots, repeats : optional
        Override the profile's.
    random_state : int, default=0
    device : str, default="cpu"
    profile_overrides : dict, optional
        Further profile keys to override (e.g. ``{"pl_epochs": 1}``).
    splits : str, Path or None, default=None
        The authors' ``splits.json`` (fixed test sets, see
        :func:`~kwtl.model_selection.authors_splits`), applied to the datasets it fits
        (ssTEM and EM); None draws seeded random 80/20 splits. Nothing is looked up on disk:
        ``kwtl run`` finds the file beside the data and passes it here.
    """

    def __init__(
        self,
        out_dir,
        profile="quick",
        data=None,
        targets=None,
        selectors=None,
        shots=None,
        repeats=None,
        random_state=0,
        device="cpu",
        profile_overrides=None,
        splits=None,
    ):
        self.out_dir = Path(out_dir)
        self.splits = None if splits is None else Path(splits)
        if self.splits is not None and not self.splits.is_file():
            raise FileNotFoundError(f"splits file not found: {self.splits}")
        self.profile = get_profile(
            profile, targets=targets, selectors=selectors, shots=shots, repeats=repeats
        )
        self.profile.update(profile_overrides or {})  # explicit overrides apply even if None
        self.random_state = int(random_state)
        self.device = device
        if data is None:
            self.spec = {"kind": "synthetic", "params": dict(self.profile.get("data", {}))}
        else:
            root = Path(data)
            if not root.is_dir():
                raise FileNotFoundError(f"data folder not found: {root}")
            # every dataset present is a source for the others
            self.spec = {"kind": "folder", "root": str(root.resolve()), "names": None}
        for name in self.profile["selectors"]:
            _make_selector(name)  # fail early on a typo
        shots = [int(k) for k in self.profile["shots"]]
        if not shots or min(shots) < 1:
            raise ValueError(f"shots must be positive integers, got {self.profile['shots']}")
        if int(self.profile["repeats"]) < 1:
            raise ValueError(f"repeats must be >= 1, got {self.profile['repeats']}")
        bench = self.benchmark
        unknown = sorted(set(self.profile["targets"]) - set(bench.datasets))
        if unknown:
            raise ValueError(f"unknown targets {unknown}; the data has {list(bench.datasets)}")
        if len(bench.datasets) < 2:
            raise ValueError("leave-one-dataset-out needs at least two datasets")

    @property
    def benchmark(self):
        return _load_data(json.dumps(self.spec, sort_keys=True))

    @property
    def jobs(self):
        """All ``(target, repeat, selector, shots)`` jobs, in run order."""
        p = self.profile
        return [
            (t, r, s, int(k))
            for t in p["targets"]
            for r in range(int(p["repeats"]))
            for s in p["selectors"]
            for k in p["shots"]
        ]

    def result_path(self, job):
        target, repeat, selector, shots = job
        return self.out_dir / "results" / result_filename(target, selector, shots, repeat)

    def pending(self):
        """Jobs without a readable result file (a damaged one is recomputed)."""
        return [job for job in self.jobs if _read_record(self.result_path(job)) is None]

    def identity(self):
        """What must match for results in ``out_dir`` to be reused (not the job list)."""
        p = {
            k: v
            for k, v in self.profile.items()
            if k not in ("targets", "selectors", "shots", "repeats", "description")
        }
        return json.loads(
            json.dumps(
                {"profile": p, "data": self.spec, "seed": self.random_state},
                sort_keys=True,
                default=list,
            )
        )

    def _claim_out_dir(self):
        """Create ``out_dir`` or check that its results belong to this experiment."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        marker = self.out_dir / "experiment.json"
        if marker.exists():
            try:
                previous = json.loads(marker.read_text())
            except ValueError:
                raise ValueError(
                    f"{marker} is unreadable; remove it or use another output folder"
                ) from None
            if previous != self.identity():
                raise ValueError(
                    f"{self.out_dir} holds results of a different experiment (profile, data or "
                    "seed differ); use another output folder so nothing is mixed or overwritten"
                )
        else:
            if any((self.out_dir / "results").glob("*.json")):
                raise ValueError(
                    f"{self.out_dir}/results has results without experiment.json; "
                    "use another output folder"
                )
            _atomic_write_text(marker, json.dumps(self.identity(), indent=1, sort_keys=True))

    def run(self, n_jobs=1, progress=True):
        """Run every pending job; finished results are kept (resume). Returns the records."""
        self._claim_out_dir()
        todo = self.pending()
        self._check_budgets(todo)
        # Stage 1: pre-training and PLFT once per (target, repeat), so parallel jobs only
        # load them from the cache.
        splits = sorted({(t, r) for t, r, _, _ in todo})
        joblib.Parallel(n_jobs=n_jobs)(
            joblib.delayed(_prepare_split)(self, t, r) for t, r in splits
        )
        iterator = joblib.Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            joblib.delayed(_run_job)(self, job) for job in todo
        )
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, total=len(todo), desc="kwtl jobs", unit="job")
        for _ in iterator:
            pass
        return self.records()

    def _check_budgets(self, todo):
        """Fail before any training if a job's budget exceeds its pool (or an input is bad)."""
        largest = {}
        for target, _, selector, shots in todo:
            unit = getattr(_make_selector(selector), "unit", "patch")
            key = (target, unit)
            if shots > largest.get(key, (0, None))[0]:
                largest[key] = (shots, selector)
        for (target, _), (shots, selector) in largest.items():
            X, y, d, train, _ = self.split(target, 0)
            self.estimator(target, selector, shots).check_fit(X[train], y[train], d[train])

    def records(self):
        """The finished results, in job order."""
        records = (_read_record(self.result_path(job), warn=False) for job in self.jobs)
        return [r for r in records if r is not None]

    # -------------------------------------------------------------- per-split pieces
    def split(self, target, repeat):
        """``(X, y, sample_domain, train, test)`` for one target and repeat."""
        bench = self.benchmark
        X, y, d = benchmark_to_Xy(bench, targets=[target])
        fixed = None if self.splits is None else authors_splits(bench, self.splits)
        cv = LeaveOneDatasetOut(
            n_repeats=int(self.profile["repeats"]),
            test_size=0.2,
            random_state=self.random_state,
            fixed_splits=fixed,
        )
        for k, (train, test) in enumerate(cv.split(X, y, d)):
            if k == repeat:
                return X, y, d, train, test
        raise IndexError(f"no repeat {repeat}")

    def image_names(self, target, positions):
        """File names of the images at ``positions`` of :meth:`split`'s ``X`` for ``target``."""
        bench = self.benchmark
        index = benchmark_to_Xy(bench, targets=[target], return_index=True)[3]
        return [str(bench.names[index[k]]) for k in positions]

    def estimator(self, target, selector="consistency", n_shots=1):
        """The configured :class:`~kwtl.FewShotSegmentation` for a target."""
        from ..models import FCRNSegmenter
        from ..pseudo_label import PseudoLabeler

        p = self.profile
        seg_params = dict(p["segmenter"])
        if "target_strides" in p:
            seg_params["stride"] = per_target(p["target_strides"], target) or seg_params["stride"]
        if "source_strides" in p:
            seg_params["meta_stride"] = {
                domain: p["source_strides"].get(name, seg_params["stride"])
                for name, domain in domain_ids(self.benchmark).items()
            }
        segmenter = FCRNSegmenter(device=self.device, random_state=self.random_state, **seg_params)
        if p["pseudo_labeler"] == "paper":
            try:
                pseudo = PseudoLabeler.for_dataset(target)
            except ValueError:
                pseudo = PseudoLabeler()
        elif p["pseudo_labeler"] in (None, "none"):
            pseudo = None
        else:
            pseudo = "default"
        magnitude = per_target(p.get("magnitude", 1.3), target)
        return FewShotSegmentation(
            segmenter=segmenter,
            pseudo_labeler=pseudo,
            selector=_make_selector(selector, magnitude=magnitude, random_state=self.random_state),
            n_shots=int(n_shots),
            patches_per_shot=per_target(p["patches_per_shot"], target),
            pl_epochs=int(p["pl_epochs"]),
            pl_batch_size=int(p["pl_batch_size"]),
            recipe=_recipe(p),
            finetune_epochs=None if _recipe(p) is not None else int(p["finetune_epochs"]),
            min_foreground=p.get("min_foreground"),
            recalibrate_batchnorm=bool(p.get("recalibrate_batchnorm", True)),
            memory=joblib.Memory(self.out_dir / "cache", verbose=0),
            random_state=self.random_state,
        )

    def unlabelled(self, X, test):
        """Extra PLFT images: the test images when the profile is transductive (paper)."""
        return list(X[test]) if self.profile.get("transductive_plft") else None

    def metadata(self):
        return {
            "profile": self.profile["name"],
            "description": self.profile["description"],
            "data": self.spec,
            "targets": list(self.profile["targets"]),
            "selectors": list(self.profile["selectors"]),
            "shots": [int(k) for k in self.profile["shots"]],
            "repeats": int(self.profile["repeats"]),
            "seed": self.random_state,
            "device": self.device,
            "machine": _machine(),
        }


def _read_record(path, warn=True):
    """A finished job's record, or None when missing or damaged (one warning line)."""
    try:
        record = json.loads(Path(path).read_text())
        if isinstance(record, dict) and "miou" in record:
            return record
        problem = "not a result record"
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        problem = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if warn:
        warnings.warn(
            f"damaged result file {path} ({problem}); the job runs again",
            RuntimeWarning,
            stacklevel=3,
        )
    return None


def _machine():
    import torch

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def _prepare_split(experiment, target, repeat):
    X, y, d, train, test = experiment.split(target, repeat)
    experiment.estimator(target).prepare(
        X[train], y[train], d[train], unlabelled=experiment.unlabelled(X, test)
    )


def _run_job(experiment, job):
    target, repeat, selector, shots = job
    start = time.perf_counter()
    X, y, d, train, test = experiment.split(target, repeat)
    method = experiment.estimator(target, selector, shots)
    method.fit(X[train], y[train], d[train], unlabelled=experiment.unlabelled(X, test))
    test_images, test_masks = list(X[test]), list(y[test])
    predictions = method.predict(test_images)
    per_image = [iou_score(m, p) for m, p in zip(test_masks, predictions)]
    evaluate = joblib.Memory(experiment.out_dir / "cache", verbose=0).cache(
        _per_image_iou, ignore=["segmenter"]
    )
    plft = evaluate(
        method.plft_segmenter_, model_fingerprint(method.plft_segmenter_), test_images, test_masks
    )
    pool_positions = [k for k in train if d[k] < 0]
    test_names = experiment.image_names(target, test)
    pool_names = experiment.image_names(target, pool_positions)
    record = {
        "target": target,
        "selector": selector,
        "n_shots": int(shots),
        "repeat": int(repeat),
        "miou": float(np.mean(per_image)),
        "per_image_iou": [float(v) for v in per_image],
        "plft_miou": float(np.mean(plft)),
        "test_images": test_names,
        "pool_images": pool_names,
        "n_support": int(len(method.support_indices_)),
        "support": [
            [int(i), int(r), int(c), float(s)]
            for (i, r, c), s in zip(method.support_coords_, method.support_scores_)
        ],
        "patch_size": int(method.segmenter_.patch_size),
        "seconds": time.perf_counter() - start,
        "profile": experiment.profile["name"],
        "seed": experiment.random_state,
    }
    _atomic_write_text(experiment.result_path(job), json.dumps(record))
    return record


def _per_image_iou(segmenter, fingerprint, images, masks):
    """IoU of each image; cached by the model ``fingerprint`` (the PLFT model is shared)."""
    return [iou_score(m, p) for m, p in zip(masks, segmenter.predict(images))]


def run_experiment(
    out_dir, profile="quick", data=None, n_jobs=1, report=True, progress=True, **kwargs
):
    """Plan, run (or resume) and report an experiment; returns the :class:`Experiment`.

    See :class:`Experiment` for the parameters. The report (tables, Wilcoxon tests, plots,
    ``report.md``) is written into ``out_dir``.
    """
    experiment = Experiment(out_dir, profile=profile, data=data, **kwargs)
    started = time.perf_counter()
    records = experiment.run(n_jobs=n_jobs, progress=progress)
    experiment.wall_seconds_ = time.perf_counter() - started
    if report:
        from ._report import write_report

        meta = experiment.metadata()
        meta["wall_seconds_this_run"] = round(experiment.wall_seconds_, 1)
        images = _selection_images(experiment)
        experiment.report_ = write_report(
            experiment.out_dir,
            records=records,
            images=images,
            metadata=meta,
            paper_table=_paper_table(experiment),
        )
    return experiment


def _paper_table(experiment):
    if experiment.spec["kind"] != "folder":
        return None
    from ._paper import PAPER_TABLE2

    return PAPER_TABLE2


def _selection_images(experiment):
    bench = experiment.benchmark
    out = {}
    for target in experiment.profile["targets"]:
        out[target] = {
            name: im
            for name, im, ds in zip(bench.names, bench.images, bench.dataset)
            if ds == target
        }
    return out


def _recipe(profile):
    """The profile's support fine-tuning: None (the paper's schedule) when it sets
    ``finetune_epochs``, else a FineTuneRecipe with its ``finetune_recipe`` parameters
    ({} is the library's default recipe)."""
    from ..models import FineTuneRecipe

    if profile.get("finetune_epochs") is not None:
        return None
    return FineTuneRecipe(**(profile.get("finetune_recipe") or {}))
